"""The EnergyMarket's events as typed records: one shape per event, from the chain to the audit.

:mod:`chain.events` decodes each log of the market into one of these (by the contract's ABI);
the settlement service, its reconciliation report and the audit all read them. Each record is
named after its Solidity event and carries the event's arguments under Python names with
their units (``_wh`` energy, ``_base_units`` money), then where the log sits on the chain
(:class:`LogPosition`) and the hash of the transaction that emitted it (``0x`` hex).

Addresses are EIP-55 checksum strings, as the decoder writes them. Plain frozen values: a test
builds or bends them freely (a record built by hand sits at block 0 unless told otherwise).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ledger.records import Terms


@dataclass(frozen=True, order=True, slots=True)
class LogPosition:
    """Where an event sits on the chain: its block and its index among the block's logs.
    Events sort by it (chain order)."""

    block_number: int
    log_index: int


NO_POSITION = LogPosition(0, 0)
"""The position of a record built by hand (not read from a chain)."""


@dataclass(frozen=True, slots=True)
class ParticipantRegistered:
    """``ParticipantRegistered``: ``participant`` may trade, readings for it are signed by
    ``meter``; ``participant_index`` is fixed for good (settlement names sellers by it)."""

    participant: str
    meter: str
    participant_index: int
    position: LogPosition = NO_POSITION
    tx_hash: str = ""


@dataclass(frozen=True, slots=True)
class MeterRotated:
    """``MeterRotated``: readings for ``participant`` are signed by ``new_meter`` from now on."""

    participant: str
    old_meter: str
    new_meter: str
    position: LogPosition = NO_POSITION
    tx_hash: str = ""


@dataclass(frozen=True, slots=True)
class ParticipantDeregistered:
    """``ParticipantDeregistered``: ``participant`` may no longer trade (its balances stay
    withdrawable; its meter key is unchanged)."""

    participant: str
    position: LogPosition = NO_POSITION
    tx_hash: str = ""


MeterEvent = ParticipantRegistered | MeterRotated | ParticipantDeregistered
"""A change of a participant's registration or meter key."""


@dataclass(frozen=True, slots=True)
class EscrowChange:
    """``Deposited`` (``amount_base_units`` positive) or ``Withdrawn`` (negative): tokens moved
    into or out of ``participant``'s free balance."""

    participant: str
    amount_base_units: int
    position: LogPosition = NO_POSITION
    tx_hash: str = ""


@dataclass(frozen=True, slots=True)
class IntervalCommitted:
    """``IntervalCommitted``: interval ``interval``'s trades are contracts, with their terms.

    ``book_root`` is the Merkle root of the order ids the clearing saw; ``orders_digest`` folds
    the trades' order ids and ``settlement_head`` is the head of the trade hash chain
    (:mod:`ledger.trade_chain`), which bind the trades in the commit's calldata to this event.
    ``penalty_price_per_wh`` and ``tolerance_bps`` are the terms snapshotted at commit;
    readings are accepted until ``deadline`` (Unix seconds).
    """

    interval: int
    book_root: bytes
    settlement_head: bytes
    orders_digest: bytes
    trade_count: int
    deadline: int
    penalty_price_per_wh: int
    tolerance_bps: int
    first_block: int = 0
    """Block of the commit's first chunk (0 when not known: a record built by hand)."""
    position: LogPosition = NO_POSITION
    tx_hash: str = ""

    @property
    def block_number(self) -> int:
        """The block of the commit (its last chunk)."""
        return self.position.block_number

    @property
    def start_block(self) -> int:
        """Where the commit's events start: its first chunk's block."""
        return self.first_block or self.position.block_number

    @property
    def terms(self) -> Terms:
        """The penalty rate and tolerance snapshotted at commit."""
        return Terms(self.penalty_price_per_wh, self.tolerance_bps)


@dataclass(frozen=True, slots=True)
class CollateralLocked:
    """``CollateralLocked``: commit moved ``amount_base_units`` of ``participant``'s free
    balance to locked (its payments as a buyer plus its bonds as a seller)."""

    interval: int
    participant: str
    amount_base_units: int
    position: LogPosition = NO_POSITION
    tx_hash: str = ""


@dataclass(frozen=True, slots=True)
class ReadingSubmitted:
    """``ReadingSubmitted``: the contract accepted ``participant``'s meter reading.

    ``signature`` is the meter's ``(r, vs)`` (EIP-2098) from the ``submitReadings`` calldata,
    when the reader looked it up (the audit does; the event itself does not carry it).
    """

    interval: int
    participant: str
    imported_wh: int
    exported_wh: int
    position: LogPosition = NO_POSITION
    tx_hash: str = ""
    signature: tuple[bytes, bytes] | None = None

    @property
    def block_number(self) -> int:
        """The block the reading went on-chain in."""
        return self.position.block_number


@dataclass(frozen=True, slots=True)
class TradeSettled:
    """``TradeSettled``: trade ``trade_index`` (commit order) delivered ``delivered_wh``; the
    buyer paid ``payment_base_units`` and got ``refund_base_units`` back, the seller paid
    ``penalty_base_units`` from its bond."""

    interval: int
    trade_index: int
    delivered_wh: int
    payment_base_units: int
    refund_base_units: int
    penalty_base_units: int
    position: LogPosition = NO_POSITION
    tx_hash: str = ""


