"""The EnergyMarket's logs decoded by its ABI, word by word, into :mod:`ledger.events` records.

Every event of the market has only static arguments (unsigned integers, addresses, bytes32),
so each is one 32-byte word: an indexed argument in its topic, the others in the data in ABI
order. :class:`EventCodec` reads those words directly and checks what eth_abi would (each
value inside its type, zero padding), where web3's ``process_log`` (eth_abi inside web3's
event machinery) costs about a millisecond per log and the audit and the settlement service
read thousands. An argument of a dynamic type, which no market event has today, goes through
eth_abi. ``tests/test_chain_events.py`` holds the decoding equal to web3's.

:meth:`EventCodec.decode` gives a log's event name and arguments by their Solidity names (what
:meth:`chain.client.LedgerClient.events` returns), each word read by
:func:`ledger.abi.decode_word`;
:meth:`EventCodec.record` the typed record of :mod:`ledger.events`. :func:`market_codec` is the
codec of the EnergyMarket artifact. Reading the logs from a node is :mod:`chain.logs`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode

from chain.artifacts import load_artifact
from ledger.abi import WORD, decode_word, is_static_word
from ledger.addresses import checksum_address
from ledger.events import (
    CollateralLocked,
    EscrowChange,
    IntervalCommitted,
    IntervalSettled,
    LogPosition,
    MarketEvent,
    MeterRotated,
    ParticipantDeregistered,
    ParticipantRegistered,
    ParticipantSettled,
    ReadingSubmitted,
    TradesCommitted,
    TradeSettled,
)
from ledger.hashing import keccak


@dataclass(frozen=True)
class EventType:
    """One event of an ABI: its name, ``topic0`` and arguments ``(name, type)``, indexed ones
    (in the topics) and the others (in the data), each in declaration order."""

    name: str
    topic: bytes
    indexed: tuple[tuple[str, str], ...]
    plain: tuple[tuple[str, str], ...]

    @property
    def signature(self) -> str:
        """``Name(type,...)`` as hashed into ``topic0``."""
        types = [t for _, t in (*self.indexed, *self.plain)]
        return f"{self.name}({','.join(types)})"


class EventCodec:
    """Topics and decoding of the events of one contract ABI."""

    def __init__(self, abi: Sequence[Mapping[str, Any]]) -> None:
        self._by_name: dict[str, EventType] = {}
        self._by_topic: dict[bytes, EventType] = {}
        for entry in abi:
            if entry.get("type") != "event" or entry.get("anonymous"):
                continue
            inputs = [
                (str(i["name"]), str(i["type"]), bool(i.get("indexed"))) for i in entry["inputs"]
            ]
            name = str(entry["name"])
            signature = f"{name}({','.join(kind for _, kind, _ in inputs)})"
            event = EventType(
                name=name,
                topic=keccak(signature.encode()),
                indexed=tuple((n, k) for n, k, indexed in inputs if indexed),
                plain=tuple((n, k) for n, k, indexed in inputs if not indexed),
            )
            self._by_name[name] = event
            self._by_topic[event.topic] = event

    def event(self, name: str) -> EventType:
        """The event ``name`` of the ABI; ValueError when it has none of that name."""
        found = self._by_name.get(name)
        if found is None:
            raise ValueError(f"the ABI has no event {name!r}")
        return found

    def topics(self, name: str, filters: Mapping[str, Any] | None = None) -> list[str | None]:
        """The ``eth_getLogs`` topic filter for event ``name`` with indexed arguments equal to
        ``filters`` (by name; None or absent matches any), trailing wildcards left out."""
        event = self.event(name)
        topics: list[str | None] = ["0x" + event.topic.hex()]
        for arg, kind in event.indexed:
            value = (filters or {}).get(arg)
            topics.append(None if value is None else "0x" + abi_encode([kind], [value]).hex())
        while topics and topics[-1] is None:
            topics.pop()
        return topics

    def decode(self, log: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The event name and arguments (by their Solidity names) of one log (an
        ``eth_getLogs`` entry or a receipt's log), or None when it is none of the ABI's
        events. ValueError when its topics or data do not hold the event's arguments."""
        topics = log["topics"]
        if not topics:
            return None
        event = self._by_topic.get(bytes(topics[0]))
        if event is None:
            return None
        if len(topics) != 1 + len(event.indexed):
            raise ValueError(
                f"{event.name}: {len(topics) - 1} indexed topics, expected {len(event.indexed)}"
            )
        args: dict[str, Any] = {}
        for (arg, kind), topic in zip(event.indexed, topics[1:], strict=True):
            word = bytes(topic)
            # an indexed dynamic value is its keccak hash: kept as the 32 bytes
            args[arg] = (
                decode_word(kind, word, f"{event.name}.{arg}") if is_static_word(kind) else word
            )
        data = bytes(log["data"])
        if all(is_static_word(kind) for _, kind in event.plain):
            if len(data) < WORD * len(event.plain):
                raise ValueError(f"{event.name}: {len(data)} bytes of data, too short")
            for i, (arg, kind) in enumerate(event.plain):
                args[arg] = decode_word(
                    kind, data[i * WORD : (i + 1) * WORD], f"{event.name}.{arg}"
                )
        else:
            values = abi_decode([kind for _, kind in event.plain], data)
            for (arg, kind), value in zip(event.plain, values, strict=True):
                args[arg] = _as_web3(kind, value)
        return event.name, args

    def records(self, log: Mapping[str, Any]) -> tuple[MarketEvent, ...]:
        """The :mod:`ledger.events` records of one log of the market: one per party for the
        per-chunk ``CollateralLocked`` and ``ParticipantSettled`` (parties the chunk did not
        touch left out), one for the other events that have a record, none for those without
        one (roles, pauses, terms changes) or of another ABI."""
        decoded = self.decode(log)
        if decoded is None:
            return ()
        name, args = decoded
        build = _RECORDS.get(name)
        if build is None:
            return ()
        built = build(args, position(log), tx_hash(log))
        return built if isinstance(built, tuple) else (built,)

    def record(self, log: Mapping[str, Any]) -> MarketEvent | None:
        """The one record of a log (:meth:`records`), or None when it has none; ValueError
        for a per-chunk log that holds several."""
        found = self.records(log)
        if len(found) > 1:
            raise ValueError(f"the log holds {len(found)} records")
        return found[0] if found else None


