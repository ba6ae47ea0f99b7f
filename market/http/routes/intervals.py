"""``/intervals/{t}``: the book's depth, the published order set, the clearing, and the
operator's gate closure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from ledger.addresses import checksum_address
from ledger.eip712 import SIDE_BUY, SIDE_SELL
from ledger.errors import BadSignature, UnverifiableSignature
from market.http.errors import (
    BodyTooLarge,
    ChainUnavailableProblem,
    IntervalNotClosed,
    InvalidRequest,
    MalformedJson,
    NonceUsed,
    NotOperator,
    OrderExpired,
    ServiceUnavailable,
)
from market.http.models import BookView, ClearingView, PublishedBook, SignedCloseGate
from market.http.params import IntervalParam
from market.http.problems import problem_responses
from market.http.views import json_response, order_receipt
from market.service import MarketService
from market.signed_messages import SignedMessage, order_message_json
from market.store import DROPPED, StoredOrder


def _defaulter(entry: dict[str, Any]) -> dict[str, Any]:
    """A stored defaulter (:mod:`market.defaulters`) as the API publishes it: the amounts of
    a party short of collateral, the refused order of one that refused its signature."""
    out: dict[str, Any] = {
        "round": int(entry["round"]),
        "block": int(entry["block"]),
        "participant": checksum_address(str(entry["participant"])),
    }
    if "order" in entry:
        out["order"] = str(entry["order"])
    else:
        out["freeBaseUnits"] = str(entry["freeBaseUnits"])
        out["neededBaseUnits"] = str(entry["neededBaseUnits"])
    out["reason"] = str(entry["reason"])
    return out


def _dropped_reason(entry: dict[str, Any]) -> str:
    """Why a defaulter's orders were dropped, as each of them publishes it."""
    if "order" in entry:
        return f"{entry['reason']}: order {entry['order']} not accepted at block {entry['block']}"
    return (
        f"{entry['reason']}: free {entry['freeBaseUnits']} < needed {entry['neededBaseUnits']} "
        f"at block {entry['block']}"
    )


def depth(orders: Sequence[StoredOrder], side: int) -> list[dict[str, Any]]:
    """The orders of ``side`` aggregated by price, best first (bids highest, asks lowest)."""
    levels: dict[int, list[int]] = {}
    for o in orders:
        if o.side == side:
            level = levels.setdefault(o.price_per_wh, [0, 0])
            level[0] += o.quantity_wh
            level[1] += 1
    prices = sorted(levels, reverse=side == SIDE_BUY)
    return [
        {"pricePerWh": str(p), "quantityWh": levels[p][0], "orders": levels[p][1]} for p in prices
    ]


def _published_cancel(order: StoredOrder) -> dict[str, Any]:
    """A cancelled order as ``GET /intervals/{t}/orders`` publishes it."""
    record = order.cancel or {}
    return {
        "id": order.id,
        "seq": order.seq,
        "order": order_message_json(order),
        "signature": order.signature,
        "receipt": order_receipt(order),
        "cancel": record.get("cancel", {}),
        "cancelSignature": record.get("signature", ""),
        "cancelDigest": record.get("digest", ""),
        "cancelReceipt": record.get("receipt"),
    }


