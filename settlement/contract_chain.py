"""The settlement service's :class:`~settlement.chain_port.SettlementChain` over the real
EnergyMarket.

Reads go through :class:`~settlement.chain_reader.ChainReader` (raw view calls, cached events,
transient errors retried), transactions through :class:`~settlement.tx.TxSender` (preflight,
journal, fee bumps). The calldata of ``submitReadings`` and ``settle`` is written here, word by
word (:func:`ledger.abi.encode_static_args`): eth-abi takes 50 ms for a batch of 200 readings,
web3's ``encode_abi`` a tenth of a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types
from eth_utils.address import to_checksum_address
from web3.types import TxReceipt

from chain.reader import MeterInfo
from ledger.abi import encode_static_args
from ledger.calldata import SettleArgs
from ledger.eip712 import SignedReading
from ledger.events import IntervalCommitted, ReadingSubmitted
from ledger.records import IntervalInfo, Trade
from settlement.chain_port import Mined
from settlement.chain_reader import ChainReader
from settlement.interval_record import IntervalRecord
from settlement.tx import TxSender, hex_hash


class ContractChain:
    """The deployed EnergyMarket read by ``reader``; transactions sent by ``sender``."""

    def __init__(self, reader: ChainReader, sender: TxSender) -> None:
        self.reader = reader
        self.sender = sender
        self.settler = sender.address
        self.chain_id = int(
            reader.retry("reading the chain id", lambda: reader.client.chain.chain_id)
        )
        self.market = to_checksum_address(reader.market)
        self._abi: dict[str, tuple[bytes, list[str]]] = {}

    # -- reads ------------------------------------------------------------------------------

    @property
    def start_block(self) -> int:
        """Where scans for commits begin (the reader's deployment block)."""
        return self.reader.start_block

    def now(self) -> int:
        """Chain time (the pending block's timestamp)."""
        return self.reader.now()

    def chain_time(self) -> tuple[int, int, int | None]:
        """Chain time and the latest block from one request; the block gas limit from the
        same header where the node sent one (not on the embedded chain)."""
        now, latest = self.reader.now_and_latest()
        return now, latest, self.reader.header_gas_limit

    def latest_block(self) -> int:
        """The latest block's number."""
        return self.reader.latest_block()

    def gas_limit(self) -> int:
        """The latest block's gas limit."""
        return self.reader.gas_limit()

    def window(self, t: int) -> tuple[int, int]:
        """(start, end) of interval ``t``'s delivery."""
        return self.reader.window(t)

    def final_block(self, latest: int) -> int:
        """The newest final block when the latest is ``latest``."""
        return self.reader.final_block(latest)

    def interval(self, t: int, block: int | None = None) -> IntervalInfo:
        """``intervalInfo(t)`` (at ``block``)."""
        return self.reader.interval(t, block)

    def participant(self, participant: str) -> MeterInfo:
        """``participantInfo(participant)``."""
        return self.reader.participant(participant)

    def participants(self) -> list[str]:
        """Every address ever registered, lower-case (``ParticipantRegistered`` events)."""
        return self.reader.participants()

    def submitted_readings(self, t: int, latest: int | None = None) -> dict[str, ReadingSubmitted]:
        """``ReadingSubmitted`` events of ``t`` up to block ``latest``, by participant."""
        return self.reader.submitted_readings(t, latest)

    def committed_intervals(self, from_block: int, to_block: int) -> list[IntervalCommitted]:
        """``IntervalCommitted`` events in blocks ``[from_block, to_block]``."""
        return self.reader.committed_intervals(from_block, to_block)

    def remember_commit(self, t: int, block_number: int) -> None:
        """Note where ``t`` was committed."""
        self.reader.remember_commit(t, block_number)

    def committed_trades(self, t: int) -> tuple[Trade, ...]:
        """``t``'s trades, replayed from the commit transaction's calldata."""
        return self.reader.committed_trades(t)

    def interval_events(self, t: int, *, escrow: bool = True) -> IntervalRecord:
        """Every event of ``t`` and its stored state."""
        return self.reader.interval_events(t, escrow=escrow)

    # -- transactions -------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Wait for (or give up on) journalled transactions an earlier run left in flight."""
        self.sender.reconcile()

    def submit_readings(self, t: int, readings: Sequence[SignedReading], gas_limit: int) -> Mined:
        """Send ``submitReadings(t, readings)`` and wait for it to be mined."""
        receipt = self.sender.send(
            self.market,
            self.readings_calldata(t, readings),
            gas_limit=gas_limit,
            kind="readings",
            interval=t,
        )
        return _mined(receipt)

    def settle(self, t: int, chunk: SettleArgs, gas_limit: int) -> Mined:
        """Send the ``settle`` chunk ``chunk`` of ``t`` and wait for it to be mined."""
        data = self.calldata(
            "settle",
            [t, chunk.first_index, list(chunk.parties), list(chunk.trades), chunk.tail_hash],
        )
        receipt = self.sender.send(
            self.market, data, gas_limit=gas_limit, kind="settle", interval=t
        )
        return _mined(receipt)

    # -- calldata -----------------------------------------------------------------------------

    def readings_calldata(self, t: int, readings: Sequence[SignedReading]) -> bytes:
        """Calldata of ``submitReadings(t, readings)`` (participants as given: lower-case hex
        costs no checksum)."""
        rows = [
            (r.reading.participant, t, r.reading.imported_wh, r.reading.exported_wh, r.r, r.vs)
            for r in readings
        ]
        return self.calldata("submitReadings", [t, rows])

    def calldata(self, function: str, args: Sequence[Any]) -> bytes:
        """Calldata of the market's ``function`` with ``args``: its selector (from the
        contract's ABI, looked up once) and :func:`~ledger.abi.encode_static_args`."""
        found = self._abi.get(function)
        if found is None:
            entry = next(
                e
                for e in self.reader.client.contract.abi
                if e.get("type") == "function" and e.get("name") == function
            )
            found = (function_abi_to_4byte_selector(entry), get_abi_input_types(entry))
            self._abi[function] = found
        selector, types = found
        return selector + encode_static_args(types, args)


def _mined(receipt: TxReceipt) -> Mined:
    return Mined(
        tx_hash=hex_hash(receipt["transactionHash"]),
        block_number=int(receipt["blockNumber"]),
        gas_used=int(receipt["gasUsed"]),
    )


__all__ = ["ContractChain"]
