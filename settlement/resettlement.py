"""Re-settling an interval from what the chain recorded: the model's answer to compare with.

Both the settlement service's reconciliation report (:mod:`settlement.report`) and the audit's
``settlement`` check (:mod:`audit.checks.settlement`) take an interval's committed trades, the
readings the contract accepted (``ReadingSubmitted``) and the terms snapshotted at commit, and
ask :mod:`settlement.model` what settlement must have done: how every trade settles, and each
party's netted change over the trades settled so far. This module is that one question.

The contract accepts one reading per participant and interval; a second ``ReadingSubmitted``
for the same pair is a violation the callers report, and the first one is what settlement
used (:func:`accepted_readings`).

Pure: values in, values out. Addresses are compared as given, so the trades and readings
must spell them alike (the event decoder writes checksum addresses throughout).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ledger.events import ReadingSubmitted
from ledger.records import Terms, Trade
from settlement.model import BalanceDelta, TradeOutcome, settle_range


@dataclass(frozen=True)
class AcceptedReadings:
    """An interval's readings as settlement counts them: each participant's first, and the
    ones that came after it (none on an honest chain), in chain order."""

    first: Mapping[str, ReadingSubmitted]
    repeated: tuple[ReadingSubmitted, ...]

    @property
    def exported_wh(self) -> dict[str, int]:
        """Each participant's exported energy (Wh) of its first reading."""
        return {p: r.exported_wh for p, r in self.first.items()}


def accepted_readings(readings: Iterable[ReadingSubmitted]) -> AcceptedReadings:
    """Split ``readings`` (one interval's, in chain order) into each participant's first and
    the repeats."""
    first: dict[str, ReadingSubmitted] = {}
    repeated: list[ReadingSubmitted] = []
    for reading in readings:
        if reading.participant in first:
            repeated.append(reading)
        else:
            first[reading.participant] = reading
    return AcceptedReadings(first, tuple(repeated))


@dataclass(frozen=True)
class Resettlement:
    """The model's settlement of an interval: ``outcomes`` of every committed trade (commit
    order), and ``deltas``, each party's netted change over the first ``settled_trades``."""

    outcomes: tuple[TradeOutcome, ...]
    deltas: Mapping[str, BalanceDelta]
    settled_trades: int


def resettle(
    trades: Sequence[Trade],
    exported_wh: Mapping[str, int],
    terms: Terms,
    settled_trades: int,
) -> Resettlement:
    """Settle ``trades`` with the model: each seller's delivery from ``exported_wh`` (its
    first accepted reading; none counts as 0) under the snapshotted ``terms``. ``deltas`` net
    the trades ``[0, settled_trades)``, which a settlement up to its cursor has applied."""
    outcomes = settle_range(trades, exported_wh, terms).outcomes
    stop = max(0, min(settled_trades, len(trades)))
    deltas = settle_range(trades, exported_wh, terms, 0, stop).deltas
    return Resettlement(outcomes, deltas, stop)


__all__ = [
    "AcceptedReadings",
    "Resettlement",
    "accepted_readings",
    "resettle",
]
