"""Order intake over HTTP without FastAPI's per-request machinery: ``POST /orders`` and
``POST /orders:batch``.

These two paths carry almost all of the market's traffic. Going through FastAPI costs a
route match, a dependency solve, a pydantic validation, a ``model_dump`` and several
middleware layers per request, more than checking the order's signature does. So the app
(:class:`market.http.app.MarketApp`) hands exactly these two requests to :class:`OrderIntake`,
which reads the body, checks its shape by hand, and answers, and leaves every other request
to FastAPI. The FastAPI routes of the two paths (:mod:`market.http.routes.orders`) still
exist: they document the bodies in the OpenAPI (from the pydantic models of
:mod:`market.http.models`, which are kept for that) and call the same
:meth:`OrderIntake.submit`, so there is one implementation.

Same answers as the pydantic models gave
    :func:`check_signed_order` mirrors ``SignedOrder``/``OrderMessage``/``OrderBatch`` field
    by field: exactly these fields (``missing`` or ``extra`` is ``invalid_request``), JSON
    types JSON integer (a whole number, ``2.0`` too) or string for the integers and string
    for the participant
    and the signature. The first wrong field, in declaration order, names the problem, as
    the first pydantic error did: a wrong type of ``quantityWh``, ``pricePerWh``, ``side``
    or ``signature`` is that field's code, anything else ``invalid_request``. The body must
    be sent as ``application/json`` (or ``+json``); an empty body is ``invalid_request``, a
    body that does not parse ``malformed_json``, a body over the limit ``body_too_large``.
    Values (ranges, bounds, signature validity) are then the service's to check.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from ledger.addresses import checksum_address
from ledger.eip712 import SIDE_BUY
from ledger.errors import RequestError, WattledgerError
from market.http.asgi import Message, Receive, Scope, Send
from market.http.body_limit import body_too_large
from market.http.errors import InvalidRequest, MalformedJson
from market.http.problems import problem_response, shape_problem
from market.http.views import order_view
from market.intake import Prepared
from market.orders import ID_PATTERN
from market.service import MarketService
from market.signed_messages import SignedMessage, whole_number
from market.store import OPEN, StoredOrder

log = logging.getLogger(__name__)

ORDER_PATH = "/orders"
BATCH_PATH = "/orders:batch"

_ORDER_FIELDS = ("participant", "interval", "side", "quantityWh", "pricePerWh", "nonce", "expiry")
_ORDER_FIELD_SET = frozenset((*_ORDER_FIELDS, "node"))
_SIGNED_FIELD_SET = frozenset(("order", "signature"))
_BATCH_FIELD_SET = frozenset(("orders",))


class Committer(Protocol):
    """Stores prepared orders durably (:class:`market.http.group_commit.GroupCommitter`)."""

    async def commit(self, prepared: Prepared) -> None:
        """Return once ``prepared`` is durably stored; raise if storing failed."""


def _shape_error(loc: Sequence[str | int], kind: str, msg: str) -> RequestError:
    """The error for the first wrong field at ``loc`` (relative to the body), named as
    FastAPI's validation would name it (:func:`market.http.problems.shape_problem`)."""
    where = ["body", *(str(p) for p in loc)]
    errors = [{"loc": where, "type": kind, "msg": msg}]
    return shape_problem(where, kind, f"{'.'.join(where)}: {msg}", errors)