def _as_web3(kind: str, value: Any) -> Any:
    """An eth_abi value as web3 gives it: arrays as lists, addresses checksummed."""
    if kind.endswith("[]"):
        return [_as_web3(kind[:-2], v) for v in value]
    if kind == "address":
        return checksum_address(value)
    return value


def position(log: Mapping[str, Any]) -> LogPosition:
    """Where a log sits: its block number and log index."""
    return LogPosition(int(log["blockNumber"]), int(log["logIndex"]))


def tx_hash(log: Mapping[str, Any]) -> str:
    """The ``0x`` hex hash of the transaction that emitted a log."""
    return "0x" + bytes(log["transactionHash"]).hex()


_Builder = Callable[[dict[str, Any], LogPosition, str], MarketEvent | tuple[MarketEvent, ...]]


def _locks(a: dict[str, Any], at: LogPosition, tx: str) -> tuple[MarketEvent, ...]:
    parties, amounts = a["participants"], a["amounts"]
    if len(parties) != len(amounts):
        raise ValueError("CollateralLocked: participants and amounts differ in length")
    return tuple(
        CollateralLocked(a["interval"], who, amount, at, tx)
        for who, amount in zip(parties, amounts, strict=True)
        if amount != 0
    )


def _settled(a: dict[str, Any], at: LogPosition, tx: str) -> tuple[MarketEvent, ...]:
    parties, out, into = a["participants"], a["releasedBaseUnits"], a["creditedBaseUnits"]
    if not len(parties) == len(out) == len(into):
        raise ValueError("ParticipantSettled: participants and amounts differ in length")
    return tuple(
        ParticipantSettled(a["interval"], who, released, credited, at, tx)
        for who, released, credited in zip(parties, out, into, strict=True)
        if released or credited
    )


_RECORDS: dict[str, _Builder] = {
    "ParticipantRegistered": lambda a, at, tx: ParticipantRegistered(
        a["participant"], a["meter"], a["participantIndex"], at, tx
    ),
    "MeterRotated": lambda a, at, tx: MeterRotated(
        a["participant"], a["oldMeter"], a["newMeter"], at, tx
    ),
    "ParticipantDeregistered": lambda a, at, tx: ParticipantDeregistered(a["participant"], at, tx),
    "Deposited": lambda a, at, tx: EscrowChange(a["participant"], a["amount"], at, tx),
    "Withdrawn": lambda a, at, tx: EscrowChange(a["participant"], -a["amount"], at, tx),
    "IntervalCommitted": lambda a, at, tx: IntervalCommitted(
        interval=a["interval"],
        book_root=a["bookRoot"],
        settlement_head=a["settlementHead"],
        orders_digest=a["ordersDigest"],
        trade_count=a["tradeCount"],
        deadline=a["deadline"],
        penalty_price_per_wh=a["penaltyPricePerWh"],
        tolerance_bps=a["toleranceBps"],
        first_block=a["firstBlock"],
        position=at,
        tx_hash=tx,
    ),
    "TradesCommitted": lambda a, at, tx: TradesCommitted(
        interval=a["interval"],
        chunk=a["chunk"],
        first_index=a["firstIndex"],
        parties=tuple(a["parties"]),
        order_ids=tuple(bytes(i) for i in a["orderIds"]),
        trades=tuple(int(w) for w in a["trades"]),
        sell_prices=tuple(int(w) for w in a["sellPrices"]),
        tail_hash=bytes(a["tailHash"]),
        position=at,
        tx_hash=tx,
    ),
    "CollateralLocked": _locks,
    "ReadingSubmitted": lambda a, at, tx: ReadingSubmitted(
        a["interval"], a["participant"], a["importedWh"], a["exportedWh"], at, tx
    ),
    "TradeSettled": lambda a, at, tx: TradeSettled(
        interval=a["interval"],
        trade_index=a["tradeIndex"],
        delivered_wh=a["deliveredWh"],
        payment_base_units=a["paymentBaseUnits"],
        refund_base_units=a["refundBaseUnits"],
        penalty_base_units=a["penaltyBaseUnits"],
        position=at,
        tx_hash=tx,
    ),
    "ParticipantSettled": _settled,
    "IntervalSettled": lambda a, at, tx: IntervalSettled(a["interval"], at, tx),
    "GridRevenueCredited": lambda a, at, tx: ParticipantSettled(
        a["interval"], a["gridOperator"], 0, a["amount"], at, tx, grid_revenue=True
    ),
}
"""How each event of the market becomes its record, from its arguments by Solidity name."""


@functools.cache
def market_codec() -> EventCodec:
    """The codec of the EnergyMarket's events (from the committed artifact's ABI)."""
    return EventCodec(load_artifact("EnergyMarket").abi)


__all__ = [
    "EventCodec",
    "EventType",
    "market_codec",
    "position",
    "tx_hash",
]
