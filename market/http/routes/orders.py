"""``/orders``: submit (one or a batch), read, cancel, and an order's inclusion proof.

``POST /orders`` and ``POST /orders:batch`` are answered by the order intake
(:mod:`market.http.intake`) before FastAPI's routing; their routes here document the two
bodies in the OpenAPI document (:func:`intake_body_schemas`, from the pydantic models the
intake mirrors by hand) and call the same :meth:`OrderIntake.submit
<market.http.intake.OrderIntake.submit>`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ledger.errors import BadSignature, UnverifiableSignature
from market.http.errors import (
    BatchTooLarge,
    BodyTooLarge,
    ChainBusy,
    ChainUnavailableProblem,
    InsufficientCollateral,
    IntervalClosed,
    IntervalNotClosed,
    IntervalTooFar,
    InvalidPrice,
    InvalidQuantity,
    InvalidRequest,
    InvalidSide,
    MalformedJson,
    NodeNotRegistered,
    NonceUsed,
    NotYourOrder,
    OrderExpired,
    OrderNotFound,
    OrderNotInBook,
    OrderNotOpen,
    OrderTooSmall,
    OutOfBounds,
    SelfCross,
    ServiceUnavailable,
    SignerMismatch,
    TooManyOrders,
    UnregisteredParticipant,
    WrongNode,
)
from market.http.intake import BATCH_PATH, ORDER_PATH, OrderIntake
from market.http.models import (
    OrderBatch,
    OrderList,
    OrderView,
    ProofView,
    SignedCancel,
    SignedOrder,
)
from market.http.openapi_doc import LimitedRouter
from market.http.params import OrderIdParam
from market.http.problems import problem_responses
from market.http.views import json_response, order_view
from market.http.wire import integer_range_schema
from market.orders import MAX_QUANTITY_WH
from market.service import MarketService
from market.signed_messages import SignedMessage

ORDER_REFUSALS = (
    MalformedJson,
    InvalidRequest,
    BodyTooLarge,
    BadSignature,
    InvalidSide,
    InvalidQuantity,
    InvalidPrice,
    OutOfBounds,
    OrderTooSmall,
    UnverifiableSignature,
    SignerMismatch,
    OrderExpired,
    UnregisteredParticipant,
    NodeNotRegistered,
    WrongNode,
    IntervalTooFar,
    IntervalClosed,
    NonceUsed,
    TooManyOrders,
    SelfCross,
    InsufficientCollateral,
    ChainBusy,
    ChainUnavailableProblem,
    ServiceUnavailable,
)
"""Every refusal of ``POST /orders``, in the order the order's checks run."""

ORDER_RULES = """
Checked in this order; the first failing check answers:

1. the body's shape and every field's form and range, as the schema states
   (`malformed_json`, `invalid_request`, `bad_signature`, `invalid_side`,
   `invalid_quantity`, `invalid_price`, `out_of_bounds`);
2. `quantityWh` is at least the market's minimum order size, `bounds.minQuantityWh` of
   `GET /market` (a setting of the market, 10 Wh by default) (`order_too_small`);
3. the signature recovers a key (`unverifiable_signature`: `r` or `s` out of range, a high
   `s`, or no key) and that key is `order.participant` under the EIP-712 domain of
   `GET /market`, or `order.participant` is a registered contract account whose ERC-1271
   `isValidSignature` accepts the signature, asked at the chain's head as the contract asks
   it (`signer_mismatch`);
4. `expiry` is after the market's clock (`order_expired`);
5. the participant is registered on the market contract (`unregistered_participant`);
   in a market that clears on a grid it has a recorded node (`node_not_registered`), and
   the order's signed `node` is that node (`wrong_node`; `GET /market` `grid.nodes`); in a
   market without a grid `node` must be `root`;
6. the interval's gate is open: the market's clock is before
   `epoch + interval * intervalSeconds - gateClosureSeconds` (`interval_closed`), and
   `interval` is at most `maxAheadIntervals` after the current one (`interval_too_far`);
7. the participant has not used `nonce` (`nonce_used`; orders and cancels share nonces);
8. the participant has fewer than `bounds.maxOrdersPerInterval` open orders in the
   interval (`too_many_orders`; a cancel frees a place);
9. the order does not cross the participant's own open order of the other side in the
   same interval (`self_cross`);
10. the free balance minus what open orders reserve covers the order (a bid reserves
   `quantityWh * pricePerWh`, an ask its bond `quantityWh * penaltyPricePerWh`)
   (`insufficient_collateral`).

Checks 1-4 need no chain: a request with an order failing one of them is refused without
reading the chain for any of its orders (a batch then lists only the orders that failed
them). The chain is read for a participant the market has not seen (check 5 and its free
balance) within a budget of reads per second for the whole market; when it is spent the
answer is `chain_busy` (503) with `Retry-After`, and participants the market knows are not
held up by it. A contract account's signature is asked of the chain only when every order
passed checks 1-4 otherwise, and only for a participant the market knows to be registered
and does not know to be without code; each ask spends a read of the same budget.

`service_unavailable` and `chain_unavailable` (503) mean the order store or the chain
failed: retry.
"""