def _check_object(value: Any, loc: tuple[str | int, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _shape_error(loc, "model_type", "Input should be a valid dictionary or object")
    return value


def _field(value: dict[str, Any], name: str, loc: tuple[str | int, ...]) -> Any:
    try:
        return value[name]
    except KeyError:
        raise _shape_error((*loc, name), "missing", "Field required") from None


def _check_extra(value: dict[str, Any], field_set: frozenset[str], loc: tuple[Any, ...]) -> None:
    if len(value) == len(field_set):
        return  # every declared field is present (checked before), so there is no other
    for name in value:
        if name not in field_set:
            raise _shape_error((*loc, name), "extra_forbidden", "Extra inputs are not permitted")


def _check_order_message(value: Any, loc: tuple[str | int, ...]) -> dict[str, Any]:
    order = _check_object(value, loc)
    for name in ("participant", "node"):
        if type(_field(order, name, loc)) is not str:
            raise _shape_error((*loc, name), "string_type", "Input should be a string")
    for name in _ORDER_FIELDS[1:]:
        value = _field(order, name, loc)
        kind = type(value)
        if kind is float and type(whole := whole_number(value)) is int:
            order[name] = whole
            continue
        if kind is not int and kind is not str:
            raise _shape_error(
                (*loc, name),
                "int_type",
                "Input should be a JSON integer or a string of decimal digits",
            )
    _check_extra(order, _ORDER_FIELD_SET, loc)
    return order


def check_signed_order(body: Any, loc: tuple[str | int, ...] = ()) -> SignedMessage:
    """Check one ``SignedOrder`` body's shape; return it as a :class:`SignedMessage`."""
    signed = _check_object(body, loc)
    order = _check_order_message(_field(signed, "order", loc), (*loc, "order"))
    signature = _field(signed, "signature", loc)
    if type(signature) is not str:
        raise _shape_error((*loc, "signature"), "string_type", "Input should be a string")
    _check_extra(signed, _SIGNED_FIELD_SET, loc)
    return SignedMessage(order, signature)


def check_batch(body: Any) -> list[SignedMessage]:
    """Check an ``OrderBatch`` body's shape; return its orders."""
    batch = _check_object(body, ())
    orders = _field(batch, "orders", ())
    if not isinstance(orders, list):
        raise _shape_error(("orders",), "list_type", "Input should be a valid list")
    signed = [check_signed_order(item, ("orders", i)) for i, item in enumerate(orders)]
    _check_extra(batch, _BATCH_FIELD_SET, ())
    return signed


def is_json_content_type(content_type: str | None) -> bool:
    """Whether a Content-Type header announces JSON (``application/json`` or ``+json``)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = media.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def parse_json_body(body: bytes, content_type: str | None) -> Any:
    """The JSON value of a request body; InvalidRequest or MalformedJson if there is none."""
    if not body:
        raise InvalidRequest(
            "body: Field required",
            extra={"errors": [{"loc": ["body"], "type": "missing", "msg": "Field required"}]},
        )
    if not is_json_content_type(content_type):
        raise InvalidRequest(
            "the body must be a JSON object sent with Content-Type: application/json",
            extra={
                "errors": [
                    {
                        "loc": ["body"],
                        "type": "model_attributes_type",
                        "msg": "Input should be a valid dictionary or object",
                    }
                ]
            },
        )
    try:
        return json.loads(body)
    except json.JSONDecodeError as err:
        raise MalformedJson(f"the body is not valid JSON: {err.msg}") from None
    except (ValueError, RecursionError) as err:  # bad UTF-8, an integer of >4300 digits, nesting
        raise MalformedJson(f"the body is not valid JSON: {err}") from None


class OrderIntake:
    """Checks, stores and answers ``POST /orders`` and ``POST /orders:batch``."""

    def __init__(
        self,
        service: MarketService,
        committer: Committer,
        max_body_bytes: int,
    ) -> None:
        self.service = service
        self.committer = committer
        self.max_body_bytes = max_body_bytes

    async def submit(self, path: str, body: bytes, content_type: str | None) -> bytes:
        """Accept the orders of one request durably; return the ``201`` body (JSON bytes).

        Raises the :class:`RequestError` (or ``ServiceUnavailable``) to answer with instead.
        """
        value = parse_json_body(body, content_type)
        signed = check_batch(value) if path == BATCH_PATH else [check_signed_order(value)]
        if self.service.facts_due():  # terms and registrations follow the chain, off the loop
            await asyncio.to_thread(self.service.refresh_facts)
        # Signatures first (CPU, no chain): a request with an order its participant did not
        # sign is refused here, before anything is read from the chain for any of its orders.
        checked = self.service.authenticate_orders(signed)
        if checked.unverified and not checked.errors:  # a contract account's: ask the chain
            await asyncio.to_thread(self.service.verify_contract_signatures, checked)
        unknown = self.service.unknown_participants(checked)
        if unknown:  # first sight: the chain reads happen beside the event loop, not on it
            await asyncio.to_thread(self.service.look_up, unknown)
        prepared = self.service.prepare_orders(signed, checked)
        await self.committer.commit(prepared)
        if path == BATCH_PATH:
            views = ",".join([self._accepted_json(o) for o in prepared.orders])
            return f'{{"orders":[{views}]}}'.encode()
        return self._accepted_json(prepared.orders[0]).encode()

    def _accepted_json(self, order: StoredOrder) -> str:
        """``OrderView`` JSON of a just-accepted order, the same text ``json.dumps`` of
        :func:`market.http.views.order_view` gives, written directly (an eighth of the time:
        every value is a number or a string of hex digits or decimal digits, so nothing needs
        escaping)."""
        if (
            order.status != OPEN
            or order.filled_wh is not None
            or order.cancel is not None
            or order.receipt is None
            or not ID_PATTERN.fullmatch(order.node)  # written as it is: nothing to escape
        ):
            return json.dumps(order_view(order), separators=(",", ":"))
        participant = checksum_address(order.participant)
        price = order.price_per_wh
        side = "buy" if order.side == SIDE_BUY else "sell"
        return (
            f'{{"id":"{order.id}","seq":{order.seq},"status":"open",'
            f'"participant":"{participant}","interval":{order.interval},"side":"{side}",'
            f'"quantityWh":{order.quantity_wh},"pricePerWh":"{price}","filledWh":null,'
            f'"receivedAt":{order.received_at},"order":{{"participant":"{participant}",'
            f'"interval":{order.interval},"side":{order.side},"quantityWh":{order.quantity_wh},'
            f'"pricePerWh":"{price}","nonce":"{order.nonce}","expiry":"{order.expiry}",'
            f'"node":"{order.node}"}},'
            f'"signature":"{order.signature}","cancel":null,"receipt":{{"seq":{order.seq},'
            f'"receivedAt":{order.received_at},"signature":"{order.receipt}"}}}}'
        )

    def handles(self, scope: Scope) -> bool:
        """Whether ``scope`` is a request this fast path answers."""
        return (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in (ORDER_PATH, BATCH_PATH)
            and not scope.get("root_path")
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request for which :meth:`handles` is true (an ASGI app)."""
        path: str = scope["path"]
        content_type = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_body_bytes:
                    await self._refuse(body_too_large(self.max_body_bytes), path, scope, send)
                    return
        try:
            body = await self._read_body(receive)
            if body is None:
                return  # the client went away
            answer = await self.submit(path, body, content_type)
        except Exception as err:
            if not isinstance(err, WattledgerError):
                log.exception("unexpected error on POST %s", path)
            await self._refuse(err, path, scope, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise body_too_large(self.max_body_bytes)
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _refuse(self, err: BaseException, path: str, scope: Scope, send: Send) -> None:
        response = problem_response(err, path)

        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)


__all__ = [
    "BATCH_PATH",
    "ORDER_PATH",
    "OrderIntake",
    "check_batch",
    "check_signed_order",
    "is_json_content_type",
    "parse_json_body",
]
