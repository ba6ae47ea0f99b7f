"""The market's HTTP API (DESIGN §7): a thin FastAPI layer over :class:`MarketService`.

:func:`create_app` builds the app for one service. Every path of DESIGN §7 that belongs to the
market is here; ``POST /meter-readings`` and ``GET /intervals/{t}/settlement`` belong to the
settlement service, which plugs in its own routers through ``extra_routers``.

JSON conventions
    Integers that can exceed 2**53 - 1 (JavaScript's exact range) are *emitted* as decimal
    strings: prices, money, nonces and expiries. Wh quantities (bounded by 2**40), intervals,
    sequence numbers and times are JSON numbers. On input every unsigned field of a signed
    message accepts a JSON integer or a string of decimal digits, as wallets produce both.

Errors
    Every refusal is ``application/problem+json`` (RFC 9457) with ``type``, ``title``,
    ``status``, ``detail`` and a stable ``code`` (table in :mod:`market.http.errors`), mapped
    from the exception tree in :func:`problem_response` and nowhere else. Request-shape errors
    (FastAPI's validation, or the order intake's own checks, which follow the same models)
    become ``malformed_json`` (400) or ``invalid_request`` (422); a wrong type in
    ``quantityWh``, ``pricePerWh``, ``side`` or ``signature`` gets that field's own code, so
    ``1.5`` Wh is ``invalid_quantity`` whether it came as a number or a string.

Order intake
    ``POST /orders`` and ``POST /orders:batch``, nearly all of the traffic, are answered by
    :mod:`market.http.intake` before FastAPI's routing: it checks the body's shape by hand
    against the ``SignedOrder`` and ``OrderBatch`` models, which stay to document the bodies
    here. Per request this saves more time than checking the order's signature takes.

Group commit
    ``POST /orders`` and ``POST /orders:batch`` check orders on the event loop, then hand them
    to a :class:`GroupCommitter`, which writes everything that queued up meanwhile in one
    SQLite transaction (``synchronous=FULL``: one fsync for the group) on a worker thread and
    answers ``201`` only after that transaction committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictInt, StrictStr
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger import eip712 as signing
from ledger.addresses import checksum_address
from ledger.errors import BadSignature as BadSignatureError
from ledger.errors import InputError, RequestError, WattledgerError
from market.http.errors import (
    BodyTooLarge,
    InvalidPrice,
    InvalidQuantity,
    InvalidRequest,
    InvalidSide,
    MalformedJson,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
)
from market.http.intake import BATCH_PATH, ORDER_PATH, OrderIntake
from market.intake import Prepared
from market.orders import MAX_PRICE_PER_WH, MAX_QUANTITY_WH
from market.service import MarketService
from market.signed_messages import SignedMessage, order_message_json
from market.store import ORDER_STATUSES, StoredOrder

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
DEFAULT_MAX_BODY_BYTES = 1 << 20
"""Largest request body accepted (1 MiB: a batch of 1,000 orders is about 450 KiB)."""

UINT64_MAX = 2**64 - 1
MAX_INTERVAL = 2**63 - 1
"""Largest interval number a path or query takes (SQLite integers are signed 64-bit; an
order for a later interval is refused as too far ahead long before)."""
JsonDict = dict[str, JsonValue]
ORDER_ID_PATTERN = r"^0x[0-9a-fA-F]{64}$"
ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"

# --- request and response models (they also make the OpenAPI document) -----------------------

UintJson = Annotated[
    StrictInt | StrictStr,
    Field(description="unsigned integer: a JSON integer or a string of decimal digits"),
]

_EXAMPLE_ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
_EXAMPLE_ORDER: JsonDict = {
    "participant": _EXAMPLE_ADDRESS,
    "interval": 1963,
    "side": 0,
    "quantityWh": 2500,
    "pricePerWh": "250000000000000",
    "nonce": "1",
    "expiry": "1767225600",
}
_EXAMPLE_SIGNATURE = "0x" + "ab" * 32 + "1c" * 32 + "1b"
_EXAMPLE_HASH = "0x" + "5e" * 32


class OrderMessage(BaseModel):
    """An EIP-712 ``Order`` message, exactly as the participant signed it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE_ORDER]})

    participant: StrictStr = Field(description="the participant's 0x address (the signer)")
    interval: UintJson = Field(description="delivery interval number (uint64)")
    side: UintJson = Field(description="0 = buy (bid), 1 = sell (ask) (uint8)")
    quantityWh: UintJson = Field(description=f"energy in Wh, 1..{MAX_QUANTITY_WH} (uint64)")
    pricePerWh: UintJson = Field(
        description=f"limit price in token base units per Wh, 1..{MAX_PRICE_PER_WH} (uint128)"
    )
    nonce: UintJson = Field(description="single-use per signer, any unused uint64")
    expiry: UintJson = Field(description="Unix seconds after which the message is refused")


