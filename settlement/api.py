"""The settlement API: ``POST /meter-readings[:batch]`` and ``GET /intervals/{t}/settlement``.

:func:`settlement_router` is included into the market API by ``wattledger serve``
(``market.http.app.create_app(..., extra_routers=[...])``); :func:`create_settlement_app` serves the
same router on its own for ``wattledger settle --watch --port N``. Either way refusals are
``application/problem+json`` with a stable ``code`` (the table is published in the OpenAPI
description, :mod:`market.http.openapi_doc`), produced by the market API's single error
mapping.

``POST /meter-readings``
    Body ``{"reading": {participant, interval, importedWh, exportedWh}, "signature": "0x…"}``:
    the EIP-712 ``MeterReading`` exactly as the meter key signed it, and its signature: 65
    bytes ``r ‖ s ‖ v`` (``v`` 27/28 or 0/1, what :meth:`market.client.OrderSigner.reading`
    produces) or 64 bytes EIP-2098 ``r ‖ vs``; stored and shown in the canonical 65-byte form
    with ``v`` 27/28. Energy
    fields take a JSON integer or a string of decimal digits. ``202 Accepted`` means the
    reading is durably stored (``status: queued``); the service puts it on-chain in the next
    batch, before the interval's reading deadline.

``POST /meter-readings:batch``
    Body ``{"readings": [<the same signed reading as above>, ...]}``, at most
    ``max_intake_readings`` (1,000 by default; more is ``batch_too_large``, 422), each checked
    exactly as ``POST /meter-readings`` checks one. All are stored or none: ``202`` with
    ``{"readings": [...]}`` in request order once every one is durably stored; a refused
    batch answers ``batch_rejected`` (with the first error's status) listing each bad
    reading in ``errors`` (``index``, ``code``, ``status``, ``detail``), as
    ``POST /orders:batch`` does. A reading repeating an earlier one's participant and
    interval is ``reading_duplicate``. Meters of one site, or a data hub relaying many, send
    an interval's readings in one request: the chain is read once per request and interval,
    not once per reading, and one transaction stores them all.

``GET /intervals/{t}/settlement``
    The reconciliation report of interval ``t`` from on-chain events, checked against the
    settlement model (:mod:`settlement.report`), plus the service's own state of the interval
    (``service``: state, readings by status, transactions, last error).

``GET /intervals/{t}/readings``
    Every reading of interval ``t`` the service accepted, with its meter signature, its
    status and whether it is on-chain (``onChain``). Only the readings settlement uses go
    on-chain, those of the interval's sellers; a participant that sold nothing has its
    reading kept here (``offchain``), and this list is where it is published for the audit
    (``wattledger audit --readings URL``), which checks each signature against the meter key
    registered when the interval was committed.

``GET /settlement``
    Every interval the service tracks, with its state and last error (failed intervals are
    listed here with their reason).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ledger.errors import BadSignature, UnverifiableSignature
from market.http.body_limit import DEFAULT_MAX_BODY_BYTES, BodyLimit
from market.http.errors import (
    BatchTooLarge,
    BodyTooLarge,
    ChainBusy,
    ChainUnavailableProblem,
    InvalidRequest,
    MalformedJson,
    OutOfBounds,
    ServiceUnavailable,
)
from market.http.openapi_doc import DocumentedApp, LimitedRouter, model_components
from market.http.params import IntervalParam

# The market API's one error → problem+json mapping, so that both apps answer alike.
from market.http.problems import install_problem_handlers, problem_responses
from market.http.wire import Address, Signature, Uint64, integer_range_schema
from settlement import api_shapes
from settlement.errors import (
    DuplicateReading,
    IntervalSettled,
    MeterMismatch,
    ReadingDeadlinePassed,
    ReadingDeadlineTooClose,
    ReadingOutOfBounds,
    ReadingTooEarly,
    UnknownInterval,
    UnregisteredMeter,
)
from settlement.intake import published_reading_json, read_store, reading_json
from settlement.service import SettlementService

READING_REFUSALS = (
    MalformedJson,
    InvalidRequest,
    BodyTooLarge,
    BadSignature,
    OutOfBounds,
    UnverifiableSignature,
    ReadingOutOfBounds,
    UnregisteredMeter,
    MeterMismatch,
    ReadingTooEarly,
    UnknownInterval,
    IntervalSettled,
    ReadingDeadlineTooClose,
    ReadingDeadlinePassed,
    DuplicateReading,
    ChainBusy,
    ChainUnavailableProblem,
    ServiceUnavailable,
)
"""Every refusal of ``POST /meter-readings``, in the order the reading's checks run."""

