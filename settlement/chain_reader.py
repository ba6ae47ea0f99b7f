"""What the settlement service reads from the chain beyond the market's generic reads.

:class:`ChainReader` is :class:`chain.reader.MarketReader` (raw JSON-RPC, views, chain time,
events through the one event reader :class:`chain.logs.EventReader`) plus what is the
settlement service's own:

* the committed trades of an interval (:meth:`ChainReader.committed_trades`), replayed from
  the commit transaction's calldata, with a missing or unreadable commit as a
  :class:`~settlement.errors.SettlementFailed` of that interval;
* the readings on-chain by participant, kept per interval and extended block by block
  (:meth:`ChainReader.submitted_readings`): intake asks for every reading it takes;
* everything the reconciliation report needs about an interval
  (:meth:`ChainReader.interval_events`, an :class:`~settlement.interval_record.IntervalRecord`)
  and the escrow totals (:meth:`ChainReader.escrow`).
"""

from __future__ import annotations

import functools

from chain.reader import MarketReader
from ledger.events import (
    CollateralLocked,
    IntervalEvents,
    IntervalSettled,
    ParticipantSettled,
    ReadingSubmitted,
    TradeSettled,
)
from ledger.records import Trade
from settlement.errors import SettlementFailed
from settlement.interval_record import EscrowSnapshot, IntervalRecord


class ChainReader(MarketReader):
    """Reads of one deployed EnergyMarket for the settlement service.

    ``start_block`` is where event scans begin (the market's deployment block).
    """

    @functools.cached_property
    def _readings(self) -> dict[int, tuple[int, dict[str, ReadingSubmitted]]]:
        """Per interval: the block after the last one scanned, and the readings seen so far."""
        return {}

    def committed_trades(self, t: int) -> tuple[Trade, ...]:
        """Interval ``t``'s trades in commit order, from the commit transaction's calldata.

        Raises :class:`SettlementFailed` when ``t`` has no commit or its calldata cannot be
        decoded as a direct ``commitInterval`` call (a commit relayed through a contract).
        """
        commit = self.commit_of(t)
        if commit is None:
            raise SettlementFailed(t, "interval_not_committed", "no IntervalCommitted event")
        try:
            return self.event_reader.trades_of(commit)
        except ValueError as err:
            raise SettlementFailed(
                t,
                "trades_unavailable",
                f"cannot replay the committed trades from the commit transaction "
                f"{commit.tx_hash}: {type(err).__name__}: {err}",
            ) from None

    def submitted_readings(self, t: int, latest: int | None = None) -> dict[str, ReadingSubmitted]:
        """The readings of interval ``t`` that are on-chain, by participant (lower-case), as
        of block ``latest`` (default: the latest block).

        Kept per interval and extended from the last block seen, so that a service putting
        1,000 readings on-chain in batches does not decode them all again for every batch,
        and intake, which asks for every reading it takes, scans the logs only when a block
        was mined since it last asked. Only final blocks (:meth:`final_block`) are kept: the
        events of the blocks above them are read again on every call, so a reading that a
        reorganisation dropped is seen missing.
        """
        if latest is None:
            latest = self.latest_block()
        final = self.final_block(latest)
        first = self.first_block(t)
        start, known = self._readings.get(t, (first, {}))
        if final + 1 < start:  # the chain went back (a reset node): read everything again
            start, known = first, {}
        known = dict(known)
        if start <= final:
            for e in self.reading_events(t, start, final):
                known.setdefault(e.participant.lower(), e)
            start = final + 1
        self._readings[t] = (start, known)
        found = dict(known)
        if start <= latest:  # blocks not final yet: read every time, never kept
            for e in self.reading_events(t, start, latest):
                found.setdefault(e.participant.lower(), e)
        return found

    def escrow(self) -> EscrowSnapshot:
        """Token balance of the market, ``totalEscrowed`` and the sum of every registered
        participant's free and locked balances."""
        held, total = self.token_balance(), self.total_escrowed()
        participants = self.participants()
        balances = sum(sum(self.balance_of(p)) for p in participants)
        return EscrowSnapshot(held, total, balances, len(participants))

    def interval_events(self, t: int, *, escrow: bool = True) -> IntervalRecord:
        """Every event of interval ``t``, its stored state and committed trades, and (with
        ``escrow``) the escrow totals: what the reconciliation report reads."""
        state = self.interval(t)
        commit = self.commit_of(t)
        trades = self.committed_trades(t) if commit is not None else ()
        first = self.first_block(t)
        events = self.event_reader
        return IntervalRecord(
            state=state,
            trades=trades,
            events=IntervalEvents(
                interval=t,
                commit=commit,
                locks=tuple(events.of(CollateralLocked, {"interval": t}, first)),
                readings=tuple(self.reading_events(t)),
                trade_settlements=tuple(events.of(TradeSettled, {"interval": t}, first)),
                party_settlements=tuple(events.of(ParticipantSettled, {"interval": t}, first)),
                settlements=tuple(events.of(IntervalSettled, {"interval": t}, first)),
            ),
            escrow=self.escrow() if escrow else None,
        )


__all__ = [
    "ChainReader",
]
