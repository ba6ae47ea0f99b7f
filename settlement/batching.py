"""Readings on-chain: queued readings of the interval's sellers go to ``submitReadings`` in
gas-sized batches while the interval's reading window is open; the others stay here.

Only the readings settlement uses go on-chain. ``settle`` reads one thing of a reading: a
seller's exported energy (its delivery is ``min(sold, exported)``, and a missing reading
counts as 0). A participant that sold nothing in the interval (a pure buyer, or a registered
participant without a trade) has a reading that nothing on-chain reads, so it is marked
``offchain``: kept in the store with its meter signature and published by
``GET /intervals/{t}/readings``, where the audit checks it (:mod:`audit.checks.readings`).
A participant that both buys and sells is a seller. The sellers are those of the interval's
committed trades (``IntervalCommitted`` comes with the last commit chunk, so they are final
once the service sees the commit); if the trades cannot be had, every reading goes on-chain,
as it did before, so a seller's reading is never held back. The decision is made again
before every batch: an ``offchain`` reading whose participant is a seller goes on-chain.

Before each batch the readings already on-chain are read (``ReadingSubmitted`` events) and
marked: ``onchain`` when the event carries exactly the stored values, ``superseded`` when
someone else relayed another reading of that participant first (an ``offchain`` reading
too: anyone may relay a signed reading); either only once the event's block is final
(:mod:`chain.finality`). A reading the head holds in a block not final yet is left as it is
and not sent; one a reorganisation dropped is missing from the head again, and is sent again
(the chain decides, so nothing is sent twice). The sellers' others are sent sorted by
participant index (the contract's reading words are shared by neighbours, so a sorted batch
costs about 20k gas per reading instead of up to 60k), as many as fit the transaction budget
(:mod:`settlement.gas`).

A reading the contract refuses (the meter key was rotated or the participant deregistered
after the reading was accepted) is marked ``rejected`` with the reason and the rest of its
batch goes on. A window that is not open, or a paused market, is noted on the interval and
retried on a later tick.
"""

from __future__ import annotations

import logging

from ledger import contract_errors as chain_errors
from ledger.contract_errors import LedgerError
from ledger.eip712 import SignedReading, compact_signature
from ledger.records import Reading
from settlement.chain_port import SettlementChain
from settlement.config import SettlementConfig
from settlement.errors import OutOfGas, SettlementFailed
from settlement.gas import READING_GAS_CEILING, ItemGas
from settlement.store import (
    OFFCHAIN,
    ONCHAIN,
    PENDING,
    QUEUED,
    REJECTED,
    SUPERSEDED,
    ReadingStore,
    StoredReading,
)
from settlement.tick import Tick, revert_reason
from settlement.tx import NonceConsumed

log = logging.getLogger("wattledger.settle")

MAX_ATTEMPTS = 10_000
"""Most batches (or retries of one) a tick sends for one interval before it gives up."""


def signed_reading(stored: StoredReading) -> SignedReading:
    """A stored reading as ``submitReadings`` takes it: the reading and its EIP-2098 signature."""
    r, vs = compact_signature(stored.signature)
    reading = Reading(stored.participant, stored.interval, stored.imported_wh, stored.exported_wh)
    return SignedReading(reading=reading, r=r, vs=vs)