READING_RULES = """
Checked in this order; the first failing check answers:

1. the body's shape and every field's form and range, as the schema states
   (`malformed_json`, `invalid_request`, `bad_signature`);
2. the signature recovers a key (`unverifiable_signature`);
3. neither `importedWh` nor `exportedWh` exceeds the meter's physical maximum per interval
   (a setting of the service, 10 MWh by default) (`reading_out_of_bounds`);
4. the participant is registered (`unregistered_meter`) and the key is its registered
   meter key, over the market's EIP-712 domain (`meter_mismatch`);
5. the interval's delivery has ended by on-chain time (`reading_too_early`), trades were
   committed for it (`interval_not_committed`), it is not settled (`interval_settled`),
   its reading deadline has not passed (`reading_window_closed`) and is more than the
   service's reading margin away (`reading_deadline_too_close`: a reading accepted later
   could miss the deadline on-chain, and the seller would pay the penalty; the margin is
   three block times, at least 10 s, by default; both refusals carry `deadline`,
   `marginSeconds` and `acceptedUntil`);
6. no reading of the participant for the interval was accepted before
   (`reading_duplicate`).

Checks 1-3 need no chain: a request with a reading failing one of them is refused without
reading the chain for any of its readings (a batch then lists only the readings that failed
them). A participant's meter key is read once and kept; for a participant never seen
registered the read is within a budget of reads per second for the whole service, and when
it is spent the answer is `chain_busy` (503) with `Retry-After`.

`service_unavailable` and `chain_unavailable` (503) mean the chain or the reading store
failed: retry.
"""

_EXAMPLE_READING: dict[str, Any] = {
    "participant": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "interval": 1963,
    "importedWh": 120,
    "exportedWh": 2480,
}


class ReadingMessage(BaseModel):
    """An EIP-712 ``MeterReading`` message, exactly as the meter signed it."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [dict(_EXAMPLE_READING)]}
    )

    participant: Address = Field(description="the participant's 0x address (not the meter's)")
    interval: Uint64 = Field(description="delivery interval number (uint64)")
    importedWh: Uint64 = Field(description="energy drawn from the grid in the interval, Wh")
    exportedWh: Uint64 = Field(description="energy fed into the grid in the interval, Wh")


class SignedReading(BaseModel):
    """A meter reading and the meter key's EIP-712 signature of it."""

    model_config = ConfigDict(extra="forbid")

    reading: ReadingMessage
    signature: Signature


class ReadingBatch(BaseModel):
    """Many meter-signed readings at once (a site's meters, a data hub); all are accepted
    or none."""

    model_config = ConfigDict(extra="forbid")

    readings: list[SignedReading] = Field(
        min_length=1, description="signed readings, at most maxIntakeReadings (GET /settlement)"
    )


class ReadingView(BaseModel):
    """A reading as the settlement service holds it."""

    participant: str
    interval: int
    importedWh: int
    exportedWh: int
    meter: str = Field(description="the meter key that signed it")
    status: str = Field(description="queued, onchain, superseded, rejected or missed")
    reason: str | None = Field(description="why it was rejected, superseded or missed")
    receivedAt: int = Field(description="on-chain time (Unix s) of acceptance")
    txHash: str | None
    blockNumber: int | None
    signature: str


class PublishedReading(ReadingView):
    """A reading as the settlement service publishes it, and whether it is on-chain."""

    onChain: bool = Field(
        description="whether this reading is the one on-chain (a ReadingSubmitted event "
        "carries it); an offchain reading (a participant that sold nothing in the interval) "
        "is published only here"
    )


class PublishedReadings(BaseModel):
    """Every reading of an interval the settlement service accepted."""

    interval: int
    chainId: int
    market: str = Field(
        description="the EnergyMarket whose EIP-712 domain the readings are signed over"
    )
    state: str | None = Field(description="the service's state of the interval (null: unknown)")
    readings: list[PublishedReading]


class ReadingList(BaseModel):
    """The readings of a batch as stored, in request order."""

    readings: list[ReadingView]


