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
    ``status``, ``detail`` and a stable ``code`` (the table is published in the OpenAPI
    description, built from the exception classes by :mod:`market.http.openapi_doc`), mapped
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
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI

from market.http.asgi import Receive, Scope, Send
from market.http.body_limit import DEFAULT_MAX_BODY_BYTES, BodyLimit
from market.http.group_commit import GroupCommitter
from market.http.intake import OrderIntake
from market.http.openapi_doc import DocumentedApp
from market.http.problems import install_problem_handlers
from market.http.routes.grid import grid_router
from market.http.routes.info import info_router
from market.http.routes.intervals import intervals_router
from market.http.routes.orders import intake_body_schemas, orders_router
from market.http.routes.participants import participants_router
from market.http.routes.registrations import registrations_router
from market.service import MarketService

log = logging.getLogger(__name__)


DESCRIPTION = """\
A peer-to-peer energy market. Participants trade energy for short delivery intervals with
EIP-712 signed orders; at each interval's gate closure a double auction clears the book and
the operator commits the trades on-chain, where meter-signed readings settle them.

## Authentication

By signature, no accounts or tokens. An order, a cancel or the operator's gate closure is
valid only with its signer's EIP-712 signature over the domain and types that `GET /market`
publishes (`eip712`); a meter reading only with the participant's registered meter key.
Every message carries a `nonce` (single-use per signer) and an `expiry` (Unix seconds).
A signature is `0x` and 130 hex digits (65 bytes `r ‖ s ‖ v`, `v` 0, 1, 27 or 28) or 128
(64 bytes, EIP-2098 `r ‖ vs`), with a low `s` (EIP-2).

## Intervals and time

Interval `t` covers the Unix seconds `[epoch + t * intervalSeconds, epoch + (t + 1) *
intervalSeconds)` (`GET /market`). Its gate closes `gateClosureSeconds` before it starts:
an order for `t` is taken while the market's clock (`now` in `GET /market` and
`GET /health`) is before `epoch + t * intervalSeconds - gateClosureSeconds`, and at most
`maxAheadIntervals` intervals after the current one. After gate closure the interval's
signed order set, its `bookRoot` and its clearing are published.

## JSON

Integers that can exceed 2^53 - 1 (prices, money, nonces, expiries) are answered as
strings of decimal digits; Wh quantities, intervals, sequence numbers and times as JSON
numbers. On input every unsigned field of a signed message takes either form, a JSON
integer or a string of decimal digits, within its range (the schema states both). Request
bodies are `application/json`, at most 1 MiB. Every `405` answer carries an `Allow` header
listing the methods the path takes.

## Refusals

A request the schema allows is refused only for a rule a schema cannot state: a signature
that verifies as no key or another key, state (nonces, gates, collateral, registration) or
the clock. Each operation's description lists its rules in the order they are checked,
with their codes.
"""
"""The OpenAPI ``info.description``: for integrators, in Markdown; the problem code table is
appended from the code's registry (:mod:`market.http.openapi_doc`)."""


class MarketApp(DocumentedApp):
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

    def extend_openapi(self, document: dict[str, Any]) -> dict[str, Any]:
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for name, body_schema in intake_body_schemas().items():
            components.setdefault(name, body_schema)
        return document


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
    intake = OrderIntake(service, GroupCommitter(service, inline=inline_commits), max_body_bytes)

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
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.include_router(info_router(service))
    app.include_router(orders_router(service, intake))
    app.include_router(participants_router(service))
    app.include_router(registrations_router(service))
    app.include_router(intervals_router(service))
    app.include_router(grid_router(service))
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


__all__ = ["DESCRIPTION", "MarketApp", "create_app"]
