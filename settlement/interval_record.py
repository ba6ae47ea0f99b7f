"""What the chain says about one interval, as the reconciliation report reads it.

:meth:`settlement.chain_reader.ChainReader.interval_events` reads an :class:`IntervalRecord`
(the interval's stored state, the trades replayed from its commit's calldata, its events as
:mod:`ledger.events` records and the market's escrow totals), and
:func:`settlement.report.build_report` reconciles it with the settlement model. Plain values:
a test builds or bends them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.events import IntervalEvents
from ledger.records import IntervalInfo, Terms, Trade


@dataclass(frozen=True, slots=True)
class EscrowSnapshot:
    """The market's escrow as a whole (base units): what the token says it holds, what the
    market says it holds, and the sum of every registered participant's balances."""

    token_balance: int
    total_escrowed: int
    sum_of_balances: int
    participants: int


@dataclass(frozen=True)
class IntervalRecord:
    """Everything the chain says about one interval: its stored state (``intervalInfo``),
    the trades replayed from the commit's calldata, its events and the escrow totals."""

    state: IntervalInfo
    trades: tuple[Trade, ...]
    events: IntervalEvents
    escrow: EscrowSnapshot | None = None

    @property
    def interval(self) -> int:
        """The interval."""
        return self.events.interval

    @property
    def committed(self) -> bool:
        """Whether the interval has an ``IntervalCommitted`` event."""
        return self.events.commit is not None

    @property
    def terms(self) -> Terms:
        """The penalty rate and tolerance snapshotted at commit."""
        return Terms(self.state.penalty_price_per_wh, self.state.tolerance_bps)


__all__ = [
    "EscrowSnapshot",
    "IntervalRecord",
]