class ServiceState(BaseModel):
    """The settlement service's own view of an interval."""

    state: str | None = Field(description="waiting, reading, settling, settled or failed")
    readings: dict[str, int]
    readingTransactions: int
    settleTransactions: int
    costs: list[dict[str, Any]] = Field(
        default_factory=list,
        description="per kind of transaction (readings, settle): how many were mined, the gas "
        "they used and the fees they paid (wei, decimal strings)",
    )
    error: dict[str, Any] | None


class SettlementView(BaseModel):
    """An interval's reconciliation report (see settlement.report) and the service state."""

    model_config = ConfigDict(extra="allow")

    interval: int
    status: str
    ok: bool
    checks: list[dict[str, Any]]
    mismatches: list[str]
    totals: dict[str, Any]
    trades: list[dict[str, Any]]
    participants: list[dict[str, Any]]
    service: ServiceState


class IntervalSummary(BaseModel):
    """One interval the service tracks."""

    interval: int
    state: str
    tradeCount: int
    deadline: int
    readingTransactions: int
    settleTransactions: int
    error: dict[str, Any] | None


class SettlementOverview(BaseModel):
    """Every interval the service tracks, and the account it settles from."""

    settler: str
    maxIntakeReadings: int = Field(description="most readings one POST /meter-readings:batch takes")
    readingMarginSeconds: int = Field(
        description="readings are refused from this many seconds before an interval's "
        "reading deadline (reading_deadline_too_close): time to get them mined"
    )
    intervals: list[IntervalSummary]


def settlement_router(service: SettlementService) -> APIRouter:
    """The settlement paths for ``service``, to include in an app."""
    router = LimitedRouter(tags=["settlement"])
    router.components.update(model_components(SignedReading, ReadingBatch))
    router.max_items[("ReadingBatch", "readings")] = service.config.max_intake_readings
    for field, what in (("importedWh", "drawn from"), ("exportedWh", "fed into")):
        router.properties[("ReadingMessage", field)] = integer_range_schema(
            0,
            service.config.max_reading_wh,
            f"energy {what} the grid in the interval, Wh (uint64), at most the physical "
            "maximum of a meter per interval, a setting of the service (a meter may have a "
            "lower one of its own: `reading_out_of_bounds`)",
        )

    @router.post(
        "/meter-readings",
        status_code=202,
        response_model=ReadingView,
        responses=problem_responses(*READING_REFUSALS),
        description="Submit one meter-signed reading. `202` means it is durably stored "
        "(`queued`); the service puts it on-chain before the interval's reading deadline. "
        "Nothing is stored and no gas is spent for a refused reading.\n" + READING_RULES,
    )
    def submit_reading(body: api_shapes.SignedReading) -> Response:
        """Submit one meter-signed reading. ``202`` means it is durably stored (``queued``).

        Refused before anything is stored or any gas is spent: a bad signature, a reading
        not signed by the participant's registered meter key, energy above the meter's
        physical maximum, an interval that has not ended, was never committed, is settled
        or whose reading deadline has passed, and a second reading of the same participant
        for the interval.
        """
        stored = service.accept_reading(body.reading.model_dump(), body.signature)
        return JSONResponse(reading_json(stored), status_code=202)

    @router.post(
        "/meter-readings:batch",
        status_code=202,
        response_model=ReadingList,
        responses=problem_responses(*READING_REFUSALS, BatchTooLarge, batch=True),
        description="Submit many meter-signed readings at once (a site's meters, a data "
        "hub); all are stored or none. At most `maxIntakeReadings` (`GET /settlement`) "
        "readings (`batch_too_large`). Each is checked as `POST /meter-readings` checks "
        "one; a reading repeating an earlier one's participant and interval is "
        "`reading_duplicate`. A refused batch answers `batch_rejected` with the first "
        "refused reading's status and `errors`: one entry per refused reading (`index`, "
        "`code`, `status`, `detail`); one reading alone answers its own code.\n" + READING_RULES,
    )
    def submit_readings(body: api_shapes.ReadingBatch) -> Response:
        """Submit many meter-signed readings at once; all are stored or none.

        Each reading is checked as ``POST /meter-readings`` checks one. A refused batch
        answers ``batch_rejected`` with ``errors``: one entry per bad reading (``index``,
        ``code``, ``status``, ``detail``); more than ``maxIntakeReadings`` (``GET
        /settlement``) is ``batch_too_large``.
        """
        stored = service.accept_readings(
            [(r.reading.model_dump(), r.signature) for r in body.readings]
        )
        return JSONResponse({"readings": [reading_json(r) for r in stored]}, status_code=202)

    @router.get(
        "/intervals/{t}/settlement",
        response_model=SettlementView,
        responses=problem_responses(
            InvalidRequest, UnknownInterval, ServiceUnavailable, ChainUnavailableProblem
        ),
    )
    def interval_settlement(t: IntervalParam) -> Response:
        """The reconciliation report of interval ``t`` from on-chain events, checked
        against the settlement model, and the service's state of the interval."""
        report = service.report(t)
        body = report.to_json()
        body["service"] = service.interval_status(t)
        return JSONResponse(body)

    @router.get(
        "/intervals/{t}/readings",
        response_model=PublishedReadings,
        responses=problem_responses(InvalidRequest, ServiceUnavailable),
    )
    def interval_readings(t: IntervalParam) -> Response:
        """Every reading of interval ``t`` the service accepted, with its meter signature and
        whether it is on-chain. Only sellers' readings go on-chain (settlement reads nothing
        else); the others (``offchain``) are published here, signed, for the audit."""
        row = service.store.get_interval(t)
        readings = read_store("listing readings", lambda: service.published_readings(t))
        return JSONResponse(
            {
                "interval": t,
                "chainId": service.chain_id,
                "market": service.market,
                "state": row.state if row else None,
                "readings": [published_reading_json(r) for r in readings],
            }
        )

    @router.get("/settlement", response_model=SettlementOverview)
    def overview() -> Response:
        """Every interval the settlement service tracks, with its state and last error."""
        return JSONResponse(
            {
                "settler": service.chain.settler,
                "maxIntakeReadings": service.config.max_intake_readings,
                "readingMarginSeconds": service.config.reading_margin_seconds,
                "intervals": [
                    {
                        "interval": row.interval,
                        "state": row.state,
                        "tradeCount": row.trade_count,
                        "deadline": row.deadline,
                        "readingTransactions": row.reading_txs,
                        "settleTransactions": row.settle_txs,
                        "error": (
                            {"code": row.error_code, "detail": row.error_detail}
                            if row.error_code
                            else None
                        ),
                    }
                    for row in service.intervals()
                ],
            }
        )

    return router


