"""What the settlement service needs from the chain, as a small interface.

The service (:mod:`settlement.service` and its parts: intake, batching, settle chunks) sees
the EnergyMarket contract only through :class:`SettlementChain`: chain time and blocks, the
views it decides by (a participant's meter key, ``intervalInfo``, the readings on-chain, the
committed intervals and their trades), the events a reconciliation report is built from, and
the two transactions it sends, ``submitReadings`` and ``settle``.

:class:`settlement.contract_chain.ContractChain` implements it over the deployed contract
(:class:`~settlement.chain_reader.ChainReader` for reads, :class:`~settlement.tx.TxSender` for
journalled transactions); :class:`settlement.memory_chain.MemoryChain` implements it in
memory over :class:`settlement.model.Ledger` with a clock of its own, so the service's logic
(intake refusals, batching, chunking, exactly-once, restarts) is tested without a chain, as
the market service is with :class:`market.ledger_port.MemoryLedger`.

Errors: a read or a transaction raises :class:`~settlement.errors.ChainUnavailable` when the
node does not answer; a transaction the contract refuses raises the mapped
:class:`~ledger.contract_errors.LedgerError` (before any gas is spent when a preflight sees
it), :class:`~settlement.errors.OutOfGas` when its gas limit is too small, and on a real
chain :class:`~settlement.tx.NonceConsumed` or :class:`~settlement.errors.TransactionNotMined`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chain.reader import MeterInfo
from ledger.calldata import SettleArgs
from ledger.eip712 import SignedReading
from ledger.events import IntervalCommitted, ReadingSubmitted
from ledger.records import IntervalInfo, Trade
from settlement.interval_record import IntervalRecord


@dataclass(frozen=True, slots=True)
class Mined:
    """A mined transaction of the service: its hash (``0x`` hex), block and gas used."""

    tx_hash: str
    block_number: int
    gas_used: int


class SettlementChain(Protocol):
    """One deployed EnergyMarket as the settlement service uses it."""

    @property
    def chain_id(self) -> int:
        """The chain's id (part of the EIP-712 domain readings are signed over)."""
        ...

    @property
    def market(self) -> str:
        """The EnergyMarket's address, checksummed."""
        ...

    @property
    def settler(self) -> str:
        """The account that sends the service's transactions, checksummed."""
        ...

    @property
    def start_block(self) -> int:
        """Where scans for commits begin (the market's deployment block)."""
        ...

    def now(self) -> int:
        """Chain time: the timestamp the next transaction's block will have, Unix seconds."""
        ...

    def chain_time(self) -> tuple[int, int, int | None]:
        """(:meth:`now`, the latest block's number, the block gas limit when the same read
        gave it, else None), in one read where the chain allows."""
        ...

    def latest_block(self) -> int:
        """The latest block's number."""
        ...

    def gas_limit(self) -> int:
        """The latest block's gas limit."""
        ...

    def window(self, t: int) -> tuple[int, int]:
        """(start, end) of interval ``t``'s delivery, Unix seconds."""
        ...

    def final_block(self, latest: int) -> int:
        """The newest final block (:mod:`chain.finality`) when the latest is ``latest``: the
        service marks a step done only once the final block holds it."""
        ...

    def interval(self, t: int, block: int | None = None) -> IntervalInfo:
        """``intervalInfo(t)``: status, trade count, settle cursor, reading deadline, terms;
        at the latest block, or at ``block``."""
        ...

    def participant(self, participant: str) -> MeterInfo:
        """``participantInfo(participant)``: meter key, participant index, registered."""
        ...

    def participants(self) -> list[str]:
        """Every address ever registered (``ParticipantRegistered``), lower-case; kept and
        extended from the blocks added since the last call."""
        ...

    def submitted_readings(self, t: int, latest: int | None = None) -> dict[str, ReadingSubmitted]:
        """The readings of interval ``t`` on-chain as of block ``latest`` (default: the
        latest block), by participant (lower-case)."""
        ...

    def committed_intervals(self, from_block: int, to_block: int) -> list[IntervalCommitted]:
        """``IntervalCommitted`` events in blocks ``[from_block, to_block]``."""
        ...

    def remember_commit(self, t: int, block_number: int) -> None:
        """Note that ``t`` was committed in ``block_number`` (known from the store after a
        restart), so reads of its events need not scan from :attr:`start_block`."""
        ...

    def committed_trades(self, t: int) -> tuple[Trade, ...]:
        """Interval ``t``'s trades in commit order; :class:`~settlement.errors.SettlementFailed`
        when they cannot be had (no commit, or its calldata cannot be replayed)."""
        ...

    def interval_events(self, t: int, *, escrow: bool = True) -> IntervalRecord:
        """Every event of interval ``t`` and its stored state, for the reconciliation report
        (with the escrow totals unless ``escrow`` is False)."""
        ...

    def reconcile(self) -> None:
        """Settle what became of transactions an earlier run sent but did not see mined."""
        ...

    def submit_readings(self, t: int, readings: Sequence[SignedReading], gas_limit: int) -> Mined:
        """``submitReadings(t, readings)`` in one transaction of at most ``gas_limit`` gas."""
        ...

    def settle(self, t: int, chunk: SettleArgs, gas_limit: int) -> Mined:
        """``settle(t, ...)`` of one chunk in one transaction of at most ``gas_limit`` gas."""
        ...


__all__ = ["Mined", "SettlementChain"]