class SignedOrder(BaseModel):
    """An order message and the participant's EIP-712 signature of it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"order": _EXAMPLE_ORDER, "signature": _EXAMPLE_SIGNATURE}]
        },
    )

    order: OrderMessage
    signature: StrictStr = Field(description="65-byte signature r‖s‖v as 0x hex (v 27/28)")


class OrderBatch(BaseModel):
    """Many signed orders at once (aggregators); all are accepted or none."""

    model_config = ConfigDict(extra="forbid")

    orders: list[SignedOrder] = Field(description="signed orders, at most max_batch_orders")


class CancelMessage(BaseModel):
    """An EIP-712 ``Cancel`` message."""

    model_config = ConfigDict(extra="forbid")

    participant: StrictStr
    orderHash: StrictStr = Field(description="id of the order to cancel (bytes32 hex)")
    nonce: UintJson
    expiry: UintJson


class SignedCancel(BaseModel):
    """A cancel message and the participant's signature of it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "cancel": {
                        "participant": _EXAMPLE_ADDRESS,
                        "orderHash": _EXAMPLE_HASH,
                        "nonce": "2",
                        "expiry": "1767225600",
                    },
                    "signature": _EXAMPLE_SIGNATURE,
                }
            ]
        },
    )

    cancel: CancelMessage
    signature: StrictStr


class CloseGateMessage(BaseModel):
    """An EIP-712 ``CloseGate`` message (operator only)."""

    model_config = ConfigDict(extra="forbid")

    interval: UintJson
    nonce: UintJson
    expiry: UintJson


class SignedCloseGate(BaseModel):
    """A gate-closure order signed by the market operator's key."""

    model_config = ConfigDict(extra="forbid")

    close: CloseGateMessage
    signature: StrictStr


class OrderMessageOut(BaseModel):
    """A signed order message in canonical form (big integers as strings)."""

    participant: str
    interval: int
    side: int
    quantityWh: int
    pricePerWh: str
    nonce: str
    expiry: str


class OrderView(BaseModel):
    """An order as the market holds it."""

    id: str = Field(description="the order hash (EIP-712 digest), bytes32 hex")
    seq: int = Field(description="arrival sequence (price-tie priority)")
    status: Literal["open", "cancelled", "excluded", "closed"]
    participant: str
    interval: int
    side: Literal["buy", "sell"]
    quantityWh: int
    pricePerWh: str
    filledWh: int | None = Field(description="energy traded, once the interval has cleared")
    receivedAt: int = Field(description="Unix seconds (market clock) of acceptance")
    order: OrderMessageOut
    signature: str
    cancel: dict[str, Any] | None = None


class OrderList(BaseModel):
    """A list of orders."""

    orders: list[OrderView]


