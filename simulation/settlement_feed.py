"""Settlement outcomes as a simulation learns them: from the contract's events, as they come.

:class:`SettlementFeed` reads the ``TradeSettled`` and ``IntervalSettled`` events mined since
its last look (as :mod:`ledger.events` records, through the one event reader), the same
whether settlement runs in-process or on a remote server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chain.client import LedgerClient
from ledger.events import IntervalSettled, TradeSettled
from settlement.chain_reader import ChainReader


@dataclass
class SettlementProgress:
    """What settlement achieved since the last look: intervals that reached ``Settled``
    and the outcomes of the trades settled on the way."""

    settled: list[int] = field(default_factory=list)
    outcomes: list[TradeSettled] = field(default_factory=list)


class SettlementFeed:
    """New ``TradeSettled`` and ``IntervalSettled`` events since the last look.

    Each look scans only the blocks mined since the previous one, so it stays cheap however
    long the run (a scan from the deployment every time would grow with the chain).
    ``reader``: the chain reader to read events with; in-process, the settlement service's
    own, whose tail of recent logs then serves both (on eth-tester a log query costs about
    0.1 s however few blocks it spans).
    """

    def __init__(
        self, ledger: LedgerClient, from_block: int, reader: ChainReader | None = None
    ) -> None:
        self.ledger = ledger
        self.next_block = from_block
        self.reader = reader or ChainReader(ledger, start_block=from_block)

    def poll(self) -> SettlementProgress:
        """The events in the blocks since the last poll."""
        latest = self.reader.latest_block()
        progress = SettlementProgress()
        if latest < self.next_block:
            return progress
        events = self.reader.event_reader
        progress.outcomes += events.of(TradeSettled, None, self.next_block, latest)
        progress.settled += [
            e.interval for e in events.of(IntervalSettled, None, self.next_block, latest)
        ]
        self.next_block = latest + 1
        return progress


__all__ = ["SettlementFeed", "SettlementProgress"]
