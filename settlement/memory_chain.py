"""An in-memory EnergyMarket for the settlement service's tests: the settlement model with a
clock, meter keys and blocks.

:class:`MemoryChain` implements :class:`~settlement.chain_port.SettlementChain` over
:class:`settlement.model.Ledger`, the pure model of the contract's escrow and settlement
rules, and adds what the model leaves to the chain: time (a clock that moves only when told,
the reading window and deadline of each interval), registration with meter keys and
participant indices, EIP-712 meter signatures (checked with :func:`ledger.eip712.recover`
over the market's domain), the trade hash chain a chunk must match
(:func:`ledger.trade_chain.settlement_chain`), a pause switch, gas, and blocks: every
transaction is mined at once in a block of its own, and every change is recorded as the
contract's events would record it.

The checks of ``submitReadings`` and ``settle`` run in the contract's order and raise the
same :mod:`ledger.contract_errors` exceptions with the same arguments; a refused transaction
changes nothing and costs nothing, as one a preflight refuses. Gas is a fixed
:attr:`MemoryChain.reading_gas` per reading and :attr:`MemoryChain.trade_gas` per trade above
:data:`~settlement.gas.TX_OVERHEAD_GAS`; a gas limit below that raises
:class:`~settlement.errors.OutOfGas`.

So the service's logic (intake refusals, batching, chunking, exactly-once, restarts) runs in
milliseconds, as the market service's does on :class:`market.ledger_port.MemoryLedger`; the
same behaviours are tested on the real contract by ``tests/test_settlement_service.py``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from eth_utils.address import to_checksum_address

from chain.reader import MeterInfo
from ledger.calldata import SettleArgs
from ledger.contract_errors import (
    ChunkNotAtCursor,
    ChunkOutOfRange,
    IntervalAlreadySettled,
    IntervalNotCommitted,
    IntervalNotEnded,
    InvalidMeterSignature,
    LedgerError,
    ParticipantNotRegistered,
    PartyIndexOutOfRange,
    ReadingAlreadySubmitted,
    ReadingIntervalMismatch,
    ReadingWindowClosed,
    ReadingWindowOpen,
    TradesMismatch,
)
from ledger.eip712 import Domain, SignedReading, expand_signature, reading_digest, recover
from ledger.errors import BadSignature
from ledger.events import (
    CollateralLocked,
    IntervalCommitted,
    IntervalEvents,
    IntervalSettled,
    LogPosition,
    ParticipantSettled,
    ReadingSubmitted,
    TradeSettled,
)
from ledger.hashing import keccak
from ledger.records import (
    IntervalInfo,
    Reading,
    SellerPosition,
    Terms,
    Trade,
    trade_from_link_price,
)
from ledger.trade_chain import ZERO_HASH, chain_link, orders_digest, settlement_chain
from settlement.chain_port import Mined
from settlement.errors import OutOfGas, SettlementFailed
from settlement.gas import TX_OVERHEAD_GAS
from settlement.interval_record import EscrowSnapshot, IntervalRecord
from settlement.model import Ledger

ZERO_ADDRESS = "0x" + "00" * 20
DEFAULT_TERMS = Terms(penalty_price_per_wh=500_000_000_000_000, tolerance_bps=500)
"""The terms a commit snapshots unless it is given others (the deployment defaults)."""


@dataclass(frozen=True)
class _Commit:
    """What the chain keeps of a committed interval besides the model's state."""

    trades: tuple[Trade, ...]
    heads: tuple[bytes, ...]
    deadline: int
    terms: Terms
    book_root: bytes
    locked: dict[str, int]
    event: IntervalCommitted
    seq: int = 0
    """Its place among commits and registration changes: a reading counts against the meter key
    in force at it (the contract's rule: a later rotation or deregistration changes nothing)."""