DESCRIPTION = """\
The settlement service of a wattledger market: meters' signed readings in, exactly-once
on-chain settlement of the interval's contracts, and each interval's reconciliation.

A reading is the EIP-712 `MeterReading(address participant, uint64 interval, uint64
importedWh, uint64 exportedWh)` over the market's domain (`GET /market` of the market API),
signed by the participant's registered meter key. A signature is `0x` and 130 hex digits
(65 bytes `r ‖ s ‖ v`, `v` 0, 1, 27 or 28) or 128 (64 bytes, EIP-2098 `r ‖ vs`), with a
low `s` (EIP-2). Unsigned fields take a JSON integer or a string of decimal digits, within
their range (the schema states both). Request bodies are `application/json`, at most
1 MiB. Every `405` answer carries an `Allow` header listing the methods the path takes.

A request the schema allows is refused only for a rule a schema cannot state: a signature
that verifies as no key or another key, the meter's registration and physical maximum, the
interval's state on-chain or the clock. Each operation's description lists its rules in
the order they are checked, with their codes.
"""
"""The standalone settlement API's ``info.description`` (Markdown, for integrators; the
problem code table is appended from the code's registry)."""


def create_settlement_app(
    service: SettlementService, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> FastAPI:
    """The settlement API on its own (``wattledger settle --watch --port N``).

    Bodies up to ``max_body_bytes``, by default the market API's limit (1 MiB), which a
    full batch of readings (about 300 bytes each) fits.
    """
    app = DocumentedApp(
        title="wattledger settlement",
        version="1",
        summary="Meter-signed readings in, exactly-once on-chain settlement, reconciliation.",
        description=DESCRIPTION,
    )

    install_problem_handlers(app)

    @app.get("/health", tags=["settlement"])
    def health() -> dict[str, Any]:
        """Liveness: chain id, the settlement account and on-chain time."""
        return {
            "status": "ok",
            "chainId": service.chain_id,
            "market": service.market,
            "settler": service.chain.settler,
            "now": service.clock.now(),
        }

    app.include_router(settlement_router(service))
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app


__all__ = [
    "PublishedReading",
    "PublishedReadings",
    "ReadingBatch",
    "ReadingList",
    "ReadingView",
    "SettlementView",
    "SignedReading",
    "create_settlement_app",
    "settlement_router",
]