class Problem(BaseModel):
    """An RFC 9457 problem; ``code`` is stable, see the error table."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    hint: str | None = None
    errors: list[dict[str, Any]] | None = None


class Health(BaseModel):
    """Liveness and a few numbers."""

    status: Literal["ok"]
    chainId: int
    now: int
    currentInterval: int
    openOrders: int


class Depth(BaseModel):
    """Aggregated quantity at one price level."""

    pricePerWh: str
    quantityWh: int
    orders: int


class BookView(BaseModel):
    """Aggregated depth of one interval: bids best (highest) first, asks best (lowest) first."""

    interval: int
    state: str
    gateClosureAt: int
    bids: list[Depth]
    asks: list[Depth]


class PublishedOrder(BaseModel):
    """One order of a closed interval's published set, with everything to re-verify it."""

    id: str
    seq: int
    order: OrderMessageOut
    signature: str
    filledWh: int | None


class PublishedBook(BaseModel):
    """A closed interval's full signed order set and its Merkle root (the ``bookRoot``)."""

    interval: int
    state: str
    bookRoot: str
    domain: dict[str, Any]
    orders: list[PublishedOrder]


class TradeView(BaseModel):
    """One cleared trade (an on-chain dynamic energy contract once committed)."""

    buyOrder: str
    sellOrder: str
    buyer: str
    seller: str
    quantityWh: int
    pricePerWh: str


class CommitView(BaseModel):
    """Where the interval was committed on-chain (null fields when recovered after a crash)."""

    txHash: str | None
    blockNumber: int | None


class ClearingView(BaseModel):
    """The clearing result of a closed interval."""

    interval: int
    state: str
    mechanism: str
    k: list[int] | None
    pricePerWh: str | None
    volumeWh: int
    bookRoot: str
    trades: list[TradeView]
    excluded: list[str]
    commit: CommitView | None


class ProofView(BaseModel):
    """An order's inclusion proof (OpenZeppelin ``MerkleProof.verify(proof, bookRoot, leaf)``)."""

    id: str
    interval: int
    leaf: str
    bookRoot: str
    proof: list[str]


class ParticipantInfo(BaseModel):
    """On-chain balances of a participant and what its open orders reserve."""

    address: str
    registered: bool
    freeBalance: str
    lockedBalance: str
    reservedByOpenOrders: str
    availableForOrders: str
    openOrders: list[OrderView]


class MarketInfo(BaseModel):
    """Everything a client needs to sign orders and follow the market."""

    chainId: int
    contracts: dict[str, str]
    operator: str
    token: dict[str, Any]
    eip712: dict[str, Any]
    intervalSeconds: int
    epoch: int
    gateClosureSeconds: int
    maxAheadIntervals: int
    maxBatchOrders: int
    currentInterval: int
    now: int
    mechanism: dict[str, Any]
    terms: dict[str, Any]
    bounds: dict[str, Any]


# --- problem+json: the one mapping from errors to HTTP --------------------------------------

_FIELD_CODES: dict[str, type[RequestError]] = {
    "quantityWh": InvalidQuantity,
    "pricePerWh": InvalidPrice,
    "side": InvalidSide,
    "signature": BadSignatureError,
}


def problem_response(err: BaseException, instance: str | None = None) -> JSONResponse:
    """The problem+json response for ``err`` (the single error → HTTP mapping)."""
    if isinstance(err, RequestError):
        status, code, title = err.status, err.code, err.title
        body: dict[str, Any] = {"detail": err.message, **err.extra}
        hint = err.hint
    elif isinstance(err, ServiceUnavailable):
        status, code, title, hint = err.status, err.code, err.title, err.hint
        body = {"detail": err.message}
    elif isinstance(err, InputError):
        status, code, title, hint = 422, err.code, "Invalid input", err.hint
        body = {"detail": err.message}
    elif isinstance(err, WattledgerError):
        status, code, title, hint = 500, err.code, "Internal error", None
        body = {"detail": err.message}
    else:
        status, code, title, hint = 500, "internal_error", "Internal error", None
        body = {"detail": "an unexpected error occurred; it has been logged"}
    content = {
        "type": f"urn:wattledger:problem:{code}",
        "title": title,
        "status": status,
        "code": code,
        **body,
    }
    if hint:
        content["hint"] = hint
    if instance:
        content["instance"] = instance
    return JSONResponse(content, status_code=status, media_type=PROBLEM_JSON)