@dataclass(frozen=True, slots=True)
class ParticipantSettled:
    """``ParticipantSettled``: one settlement chunk's netted change of one party:
    ``released_base_units`` left its locked balance, ``credited_base_units`` entered its free
    balance. A ``GridRevenueCredited`` event is one too (``grid_revenue``): the grid
    operator's credit of a chunk's ``delivered * (price - sellPrice)``, nothing released."""

    interval: int
    participant: str
    released_base_units: int
    credited_base_units: int
    position: LogPosition = NO_POSITION
    tx_hash: str = ""
    grid_revenue: bool = False


@dataclass(frozen=True, slots=True)
class IntervalSettled:
    """``IntervalSettled``: the last trade of ``interval`` settled (emitted once)."""

    interval: int
    position: LogPosition = NO_POSITION
    tx_hash: str = ""


@dataclass(frozen=True, slots=True)
class TradesCommitted:
    """``TradesCommitted``: one commit chunk's trades (``chunk`` from 1), relay-proof.

    ``trades`` are the chunk's trade words, which index ``parties`` and ``order_ids`` (see
    :func:`ledger.commit_plan.trades_of_chunk`); ``first_index`` is the interval trade index
    of the first; ``tail_hash`` the chain head after its last trade (zero on the last
    chunk)."""

    interval: int
    chunk: int
    first_index: int
    parties: tuple[str, ...]
    order_ids: tuple[bytes, ...]
    trades: tuple[int, ...]
    tail_hash: bytes = bytes(32)
    position: LogPosition = NO_POSITION
    tx_hash: str = ""
    sell_prices: tuple[int, ...] = ()
    """Seller price words (two per word), empty off a grid."""


MarketEvent = (
    ParticipantRegistered
    | MeterRotated
    | ParticipantDeregistered
    | EscrowChange
    | IntervalCommitted
    | TradesCommitted
    | CollateralLocked
    | ReadingSubmitted
    | TradeSettled
    | ParticipantSettled
    | IntervalSettled
)
"""Any event of the market that has a record (roles, pauses and terms changes have none)."""

IntervalEvent = (
    IntervalCommitted
    | CollateralLocked
    | ReadingSubmitted
    | TradeSettled
    | ParticipantSettled
    | IntervalSettled
)
"""An event that belongs to one interval (it has an ``interval`` argument)."""


@dataclass(frozen=True)
class IntervalEvents:
    """The events of one interval, each kind in chain order.

    ``commit`` is None when the interval has no ``IntervalCommitted`` (in what was read);
    ``settlements`` holds its ``IntervalSettled`` events (one once settled).
    """

    interval: int
    commit: IntervalCommitted | None = None
    locks: tuple[CollateralLocked, ...] = ()
    readings: tuple[ReadingSubmitted, ...] = ()
    trade_settlements: tuple[TradeSettled, ...] = ()
    party_settlements: tuple[ParticipantSettled, ...] = ()
    settlements: tuple[IntervalSettled, ...] = ()


@dataclass
class _Grouping:
    commit: IntervalCommitted | None = None
    locks: list[CollateralLocked] = field(default_factory=list)
    readings: list[ReadingSubmitted] = field(default_factory=list)
    trade_settlements: list[TradeSettled] = field(default_factory=list)
    party_settlements: list[ParticipantSettled] = field(default_factory=list)
    settlements: list[IntervalSettled] = field(default_factory=list)


def group_by_interval(events: Iterable[IntervalEvent]) -> dict[int, IntervalEvents]:
    """Each interval's events, every kind sorted into chain order (events at one position
    keep the order given). The last ``IntervalCommitted`` of an interval is its commit."""
    groups: dict[int, _Grouping] = {}
    for event in sorted(events, key=lambda e: e.position):
        group = groups.setdefault(event.interval, _Grouping())
        if isinstance(event, IntervalCommitted):
            group.commit = event
        elif isinstance(event, CollateralLocked):
            group.locks.append(event)
        elif isinstance(event, ReadingSubmitted):
            group.readings.append(event)
        elif isinstance(event, TradeSettled):
            group.trade_settlements.append(event)
        elif isinstance(event, ParticipantSettled):
            group.party_settlements.append(event)
        else:
            group.settlements.append(event)
    return {
        t: IntervalEvents(
            interval=t,
            commit=g.commit,
            locks=tuple(g.locks),
            readings=tuple(g.readings),
            trade_settlements=tuple(g.trade_settlements),
            party_settlements=tuple(g.party_settlements),
            settlements=tuple(g.settlements),
        )
        for t, g in groups.items()
    }


__all__ = [
    "NO_POSITION",
    "CollateralLocked",
    "EscrowChange",
    "IntervalCommitted",
    "IntervalEvent",
    "IntervalEvents",
    "IntervalSettled",
    "LogPosition",
    "MarketEvent",
    "MeterEvent",
    "MeterRotated",
    "ParticipantDeregistered",
    "ParticipantRegistered",
    "ParticipantSettled",
    "ReadingSubmitted",
    "TradeSettled",
    "TradesCommitted",
]