PROOF_DESCRIPTION = """The Merkle inclusion proof of an order in its interval's `bookRoot`
(committed on-chain by `commitInterval`), once the interval's gate has closed
(`interval_not_closed` before; `order_not_in_book` for an order outside the published set,
such as one cancelled before the gate closed).

The tree is OpenZeppelin's `StandardMerkleTree.of(ids.map(id => [id]), ["bytes32"])` over
the interval's published order ids (`GET /intervals/{t}/orders`):

- `leaf` = `keccak256(keccak256(id))`, the id being the order's 32-byte EIP-712 digest
  (in Solidity `keccak256(bytes.concat(keccak256(abi.encode(id))))`);
- an inner node is `keccak256(min(a, b) ‖ max(a, b))` (sorted pair), so `proof` carries no
  left/right flags;
- leaves are sorted ascending; with one order the root is its leaf and `proof` is empty.

Verify by folding: `node = leaf`, then `node = hashPair(node, p)` for each `p` of `proof`;
the result equals `bookRoot`. OpenZeppelin's `MerkleProof.verify(proof, bookRoot, leaf)`
does exactly this.
"""


def intake_body_schemas() -> dict[str, Any]:
    """JSON schemas of the intake request bodies, as OpenAPI components."""
    _, top = models_json_schema(
        [(SignedOrder, "validation"), (OrderBatch, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    defs: dict[str, Any] = top["$defs"]
    return defs


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON request body of ``model`` (checked by hand)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def orders_router(service: MarketService, intake: OrderIntake) -> APIRouter:
    """The ``/orders`` paths of ``service``; submissions go through ``intake``."""
    router = LimitedRouter(tags=["orders"])
    router.max_items[("OrderBatch", "orders")] = service.config.max_batch_orders
    router.properties[("OrderMessage", "quantityWh")] = integer_range_schema(
        service.config.min_order_wh,
        MAX_QUANTITY_WH,
        "energy in Wh (uint64), at least the market's minimum order size (GET /market: "
        "bounds.minQuantityWh, smaller orders are refused with `order_too_small`) and at most "
        "its maximum",
    )

    @router.post(
        ORDER_PATH,
        status_code=201,
        response_model=OrderView,
        responses=problem_responses(*ORDER_REFUSALS),
        openapi_extra=_request_body(SignedOrder),
        description="Submit one signed order. `201` means it is durably stored and in the "
        "book.\n" + ORDER_RULES,
    )
    async def submit_order(request: Request) -> Response:
        """Submit one signed order. ``201`` means it is durably stored and in the book."""
        body = await request.body()
        answer = await intake.submit(ORDER_PATH, body, request.headers.get("content-type"))
        return Response(answer, status_code=201, media_type="application/json")

    @router.post(
        BATCH_PATH,
        status_code=201,
        response_model=OrderList,
        responses=problem_responses(*ORDER_REFUSALS, BatchTooLarge, batch=True),
        openapi_extra=_request_body(OrderBatch),
        description="Submit many signed orders at once (aggregators); all are stored or "
        "none. At most `maxBatchOrders` (`GET /market`) orders (`batch_too_large`). Each "
        "order is checked as `POST /orders` checks one. A refused batch answers "
        "`batch_rejected` with the first refused order's status and `errors`: one entry "
        "per refused order (`index`, `code`, `status`, "
        "`detail`); one order alone answers its own code.\n" + ORDER_RULES,
    )
    async def submit_batch(request: Request) -> Response:
        """Submit many signed orders at once (aggregators); all are stored or none.

        A refused batch answers ``batch_rejected`` with ``errors``: one entry per bad order
        (``index``, ``code``, ``status``, ``detail``).
        """
        body = await request.body()
        answer = await intake.submit(BATCH_PATH, body, request.headers.get("content-type"))
        return Response(answer, status_code=201, media_type="application/json")

    @router.get(
        "/orders/{order_id}",
        response_model=OrderView,
        responses=problem_responses(InvalidRequest, OrderNotFound),
    )
    def get_order(order_id: OrderIdParam) -> Response:
        """One order by its id (the EIP-712 order hash)."""
        return json_response(order_view(service.get_order(order_id)))

    @router.delete(
        "/orders/{order_id}",
        response_model=OrderView,
        responses=problem_responses(
            MalformedJson,
            InvalidRequest,
            BodyTooLarge,
            BadSignature,
            UnverifiableSignature,
            SignerMismatch,
            OrderExpired,
            OrderNotFound,
            NotYourOrder,
            OrderNotOpen,
            IntervalClosed,
            NonceUsed,
            ChainBusy,
            ChainUnavailableProblem,
            ServiceUnavailable,
        ),
        description="Cancel an open order with the participant's signed `Cancel`, before "
        "its interval's gate closes.\n\nChecked in this order: the body's form "
        "(`invalid_request`, `bad_signature`); the signature recovers a key "
        "(`unverifiable_signature`) and it is `cancel.participant`, or the registered "
        "contract account `cancel.participant` accepts the signature (ERC-1271, asked at the "
        "chain's head within the lookup budget: `chain_busy`) (`signer_mismatch`); "
        "`cancel.orderHash` equals the order id of the path (`invalid_request`); `expiry` "
        "is after the market's clock (`order_expired`); the order exists "
        "(`order_not_found`) and is the signer's (`not_your_order`); it is open "
        "(`order_not_open`) and its gate has not closed: the market's clock is before the "
        "interval's gate closure time, as for orders, whether or not the gate closure has "
        "run yet (`interval_closed`); the nonce is unused (`nonce_used`).",
    )
    def cancel_order(order_id: OrderIdParam, body: SignedCancel) -> Response:
        """Cancel an open order with the participant's signed ``Cancel`` (before gate closure)."""
        signed = SignedMessage(body.cancel.model_dump(), body.signature)
        return json_response(order_view(service.cancel_order(order_id, signed)))

    @router.get(
        "/orders/{order_id}/proof",
        response_model=ProofView,
        responses=problem_responses(
            InvalidRequest, OrderNotFound, IntervalNotClosed, OrderNotInBook
        ),
        description=PROOF_DESCRIPTION,
    )
    def order_proof(order_id: OrderIdParam) -> dict[str, Any]:
        """The Merkle inclusion proof of an order in its interval's committed ``bookRoot``."""
        proof = service.proof(order_id)
        return {
            "id": proof.order_id,
            "interval": proof.interval,
            "leaf": "0x" + proof.leaf.hex(),
            "bookRoot": "0x" + proof.book_root.hex(),
            "proof": ["0x" + p.hex() for p in proof.proof],
        }

    return router


__all__ = ["intake_body_schemas", "orders_router"]