class MemoryChain:
    """The settlement side of an EnergyMarket in memory (see the module).

    Addresses may be given in any case; the model keeps them lower-case. ``now_seconds`` is
    the chain's time (the timestamp the next transaction's block will have); it moves only by
    :meth:`advance_to`.
    """

    def __init__(
        self,
        *,
        chain_id: int = 31337,
        market: str = "0x" + "11" * 20,
        settler: str = "0x" + "22" * 20,
        epoch_seconds: int = 1_700_000_000,
        interval_seconds: int = 900,
        now_seconds: int | None = None,
        block_gas_limit: int = 30_000_000,
        reading_gas: int = 20_000,
        trade_gas: int = 15_000,
    ) -> None:
        self.chain_id = chain_id
        self.market = to_checksum_address(market)
        self.settler = to_checksum_address(settler)
        self.start_block = 0
        self.epoch_seconds = epoch_seconds
        self.interval_seconds = interval_seconds
        self.now_seconds = epoch_seconds if now_seconds is None else now_seconds
        self.block_gas_limit = block_gas_limit
        self.reading_gas = reading_gas
        """Gas one reading costs (above the transaction's overhead)."""
        self.trade_gas = trade_gas
        """Gas one settled trade costs (above the transaction's overhead)."""
        self.ledger = Ledger()
        """The model: balances, committed intervals, readings, cursors (addresses lower-case)."""
        self.paused = False
        self.block_number = 0
        """The latest block's number (each transaction mines one)."""
        self.transactions: list[tuple[str, int, int]] = []
        """``(kind, interval, items)`` of every mined transaction: ``readings`` or ``settle``."""
        self.refused: list[tuple[str, int, str]] = []
        """``(kind, interval, error)`` of every transaction refused (and not mined): what a
        preflight would have caught on a real chain, or a reverted receipt without one."""
        self._separator = Domain(chain_id, self.market).separator
        self._meters: dict[str, tuple[str, int]] = {}
        self._commits: dict[int, _Commit] = {}
        self._readings: dict[int, list[ReadingSubmitted]] = {}
        self._trade_events: dict[int, list[TradeSettled]] = {}
        self._party_events: dict[int, list[ParticipantSettled]] = {}
        self._settled: dict[int, IntervalSettled] = {}
        self._seq = 0
        self._history: dict[str, list[tuple[int, str | None]]] = {}
        """Each participant's (sequence, meter key or None when deregistered) changes."""

    # -- set-up (the registrar, the operator, time) -------------------------------------------

    def register(self, participant: str, meter: str, deposit_base_units: int = 0) -> None:
        """Register ``participant`` with the meter key ``meter`` (the next participant index)
        and deposit ``deposit_base_units`` into its free balance."""
        who = participant.lower()
        self._meters[who] = (meter.lower(), len(self._meters) + 1)
        self._change(who, meter.lower())
        self.ledger.register(who)
        if deposit_base_units:
            self.ledger.deposit(who, deposit_base_units)

    def rotate_meter(self, participant: str, meter: str) -> None:
        """Give a registered ``participant`` a new meter key."""
        who = participant.lower()
        self._meters[who] = (meter.lower(), self._meters[who][1])
        self._change(who, meter.lower())

    def deregister(self, participant: str) -> None:
        """Deregister ``participant`` (its meter key and index are kept, as on-chain)."""
        self.ledger.registered.discard(participant.lower())
        self._change(participant.lower(), None)

    def _change(self, who: str, meter: str | None) -> None:
        self._seq += 1
        self._history.setdefault(who, []).append((self._seq, meter))

    def _meter_at(self, who: str, seq: int) -> str | None:
        """The meter key ``who`` had registered just before sequence ``seq`` (None if none)."""
        meter = None
        for change_seq, key in self._history.get(who, ()):
            if change_seq > seq:
                break
            meter = key
        return meter

    def commit(
        self,
        t: int,
        trades: Sequence[Trade],
        terms: Terms = DEFAULT_TERMS,
        book_root: bytes = ZERO_HASH,
    ) -> IntervalCommitted:
        """``commitInterval(t, bookRoot, trades)`` by the operator: the model's checks and
        collateral locks, the reading deadline from ``terms``, the trade hash chain."""
        lowered = tuple(
            replace(tr, buyer=tr.buyer.lower(), seller=tr.seller.lower()) for tr in trades
        )
        locked = self.ledger.commit(t, lowered, terms)
        indices: dict[str, int] = {
            to_checksum_address(tr.seller): self._meters[tr.seller][1] for tr in lowered
        }
        _, end = self.window(t)
        deadline = end + terms.reading_window_seconds
        block, tx_hash = self._mine()
        checksummed = tuple(
            replace(tr, buyer=to_checksum_address(tr.buyer), seller=to_checksum_address(tr.seller))
            for tr in lowered
        )
        heads = settlement_chain(lowered, indices)
        event = IntervalCommitted(
            interval=t,
            book_root=book_root,
            settlement_head=heads[0],
            orders_digest=orders_digest(lowered),
            trade_count=len(lowered),
            deadline=deadline,
            penalty_price_per_wh=terms.penalty_price_per_wh,
            tolerance_bps=terms.tolerance_bps,
            position=LogPosition(block, 0),
            tx_hash=tx_hash,
        )
        self._seq += 1
        self._commits[t] = _Commit(
            checksummed, heads, deadline, terms, book_root, locked, event, self._seq
        )
        return event

    def advance_to(self, timestamp: int) -> None:
        """Move the chain's time forward to ``timestamp`` (never back)."""
        self.now_seconds = max(self.now_seconds, timestamp)

    def _mine(self) -> tuple[int, str]:
        """A new block for a transaction: its number and the transaction's hash."""
        self.block_number += 1
        return self.block_number, "0x" + keccak(b"memory-chain tx %d" % self.block_number).hex()

    # -- reads --------------------------------------------------------------------------------

    def now(self) -> int:
        """The chain's time."""
        return self.now_seconds

    def chain_time(self) -> tuple[int, int, int | None]:
        """(time, latest block, block gas limit)."""
        return self.now_seconds, self.block_number, self.block_gas_limit

    def latest_block(self) -> int:
        """The latest block's number."""
        return self.block_number

    def gas_limit(self) -> int:
        """The block gas limit."""
        return self.block_gas_limit

    def window(self, t: int) -> tuple[int, int]:
        """(start, end) of interval ``t``'s delivery."""
        start = self.epoch_seconds + t * self.interval_seconds
        return start, start + self.interval_seconds

    def final_block(self, latest: int) -> int:
        """An in-memory chain never reorganises: every block is final."""
        return latest

    def interval(self, t: int, block: int | None = None) -> IntervalInfo:
        """``intervalInfo(t)``: the remaining hash is the chain head at the cursor (every
        block is final here, so ``block`` changes nothing)."""
        commit = self._commits.get(t)
        if commit is None:
            return IntervalInfo("none", 0, 0, 0, 0, 0, ZERO_HASH, ZERO_HASH)
        state = self.ledger.intervals[t]
        return IntervalInfo(
            "settled" if state.settled else "committed",
            len(commit.trades),
            state.cursor,
            commit.deadline,
            commit.terms.tolerance_bps,
            commit.terms.penalty_price_per_wh,
            commit.book_root,
            commit.heads[state.cursor],
        )

    def participant(self, participant: str) -> MeterInfo:
        """``participantInfo(participant)``."""
        who = participant.lower()
        meter, index = self._meters.get(who, (ZERO_ADDRESS, 0))
        return MeterInfo(meter, index, who in self.ledger.registered)

    def participants(self) -> list[str]:
        """Every address ever registered, lower-case."""
        return list(self._meters)

    def submitted_readings(self, t: int, latest: int | None = None) -> dict[str, ReadingSubmitted]:
        """The first ``ReadingSubmitted`` event of each participant of ``t`` up to ``latest``."""
        last = self.block_number if latest is None else latest
        found: dict[str, ReadingSubmitted] = {}
        for event in self._readings.get(t, []):
            if event.block_number <= last:
                found.setdefault(event.participant, event)
        return found

    def committed_intervals(self, from_block: int, to_block: int) -> list[IntervalCommitted]:
        """``IntervalCommitted`` events in blocks ``[from_block, to_block]``."""
        events = sorted((c.event for c in self._commits.values()), key=lambda e: e.block_number)
        return [e for e in events if from_block <= e.block_number <= to_block]

    def remember_commit(self, t: int, block_number: int) -> None:
        """Nothing to remember: every commit is at hand."""

    def committed_trades(self, t: int) -> tuple[Trade, ...]:
        """``t``'s trades in commit order (addresses checksummed, as calldata decodes)."""
        commit = self._commits.get(t)
        if commit is None:
            raise SettlementFailed(t, "interval_not_committed", "no IntervalCommitted event")
        return commit.trades

    def interval_events(self, t: int, *, escrow: bool = True) -> IntervalRecord:
        """Everything recorded of ``t``, as the contract's events and views would tell it."""
        info = self.interval(t)
        commit = self._commits.get(t)
        locks: tuple[CollateralLocked, ...] = ()
        if commit is not None:
            position, tx_hash = commit.event.position, commit.event.tx_hash
            locks = tuple(
                CollateralLocked(t, who, amount, position, tx_hash)
                for who, amount in sorted(commit.locked.items())
            )
        settled = self._settled.get(t)
        return IntervalRecord(
            state=info,
            trades=() if commit is None else commit.trades,
            events=IntervalEvents(
                interval=t,
                commit=None if commit is None else commit.event,
                locks=locks,
                readings=tuple(self._readings.get(t, [])),
                trade_settlements=tuple(self._trade_events.get(t, [])),
                party_settlements=tuple(self._party_events.get(t, [])),
                settlements=() if settled is None else (settled,),
            ),
            escrow=self._escrow() if escrow else None,
        )

    def _escrow(self) -> EscrowSnapshot:
        total = self.ledger.total_escrowed
        return EscrowSnapshot(total, total, self.ledger.total_balances(), len(self._meters))

    # -- transactions -------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Nothing is ever in flight: each transaction is mined when it is sent."""

    def submit_readings(self, t: int, readings: Sequence[SignedReading], gas_limit: int) -> Mined:
        """``submitReadings(t, readings)``: every reading is checked before any is kept."""
        with self._refusals("readings", t):
            return self._submit_readings(t, readings, gas_limit)

    def _submit_readings(self, t: int, readings: Sequence[SignedReading], gas_limit: int) -> Mined:
        # a pause stops commits and deposits only (a pause cannot change a committed outcome)
        commit = self._commits.get(t)
        if commit is None:
            raise IntervalNotCommitted(t)
        _, end = self.window(t)
        if self.now_seconds < end:
            raise IntervalNotEnded(t, end, self.now_seconds)
        if self.now_seconds >= commit.deadline:
            raise ReadingWindowClosed(t, commit.deadline, self.now_seconds)
        read = set(self.ledger.intervals[t].read)
        for signed in readings:
            reading = signed.reading
            if reading.interval != t:
                raise ReadingIntervalMismatch(t, reading.interval)
            who = reading.participant.lower()
            meter = self._meter_at(who, commit.seq)
            if meter is None:
                raise ParticipantNotRegistered(to_checksum_address(who))
            signer = self._signer(signed)
            if signer != meter:
                raise InvalidMeterSignature(to_checksum_address(who), to_checksum_address(signer))
            if who in read:
                raise ReadingAlreadySubmitted(t, to_checksum_address(who))
            read.add(who)
        gas_used = self._gas(len(readings), self.reading_gas, gas_limit)
        block, tx_hash = self._mine()
        for signed in readings:
            r = signed.reading
            who = r.participant.lower()
            self.ledger.submit_reading(t, Reading(who, t, r.imported_wh, r.exported_wh))
            position = LogPosition(block, len(self._readings.get(t, [])))
            event = ReadingSubmitted(t, who, r.imported_wh, r.exported_wh, position, tx_hash)
            self._readings.setdefault(t, []).append(event)
        self.transactions.append(("readings", t, len(readings)))
        return Mined(tx_hash, block, gas_used)

    def _signer(self, signed: SignedReading) -> str:
        """Who signed ``signed`` over this market's domain (the zero address if nobody)."""
        digest = reading_digest(self._separator, signed.reading)
        try:
            return recover(digest, expand_signature(signed.r, signed.vs))
        except BadSignature:
            return ZERO_ADDRESS

    def settle(self, t: int, chunk: SettleArgs, gas_limit: int) -> Mined:
        """``settle(t, ...)`` of one chunk: at the cursor, hashing to the stored head."""
        with self._refusals("settle", t):
            return self._settle(t, chunk, gas_limit)

    def _settle(self, t: int, chunk: SettleArgs, gas_limit: int) -> Mined:
        commit = self._commits.get(t)
        if commit is None:
            raise IntervalNotCommitted(t)
        state = self.ledger.intervals[t]
        if state.settled:
            raise IntervalAlreadySettled(t)
        if self.now_seconds < commit.deadline:
            raise ReadingWindowOpen(t, commit.deadline, self.now_seconds)
        cursor, count, length = state.cursor, len(commit.trades), len(chunk.trades)
        if chunk.first_index != cursor:
            raise ChunkNotAtCursor(t, cursor, chunk.first_index)
        if (length == 0 and cursor < count) or cursor + length > count:
            raise ChunkOutOfRange(t, cursor, length, count)
        last = cursor + length == count
        if _chunk_head(chunk) != commit.heads[cursor] or (last and chunk.tail_hash != ZERO_HASH):
            raise TradesMismatch(t, chunk.first_index)
        gas_used = self._gas(length, self.trade_gas, gas_limit)
        block, tx_hash = self._mine()
        result = self.ledger.settle(t, length)
        logs = itertools.count()
        self._trade_events.setdefault(t, []).extend(
            TradeSettled(
                t,
                o.index,
                o.delivered_wh,
                o.payment,
                o.refund,
                o.penalty,
                LogPosition(block, next(logs)),
                tx_hash,
            )
            for o in result.outcomes
        )
        self._party_events.setdefault(t, []).extend(
            ParticipantSettled(
                t, p, d.released, d.credited, LogPosition(block, next(logs)), tx_hash
            )
            for p, d in sorted(result.deltas.items())
        )
        if (result.outcomes and self.ledger.intervals[t].settled) or not commit.trades:
            self._settled[t] = IntervalSettled(t, LogPosition(block, next(logs)), tx_hash)
        self.transactions.append(("settle", t, length))
        return Mined(tx_hash, block, gas_used)

    @contextlib.contextmanager
    def _refusals(self, kind: str, t: int) -> Iterator[None]:
        """Record a transaction of ``kind`` for ``t`` that the chain refuses."""
        try:
            yield
        except (LedgerError, OutOfGas) as err:
            self.refused.append((kind, t, type(err).__name__))
            raise

    def _gas(self, items: int, per_item: int, gas_limit: int) -> int:
        """Gas of a transaction of ``items`` items; OutOfGas above ``gas_limit``."""
        gas = TX_OVERHEAD_GAS + items * per_item
        if gas > gas_limit:
            raise OutOfGas(f"{gas_limit} gas would not be enough for {items} items ({gas})")
        return gas


def _chunk_head(chunk: SettleArgs) -> bytes:
    """The chain head a chunk's trades hash to (backward from its tail hash), as the
    contract's ``_chainSettled`` computes it; PartyIndexOutOfRange for a position beyond the
    chunk's party table."""
    head = chunk.tail_hash
    count = len(chunk.parties)
    for k in range(len(chunk.trades) - 1, -1, -1):
        buyer, seller, quantity_wh, price_per_wh, sold_wh, sold_before_wh = chunk.trades[k]
        for position in (buyer, seller):
            if position >= count:
                raise PartyIndexOutOfRange(chunk.first_index + k, position, count)
        (buyer_address, _), (seller_address, seller_index) = (
            chunk.parties[buyer],
            chunk.parties[seller],
        )
        trade = trade_from_link_price(buyer_address, seller_address, quantity_wh, price_per_wh)
        head = chain_link(head, trade, seller_index, SellerPosition(sold_wh, sold_before_wh))
    return head


__all__ = ["DEFAULT_TERMS", "MemoryChain"]
