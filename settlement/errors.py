"""Errors of the settlement service: refused readings (HTTP 4xx) and settlement failures.

A refused ``POST /meter-readings`` (or a reading of ``POST /meter-readings:batch``) raises one
of the :class:`~ledger.errors.RequestError` classes below; the API maps them to
``application/problem+json`` in the same single place as the market's own refusals
(``market.http.problems.problem_response``), so a client branches on ``code`` alone.
Every refusal happens before the reading is stored or any gas is spent.

The codes, with their statuses and meanings, are published in the OpenAPI description's
table, built from these classes by :mod:`market.http.openapi_doc`.

Service-side failures are a separate branch, :class:`SettlementError`: a permanent failure of
one interval (:class:`SettlementFailed`, recorded with the interval and the reason while the
service carries on with the others) and what became of a transaction. The chain being
unreachable is the chain's own error, :class:`~chain.errors.ChainUnavailable` (retried with
backoff).
"""

from __future__ import annotations

from ledger.errors import RequestError, WattledgerError


class UnregisteredMeter(RequestError):
    """Raised when a reading names a participant that is not registered (so has no meter)."""

    code, status, title = "unregistered_meter", 403, "Unregistered meter"


class MeterMismatch(RequestError):
    """Raised when a reading's signature is valid but not by the registered meter key."""

    code, status, title = "meter_mismatch", 403, "Not signed by the participant's meter"


class ReadingOutOfBounds(RequestError):
    """Raised when imported or exported energy exceeds the meter's configured maximum."""

    code, status, title = "reading_out_of_bounds", 422, "Reading out of bounds"


class ReadingTooEarly(RequestError):
    """Raised when a reading arrives before its interval's delivery has ended (a future one)."""

    code, status, title = "reading_too_early", 409, "Interval not ended"


class UnknownInterval(RequestError):
    """Raised when a reading or a settlement report names an interval never committed."""

    code, status, title = "interval_not_committed", 404, "Interval not committed"


class IntervalSettled(RequestError):
    """Raised when a reading arrives for an interval that is already settled."""

    code, status, title = "interval_settled", 409, "Interval already settled"


class ReadingDeadlinePassed(RequestError):
    """Raised when a reading arrives at or after its interval's reading deadline."""

    code, status, title = "reading_window_closed", 409, "Reading window closed"


class ReadingDeadlineTooClose(RequestError):
    """Raised when a reading arrives so close to its interval's reading deadline that it could
    not be relied on to be mined before it (``deadline``, ``marginSeconds`` and
    ``acceptedUntil`` say when): accepted, it would end ``missed`` and the seller pay the
    penalty; refused, the meter's operator knows at once."""

    code, status, title = "reading_deadline_too_close", 409, "Reading deadline too close"


class DuplicateReading(RequestError):
    """Raised when the participant's reading for the interval was already accepted."""

    code, status, title = "reading_duplicate", 409, "Reading already accepted"


class SettlementError(WattledgerError):
    """Base of the settlement service's own failures (not a refused request)."""

    code = "settlement_error"


class SettlementFailed(SettlementError):
    """Raised when an interval cannot be settled and retrying will not help.

    ``interval`` names it; ``reason`` is the code of the underlying error (for example the
    Solidity custom error ``TradesMismatch``). The service records it and carries on.
    """

    code = "settlement_failed"

    def __init__(self, interval: int, reason: str, detail: str) -> None:
        super().__init__(f"interval {interval}: {detail}")
        self.interval = interval
        self.reason = reason
        self.detail = detail


class TransactionNotMined(SettlementError):
    """Raised when a transaction and all its fee-bumped replacements stayed unmined."""

    code = "transaction_not_mined"


class FeeAboveCap(SettlementError):
    """Raised, before anything is signed, when the base fee plus the tip is above the fee cap
    (``--max-fee-gwei``): nothing is sent and the interval is retried on a later pass, once
    the base fee has fallen (:class:`chain.fee_cap.FeeCap`)."""

    code = "fee_above_cap"


class OutOfGas(SettlementError):
    """Raised when a transaction was mined but ran out of gas; the batch is made smaller."""

    code = "out_of_gas"


__all__ = [
    "DuplicateReading",
    "FeeAboveCap",
    "IntervalSettled",
    "MeterMismatch",
    "OutOfGas",
    "ReadingDeadlinePassed",
    "ReadingDeadlineTooClose",
    "ReadingOutOfBounds",
    "ReadingTooEarly",
    "SettlementError",
    "SettlementFailed",
    "TransactionNotMined",
    "UnknownInterval",
    "UnregisteredMeter",
]