def validation_problem(exc: RequestValidationError) -> RequestError:
    errors = exc.errors()
    for e in errors:
        if e.get("type") == "json_invalid":
            return MalformedJson(f"the body is not valid JSON: {e.get('msg', '')}")
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ())]
    kind = first.get("type", "")
    where = ".".join(loc)
    detail = f"{where}: {first.get('msg', 'invalid')}"
    if loc == ["body"] and isinstance(first.get("input"), bytes | str):
        detail = "the body must be a JSON object sent with Content-Type: application/json"
    field = next((p for p in reversed(loc) if p in _FIELD_CODES), None)
    if field is not None and kind not in ("missing", "extra_forbidden"):
        return _FIELD_CODES[field](detail)
    listed = [
        {"loc": [str(p) for p in e.get("loc", ())], "type": e.get("type"), "msg": e.get("msg")}
        for e in errors[:20]
    ]
    return InvalidRequest(detail, extra={"errors": listed})


# --- body size limit -------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` with a 413 problem, streamed or not."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = 0
                if length > self.max_bytes:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(f"the body exceeds {self.max_bytes} bytes")
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            BodyTooLarge(f"the body exceeds {self.max_bytes} bytes"), scope.get("path")
        )
        await response(scope, receive, send)


# --- group commit ----------------------------------------------------------------------------