def intervals_router(service: MarketService) -> APIRouter:
    """The ``/intervals/{t}`` paths of ``service`` that belong to the market (the settlement
    API adds ``/intervals/{t}/settlement``)."""
    router = APIRouter()

    @router.get(
        "/intervals/{t}/book",
        response_model=BookView,
        responses=problem_responses(InvalidRequest),
        tags=["intervals"],
    )
    def interval_book(t: IntervalParam) -> dict[str, Any]:
        """Aggregated depth by price: the open book, or the frozen book after gate closure."""
        view = service.interval(t)
        orders = service.book_orders(t)
        return {
            "interval": t,
            "state": view.state,
            "gateClosureAt": view.gate_closure_at,
            "bids": depth(orders, SIDE_BUY),
            "asks": depth(orders, SIDE_SELL),
        }

    @router.get(
        "/intervals/{t}/orders",
        response_model=PublishedBook,
        responses=problem_responses(InvalidRequest, IntervalNotClosed),
        tags=["intervals"],
    )
    def interval_orders(t: IntervalParam) -> Response:
        """The signed order set of a closed interval, with its ``bookRoot`` and the EIP-712
        domain, so anyone can re-verify every signature and re-clear the book.

        ``closedAt`` is when the gate closed: an order whose ``expiry`` is before it is
        ``expired`` (in the set and its root, but not cleared); every other order is
        ``closed``. An interval whose gate passed with no order is ``empty``. Each order
        carries the operator's signed ``receipt`` (``seq``, ``receivedAt``).

        Beside the set, outside its root: ``cancels``, the interval's orders cancelled
        before the gate closed, each with the signed cancel and both receipts, and
        ``refused``, the orders left out at gate closure with the reason.

        An order of a contract account (its signature is not an ECDSA one of its
        participant's) carries ``signatureBlock``, the block at which the account's
        ERC-1271 ``isValidSignature`` accepted it when the gate closed.

        ``defaulters``: the parties that could no longer cover their trades when the
        interval was committed, each with the block its balance was read at, or that
        refused (a contract account) an order of theirs at that block; their orders
        stay in the set (and its root) as ``dropped``, with the ``reason``, and the trades
        committed are the re-clearing of the set without them."""
        record, orders = service.published_orders(t)
        cancels = service.published_cancels(t)
        refusals = service.published_refusals(t)
        defaulters = (record.clearing or {}).get("defaulters", [])
        why = {str(d["participant"]): _dropped_reason(d) for d in defaulters}
        signature_blocks = (record.clearing or {}).get("signatureBlocks") or {}
        return json_response(
            {
                "interval": t,
                "state": record.state,
                "bookRoot": record.book_root,
                "closedAt": record.closed_at,
                "domain": service.domain.as_json(),
                "orders": [
                    {
                        "id": o.id,
                        "seq": o.seq,
                        "status": o.status,
                        "order": order_message_json(o),
                        "signature": o.signature,
                        "filledWh": o.filled_wh,
                        "receipt": order_receipt(o),
                        **({"reason": why.get(o.participant)} if o.status == DROPPED else {}),
                        **(
                            {"signatureBlock": int(signature_blocks[o.id])}
                            if o.id in signature_blocks
                            else {}
                        ),
                    }
                    for o in orders
                ],
                "defaulters": [_defaulter(d) for d in defaulters],
                "cancels": [_published_cancel(o) for o in cancels],
                "refused": [
                    {
                        "id": o.id,
                        "seq": o.seq,
                        "order": order_message_json(o),
                        "signature": o.signature,
                        "receipt": order_receipt(o),
                        "reason": reason,
                    }
                    for o, reason in refusals
                ],
            }
        )

    @router.get(
        "/intervals/{t}/clearing",
        response_model=ClearingView,
        responses=problem_responses(InvalidRequest, IntervalNotClosed),
        tags=["intervals"],
    )
    def interval_clearing(t: IntervalParam) -> Response:
        """Clearing price, volume and trades of a closed interval, and its on-chain commit."""
        # Sent as built: through the model, a defaulter would gain the other reason's fields.
        return json_response(clearing_body(t))

    def clearing_body(t: int) -> dict[str, Any]:
        record = service.clearing(t)
        clearing = record.clearing or {}
        committed = record.state == "committed"
        return {
            "interval": t,
            "state": record.state,
            "mechanism": clearing.get("mechanism", service.config.mechanism),
            "k": clearing.get("k"),
            "pricePerWh": clearing.get("price"),
            "volumeWh": clearing.get("volumeWh", 0),
            "bookRoot": record.book_root,
            "trades": [
                {
                    **t_,
                    "buyer": checksum_address(t_["buyer"]),
                    "seller": checksum_address(t_["seller"]),
                }
                for t_ in clearing.get("trades", [])
            ],
            "excluded": clearing.get("excluded", []),
            "expired": clearing.get("expired", []),
            "defaulters": [_defaulter(d) for d in clearing.get("defaulters", [])],
            "dropped": clearing.get("dropped", []),
            "grid": clearing.get("grid"),
            "commit": (
                {"txHash": record.commit_tx, "blockNumber": record.commit_block}
                if committed
                else None
            ),
        }

    @router.post(
        "/intervals/{t}/close",
        response_model=ClearingView,
        responses=problem_responses(
            MalformedJson,
            InvalidRequest,
            BodyTooLarge,
            BadSignature,
            UnverifiableSignature,
            NotOperator,
            OrderExpired,
            NonceUsed,
            ChainUnavailableProblem,
            ServiceUnavailable,
        ),
        tags=["operator"],
        description="Operator only: close `t`'s gate now (simulations driving a remote "
        "market).\n\nThe body is a `CloseGate` message signed by the operator key published "
        "in `GET /market`. Checked in this order: the body's form (`invalid_request`, "
        "`bad_signature`); the signature recovers a key (`unverifiable_signature`) and it is "
        "the operator's (`not_operator`); `close.interval` equals `t` (`invalid_request`); "
        "`expiry` is after the market's clock (`order_expired`); the nonce is unused "
        "(`nonce_used`).",
    )
    def close_interval(t: IntervalParam, body: SignedCloseGate) -> Response:
        """Operator only: close ``t``'s gate now (simulations driving a remote market).

        The body is a ``CloseGate`` message signed by the operator key published in
        ``GET /market``; anyone else gets ``not_operator``.
        """
        signed = SignedMessage(body.close.model_dump(), body.signature)
        service.operator_close_gate(t, signed)
        return interval_clearing(t)

    return router


__all__ = ["depth", "intervals_router"]