class ReadingBatcher:
    """Puts an interval's queued readings on-chain, exactly once each (see the module)."""

    def __init__(
        self, chain: SettlementChain, store: ReadingStore, config: SettlementConfig
    ) -> None:
        self.chain = chain
        self.store = store
        self.config = config
        self.gas = ItemGas(config.reading_gas, READING_GAS_CEILING)
        """Gas per reading: assumed, then measured."""
        self._sellers: dict[int, frozenset[str] | None] = {}

    def sellers(self, t: int) -> frozenset[str] | None:
        """The sellers of ``t``'s committed trades (lower-case), or None when the trades
        cannot be had (then every reading goes on-chain). Kept once read: a commit's trades
        never change."""
        if t not in self._sellers:
            try:
                trades = self.chain.committed_trades(t)
            except SettlementFailed as err:
                log.warning(
                    "interval %d: sellers unknown (%s); every reading goes on-chain", t, err
                )
                return None
            self._sellers[t] = frozenset(tr.seller.lower() for tr in trades)
        return self._sellers[t]

    def forget(self, t: int) -> None:
        """Drop what is kept of ``t`` (its sellers)."""
        self._sellers.pop(t, None)

    def sync(self, t: int) -> list[StoredReading]:
        """Mark pending readings that are on-chain in a final block, and queued readings of
        participants that sold nothing ``offchain``; return the sellers' pending readings that
        the chain's head does not hold (to send, or to mark missed once the deadline has
        passed). A reading in a block not final yet is neither: it stays as it is until it is
        final, or is sent again if a reorganisation drops it."""
        pending = self.store.readings(t, PENDING)
        if not pending:
            return []
        latest = self.chain.latest_block()
        final = self.chain.final_block(latest)
        onchain = self.chain.submitted_readings(t, latest)
        sellers = self.sellers(t)
        todo = []
        kept: list[str] = []
        for r in pending:
            event = onchain.get(r.participant)
            if event is None:
                if sellers is None or r.participant in sellers:
                    todo.append(r)
                elif r.status == QUEUED:
                    kept.append(r.participant)
            elif event.block_number > final:
                continue
            elif (event.imported_wh, event.exported_wh) == (r.imported_wh, r.exported_wh):
                self.store.mark_readings(
                    t,
                    [r.participant],
                    ONCHAIN,
                    tx_hash=event.tx_hash,
                    block_number=event.block_number,
                )
            else:
                self.store.mark_readings(
                    t,
                    [r.participant],
                    SUPERSEDED,
                    reason=(
                        f"another reading (imported {event.imported_wh} Wh, exported "
                        f"{event.exported_wh} Wh) reached the chain first in {event.tx_hash}"
                    ),
                    tx_hash=event.tx_hash,
                    block_number=event.block_number,
                )
        if kept:
            self.store.mark_readings(
                t,
                kept,
                OFFCHAIN,
                reason="the participant sold nothing in the interval: settlement does not "
                "read its reading, which is kept and published off-chain",
            )
        return todo

    def submit(self, t: int, tick: Tick) -> None:
        """Send ``t``'s queued readings in batches until none is left (or the window shuts,
        the market is paused, or the runner stops)."""
        for _ in range(MAX_ATTEMPTS):
            if tick.stopping.is_set():
                return
            todo = self.sync(t)
            if not todo:
                return
            budget = tick.tx_budget()
            batch = todo[: self.gas.items_within(budget, self.config.max_batch_readings)]
            try:
                mined = self.chain.submit_readings(
                    t,
                    [signed_reading(r) for r in batch],
                    gas_limit=self.gas.gas_limit(len(batch), budget),
                )
            except (
                chain_errors.InvalidMeterSignature,
                chain_errors.ParticipantNotRegistered,
                chain_errors.ReadingAlreadySubmitted,
            ) as err:
                self._reject(t, err, tick)
                continue
            except (chain_errors.ReadingWindowClosed, chain_errors.IntervalNotEnded) as err:
                tick.note(t, revert_reason(err), str(err))
                return
            except chain_errors.EnforcedPause as err:
                tick.note(t, "paused", f"the market is paused; readings wait ({err})")
                return
            except OutOfGas:
                if len(batch) == 1:
                    raise SettlementFailed(
                        t, "gas_budget_too_small", "one reading does not fit the gas budget"
                    ) from None
                self.gas.out_of_gas()
                continue
            except NonceConsumed:
                continue
            self.gas.observe(mined.gas_used, len(batch))
            # Marked on-chain by the next sync, once their block is final.
            self.store.count_tx(t, "readings")
            tick.emit(
                f"interval {t}: {len(batch)} readings on-chain in {mined.tx_hash} "
                f"({mined.gas_used:,} gas)"
            )

    def _reject(self, t: int, err: LedgerError, tick: Tick) -> None:
        """The contract refused a reading of the batch: mark it ``rejected`` (unless it is
        on-chain after all), so the next batch goes without it."""
        who = str(getattr(err, "participant", "")).lower()
        if isinstance(err, chain_errors.ReadingAlreadySubmitted):
            if who in self.chain.submitted_readings(t):
                return  # on-chain after all: the next sync marks it
            reason = "the contract already has a reading of this participant"
        elif isinstance(err, chain_errors.InvalidMeterSignature):
            reason = (
                "the contract refused the signature: the participant's meter key changed "
                "after the reading was accepted"
            )
        else:
            reason = "the participant was deregistered after the reading was accepted"
        if not self.store.mark_readings(t, [who], REJECTED, reason=f"{reason} ({err})"):
            raise err  # not one of ours: nothing to drop, so retrying would loop
        tick.emit(f"interval {t}: reading of {who} rejected: {reason}")
        log.warning("interval %d: reading of %s rejected: %s", t, who, reason)


__all__ = ["ReadingBatcher", "signed_reading"]