class GroupCommitter:
    """Stores prepared orders from many requests in one durable transaction per round.

    ``inline``: write each request's orders on the event loop itself instead of on a worker
    thread. Only for a client in the same process that sends one request at a time (the
    simulation): nothing can queue up behind a write then, and the handover to a worker
    thread and back is all a thread would add (about a quarter of an order's time there).
    A server keeps the default, so the loop never waits for a disk.
    """

    def __init__(self, service: MarketService, *, inline: bool = False) -> None:
        self.service = service
        self.inline = inline
        self._queue: list[tuple[Prepared, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def commit(self, prepared: Prepared) -> None:
        """Return once ``prepared`` is durably stored; raise if storing failed."""
        if self.inline:
            try:
                self.service.commit_prepared([prepared])
            except BaseException:
                self.service.abort_prepared([prepared])
                raise
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((prepared, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        await asyncio.shield(future)

    async def _run(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            try:
                await asyncio.to_thread(self.service.commit_prepared, [p for p, _ in group])
            except BaseException as err:
                self.service.abort_prepared([p for p, _ in group])
                for _, future in group:
                    if not future.done():
                        future.set_exception(err)
                if not isinstance(err, Exception):
                    raise
            else:
                for _, future in group:
                    if not future.done():
                        future.set_result(None)


# --- JSON views ------------------------------------------------------------------------------


def order_view(order: StoredOrder) -> dict[str, Any]:
    """The JSON of :class:`OrderView` for one stored order."""
    return {
        "id": order.id,
        "seq": order.seq,
        "status": order.status,
        "participant": checksum_address(order.participant),
        "interval": order.interval,
        "side": "buy" if order.side == signing.SIDE_BUY else "sell",
        "quantityWh": order.quantity_wh,
        "pricePerWh": str(order.price_per_wh),
        "filledWh": order.filled_wh,
        "receivedAt": order.received_at,
        "order": order_message_json(order),
        "signature": order.signature,
        "cancel": order.cancel,
    }


def _json(content: Any, status: int = 200) -> Response:
    body = json.dumps(content, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json")


def _depth(orders: Sequence[StoredOrder], side: int) -> list[dict[str, Any]]:
    levels: dict[int, list[int]] = {}
    for o in orders:
        if o.side == side:
            level = levels.setdefault(o.price_per_wh, [0, 0])
            level[0] += o.quantity_wh
            level[1] += 1
    prices = sorted(levels, reverse=side == signing.SIDE_BUY)
    return [
        {"pricePerWh": str(p), "quantityWh": levels[p][0], "orders": levels[p][1]} for p in prices
    ]


def _problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        s: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "refused"}
        for s in statuses
    }


# --- the app ---------------------------------------------------------------------------------


def _request_body_schemas() -> dict[str, Any]:
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


class MarketApp(FastAPI):
    """The market's FastAPI app, with order intake answered before FastAPI's routing.

    ``POST /orders`` and ``POST /orders:batch`` go straight to :attr:`intake`
    (:mod:`market.http.intake`); every other request, and the OpenAPI document, is FastAPI's.
    """

    intake: OrderIntake | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        intake = self.intake
        if intake is not None and intake.handles(scope):
            await intake(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, body_schema in _request_body_schemas().items():
                components.setdefault(name, body_schema)
        return self.openapi_schema or {}


IntervalParam = Annotated[int, Path(ge=0, le=MAX_INTERVAL, description="interval number")]
OrderIdParam = Annotated[
    str, Path(pattern=ORDER_ID_PATTERN, description="order hash (bytes32 hex)")
]
AddressParam = Annotated[str, Path(pattern=ADDRESS_PATTERN, description="0x address")]


def create_app(
    service: MarketService,
    *,
    extra_routers: Sequence[APIRouter] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    tick_seconds: float | None = None,
    inline_commits: bool = False,
) -> MarketApp:
    """Build the market API for ``service``.

    ``extra_routers`` are included as they are (the settlement service adds
    ``POST /meter-readings`` and ``GET /intervals/{t}/settlement`` this way).
    ``tick_seconds``: when set, a background task calls ``service.tick()`` that often, which
    closes gates on time (``wattledger serve``); tests drive ``tick`` themselves.
    ``inline_commits``: store accepted orders on the event loop (see :class:`GroupCommitter`;
    for an in-process client sending one request at a time, never for a server).
    """
    committer = GroupCommitter(service, inline=inline_commits)
    intake = OrderIntake(service, committer, max_body_bytes, problem_response, order_view)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = None
        if tick_seconds is not None:
            task = asyncio.create_task(_ticker(service, tick_seconds))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = MarketApp(
        title="wattledger market",
        version="1",
        summary="Peer-to-peer energy market: EIP-712 signed orders, gate closure, on-chain commit.",
        description=__doc__,
        lifespan=lifespan,
    )

    @app.exception_handler(WattledgerError)
    async def _on_domain_error(request: Request, exc: WattledgerError) -> Response:
        return problem_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        return problem_response(validation_problem(exc), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        err: RequestError
        if exc.status_code == 404:
            err = NotFound(f"no such path: {request.url.path}")
        elif exc.status_code == 405:
            err = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        else:
            err = RequestError(str(exc.detail)).with_status(exc.status_code)
        response = problem_response(err, request.url.path)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(Exception)
    async def _on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(exc, request.url.path)

    @app.get("/health", response_model=Health, tags=["market"])
    def health() -> dict[str, Any]:
        """Liveness: the chain id, the market clock and the number of open orders."""
        return {
            "status": "ok",
            "chainId": service.info.chain_id,
            "now": service.clock.now(),
            "currentInterval": service.current_interval(),
            "openOrders": service.open_order_count(),
        }

    @app.get("/market", response_model=MarketInfo, tags=["market"])
    def market() -> dict[str, Any]:
        """Everything a client needs to sign orders: chain, contracts, EIP-712 domain and
        types, interval timing, gate closure, mechanism, terms and bounds."""
        info, terms, timing, cfg = service.info, service.terms(), service.timing, service.config
        return {
            "chainId": info.chain_id,
            "contracts": {
                "EnergyMarket": checksum_address(info.market_address),
                "WattToken": checksum_address(info.token_address),
            },
            "operator": checksum_address(info.operator),
            "token": {
                "address": checksum_address(info.token_address),
                "symbol": info.token_symbol,
                "decimals": info.token_decimals,
            },
            "eip712": {
                "domain": service.domain.as_json(),
                "types": {"EIP712Domain": signing.EIP712_DOMAIN_TYPE, **signing.TYPES},
                "primaryTypes": {"order": "Order", "cancel": "Cancel", "closeGate": "CloseGate"},
            },
            "intervalSeconds": timing.interval_seconds,
            "epoch": timing.epoch_seconds,
            "gateClosureSeconds": cfg.gate_closure_seconds,
            "maxAheadIntervals": cfg.max_ahead_intervals,
            "maxBatchOrders": cfg.max_batch_orders,
            "currentInterval": service.current_interval(),
            "now": service.clock.now(),
            "mechanism": {"name": cfg.mechanism, "k": list(cfg.k)},
            "terms": {
                "penaltyPricePerWh": str(terms.penalty_price_per_wh),
                "toleranceBps": terms.tolerance_bps,
                "readingWindowSeconds": terms.reading_window_seconds,
            },
            "bounds": {
                "minQuantityWh": 1,
                "maxQuantityWh": MAX_QUANTITY_WH,
                "minPricePerWh": "1",
                "maxPricePerWh": str(MAX_PRICE_PER_WH),
            },
        }

    @app.post(
        ORDER_PATH,
        status_code=201,
        response_model=OrderView,
        responses=_problem_responses(400, 403, 409, 413, 422, 503),
        tags=["orders"],
        openapi_extra=_request_body(SignedOrder),
    )
    async def submit_order(request: Request) -> Response:
        """Submit one signed order. ``201`` means it is durably stored and in the book."""
        body = await request.body()
        answer = await intake.submit(ORDER_PATH, body, request.headers.get("content-type"))
        return Response(answer, status_code=201, media_type="application/json")

    @app.post(
        BATCH_PATH,
        status_code=201,
        response_model=OrderList,
        responses=_problem_responses(400, 403, 409, 413, 422, 503),
        tags=["orders"],
        openapi_extra=_request_body(OrderBatch),
    )
    async def submit_batch(request: Request) -> Response:
        """Submit many signed orders at once (aggregators); all are stored or none.

        A refused batch answers ``batch_rejected`` with ``errors``: one entry per bad order
        (``index``, ``code``, ``status``, ``detail``).
        """
        body = await request.body()
        answer = await intake.submit(BATCH_PATH, body, request.headers.get("content-type"))
        return Response(answer, status_code=201, media_type="application/json")

    @app.get(
        "/orders/{order_id}",
        response_model=OrderView,
        responses=_problem_responses(404, 422),
        tags=["orders"],
    )
    def get_order(order_id: OrderIdParam) -> Response:
        """One order by its id (the EIP-712 order hash)."""
        return _json(order_view(service.get_order(order_id)))

    @app.delete(
        "/orders/{order_id}",
        response_model=OrderView,
        responses=_problem_responses(400, 403, 404, 409, 413, 422, 503),
        tags=["orders"],
    )
    def cancel_order(order_id: OrderIdParam, body: SignedCancel) -> Response:
        """Cancel an open order with the participant's signed ``Cancel`` (before gate closure)."""
        signed = SignedMessage(body.cancel.model_dump(), body.signature)
        return _json(order_view(service.cancel_order(order_id, signed)))

    @app.get(
        "/orders/{order_id}/proof",
        response_model=ProofView,
        responses=_problem_responses(404, 409, 422),
        tags=["orders"],
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

    @app.get(
        "/participants/{address}",
        response_model=ParticipantInfo,
        responses=_problem_responses(422, 503),
        tags=["participants"],
    )
    def participant(address: AddressParam) -> Response:
        """On-chain free and locked balances, and the open orders with what they reserve."""
        view = service.participant(address)
        available = max(view.free_base_units - view.reserved_base_units, 0)
        return _json(
            {
                "address": checksum_address(view.address),
                "registered": view.registered,
                "freeBalance": str(view.free_base_units),
                "lockedBalance": str(view.locked_base_units),
                "reservedByOpenOrders": str(view.reserved_base_units),
                "availableForOrders": str(available),
                "openOrders": [order_view(o) for o in view.open_orders],
            }
        )

    @app.get(
        "/participants/{address}/orders",
        response_model=OrderList,
        responses=_problem_responses(422),
        tags=["participants"],
    )
    def participant_orders(
        address: AddressParam,
        status: Annotated[
            Literal["open", "cancelled", "excluded", "closed"] | None,
            Query(description="only orders with this status"),
        ] = None,
        interval: Annotated[int | None, Query(ge=0, le=MAX_INTERVAL)] = None,
    ) -> Response:
        """All orders of a participant in arrival order, optionally filtered."""
        assert status is None or status in ORDER_STATUSES
        orders = service.participant_orders(address, status, interval)
        return _json({"orders": [order_view(o) for o in orders]})

    @app.get(
        "/intervals/{t}/book",
        response_model=BookView,
        responses=_problem_responses(422),
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
            "bids": _depth(orders, signing.SIDE_BUY),
            "asks": _depth(orders, signing.SIDE_SELL),
        }

    @app.get(
        "/intervals/{t}/orders",
        response_model=PublishedBook,
        responses=_problem_responses(409, 422),
        tags=["intervals"],
    )
    def interval_orders(t: IntervalParam) -> Response:
        """The signed order set of a closed interval, with its ``bookRoot`` and the EIP-712
        domain, so anyone can re-verify every signature and re-clear the book."""
        record, orders = service.published_orders(t)
        return _json(
            {
                "interval": t,
                "state": record.state,
                "bookRoot": record.book_root,
                "domain": service.domain.as_json(),
                "orders": [
                    {
                        "id": o.id,
                        "seq": o.seq,
                        "order": order_message_json(o),
                        "signature": o.signature,
                        "filledWh": o.filled_wh,
                    }
                    for o in orders
                ],
            }
        )

    @app.get(
        "/intervals/{t}/clearing",
        response_model=ClearingView,
        responses=_problem_responses(409, 422),
        tags=["intervals"],
    )
    def interval_clearing(t: IntervalParam) -> dict[str, Any]:
        """Clearing price, volume and trades of a closed interval, and its on-chain commit."""
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
            "commit": (
                {"txHash": record.commit_tx, "blockNumber": record.commit_block}
                if committed
                else None
            ),
        }

    @app.post(
        "/intervals/{t}/close",
        response_model=ClearingView,
        responses=_problem_responses(400, 403, 409, 413, 422, 503),
        tags=["operator"],
    )
    def close_interval(t: IntervalParam, body: SignedCloseGate) -> dict[str, Any]:
        """Operator only: close ``t``'s gate now (simulations driving a remote market).

        The body is a ``CloseGate`` message signed by the operator key published in
        ``GET /market``; anyone else gets ``not_operator``.
        """
        signed = SignedMessage(body.close.model_dump(), body.signature)
        service.operator_close_gate(t, signed)
        return interval_clearing(t)

    for router in extra_routers:
        app.include_router(router)

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.intake = intake
    return app


async def _ticker(service: MarketService, every_seconds: float) -> None:
    """Close gates on time: run ``service.tick`` in a worker thread every ``every_seconds``."""
    while True:
        try:
            closed = await asyncio.to_thread(service.tick)
            for interval in closed:
                log.info("interval %d: gate closed, cleared and committed", interval)
        except Exception:
            log.exception("gate closure failed; retrying")
        await asyncio.sleep(every_seconds)


__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "PROBLEM_JSON",
    "BodyLimit",
    "GroupCommitter",
    "MarketApp",
    "create_app",
    "order_view",
    "problem_response",
    "validation_problem",
]
