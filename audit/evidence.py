"""What the audit reads: the chain's record and the published order sets, as plain values.

:class:`LedgerEvidence` is everything :func:`audit.sources.read_ledger` reads from one
EnergyMarket at one block; :class:`PublishedBook` one interval's published signed order set
(``GET /intervals/{t}/orders``), its fields kept as published so that the audit, not the
parser, judges them; :class:`ClearingRules` the mechanism the market declares. Pure values: the
checks in :mod:`audit.checks` take them, and tests build or bend them freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger import eip712 as signing
from ledger.errors import InputError, WattledgerError
from market.clearing import MECHANISMS


class AuditError(WattledgerError):
    """Raised when the audit cannot read its evidence: the chain, the market address, the
    market API or the orders directory is unreachable, missing or malformed.

    A violation by the operator is never an error: it is reported in the :class:`AuditReport`.
    """

    code = "audit_input_unavailable"


@dataclass(frozen=True, order=True, slots=True)
class LogPosition:
    """Where an event sits on the chain; events sort by it."""

    block_number: int
    log_index: int


@dataclass(frozen=True, slots=True)
class MeterChange:
    """A change of a participant's registration: ``ParticipantRegistered`` (with
    ``participant_index``), ``MeterRotated``, or ``ParticipantDeregistered`` (``registered``
    False; the meter stays what it was)."""

    participant: str
    meter: str
    participant_index: int | None
    position: LogPosition
    registered: bool = True


@dataclass(frozen=True, slots=True)
class CommittedTrade:
    """A trade as committed (``CommitTrade`` of the calldata, parties resolved)."""

    buyer: str
    seller: str
    quantity_wh: int
    price_per_wh: int
    buy_order_id: str
    """Lower-case 0x hex, as the market names orders."""
    sell_order_id: str


@dataclass(frozen=True, slots=True)
class CommitRecord:
    """An ``IntervalCommitted`` event and the trades of its transaction's calldata.

    ``trades`` is None when the calldata could not be read as a ``commitInterval`` call
    (``trades_error`` says why).
    """

    interval: int
    book_root: bytes
    settlement_head: bytes
    orders_digest: bytes
    trade_count: int
    deadline: int
    penalty_price_per_wh: int
    tolerance_bps: int
    tx_hash: str
    position: LogPosition
    trades: tuple[CommittedTrade, ...] | None
    trades_error: str | None = None


@dataclass(frozen=True, slots=True)
class IntervalState:
    """``intervalInfo(t)`` at the audited block."""

    status: str
    trade_count: int
    cursor: int
    deadline: int
    tolerance_bps: int
    penalty_price_per_wh: int
    book_root: bytes


@dataclass(frozen=True, slots=True)
class ReadingRecord:
    """A ``ReadingSubmitted`` event, with the meter signature from its calldata if readable."""

    interval: int
    participant: str
    imported_wh: int
    exported_wh: int
    position: LogPosition
    tx_hash: str
    signature: tuple[bytes, bytes] | None
    """``(r, vs)`` (EIP-2098) of the reading in the ``submitReadings`` calldata."""


@dataclass(frozen=True, slots=True)
class TradeSettledRecord:
    """A ``TradeSettled`` event."""

    interval: int
    trade_index: int
    delivered_wh: int
    payment_base_units: int
    refund_base_units: int
    penalty_base_units: int
    position: LogPosition


@dataclass(frozen=True, slots=True)
class PartySettledRecord:
    """A ``ParticipantSettled`` event (one per party per settlement chunk)."""

    interval: int
    participant: str
    released_base_units: int
    credited_base_units: int
    position: LogPosition


@dataclass(frozen=True, slots=True)
class LockRecord:
    """A ``CollateralLocked`` event."""

    interval: int
    participant: str
    amount_base_units: int
    position: LogPosition


@dataclass(frozen=True, slots=True)
class EscrowRecord:
    """A ``Deposited`` (positive ``amount``) or ``Withdrawn`` (negative) event."""

    participant: str
    amount_base_units: int
    position: LogPosition


@dataclass(frozen=True)
class LedgerEvidence:
    """Everything the audit reads from the chain, pinned at ``block_number``.

    Addresses are EIP-55 checksum strings. ``balances`` holds ``balanceOf`` (free, locked) at
    the block for every address that appears in an event.
    """

    chain_id: int
    market: str
    block_number: int
    block_timestamp: int
    domain_name: str
    domain_version: str
    deployed_code: bytes
    reference_code: bytes
    token: str
    token_balance: int
    total_escrowed: int
    balances: Mapping[str, tuple[int, int]]
    meter_changes: tuple[MeterChange, ...]
    commits: Mapping[int, CommitRecord]
    states: Mapping[int, IntervalState]
    readings: tuple[ReadingRecord, ...] = ()
    trade_settlements: tuple[TradeSettledRecord, ...] = ()
    party_settlements: tuple[PartySettledRecord, ...] = ()
    locks: tuple[LockRecord, ...] = ()
    escrow: tuple[EscrowRecord, ...] = ()
    settled_intervals: frozenset[int] = frozenset()

    @property
    def order_domain(self) -> signing.Domain:
        """The EIP-712 domain orders must be signed under, as the chain defines it."""
        return signing.Domain(self.chain_id, self.market, self.domain_name, self.domain_version)


@dataclass(frozen=True, slots=True)
class PublishedOrder:
    """One entry of a published order set, as published (fields checked by the audit)."""

    id: Any
    seq: Any
    message: Any
    signature: Any
    filled_wh: Any = None


@dataclass(frozen=True)
class PublishedBook:
    """An interval's published signed order set (``GET /intervals/{t}/orders``)."""

    interval: int
    book_root: Any
    domain: Any
    orders: tuple[PublishedOrder, ...]
    source: str = ""


@dataclass(frozen=True)
class MissingBook:
    """A committed interval whose order set could not be had from the source."""

    interval: int
    reason: str


@dataclass(frozen=True)
class ClearingRules:
    """The mechanism and ``k`` the market declares, and where the audit got them."""

    mechanism: str = "uniform"
    k: tuple[int, int] = (1, 2)
    source: str = "DESIGN default"

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise InputError(f"mechanism {self.mechanism!r} is not one of {', '.join(MECHANISMS)}")
        num, den = self.k
        if den <= 0 or not 0 <= num <= den:
            raise InputError(f"k {num}/{den} is not a fraction in [0, 1]")


def parse_published_book(data: Any, interval: int, source: str = "") -> PublishedBook:
    """Read a ``GET /intervals/{t}/orders`` body; InputError if its shape is wrong.

    Only the shape is checked here (an object with an ``orders`` list of objects); the fields
    of each order are the audit's ``signatures`` check.
    """
    where = f"{source or 'published set'} of interval {interval}"
    if not isinstance(data, Mapping):
        raise InputError(f"{where}: expected a JSON object, got {type(data).__name__}")
    orders = data.get("orders")
    if not isinstance(orders, list):
        raise InputError(f"{where}: expected an 'orders' list")
    if "interval" in data and data["interval"] != interval:
        raise InputError(f"{where}: it is the set of interval {data['interval']!r}")
    parsed = []
    for i, entry in enumerate(orders):
        if not isinstance(entry, Mapping):
            raise InputError(f"{where}: order {i} is not a JSON object")
        parsed.append(
            PublishedOrder(
                id=entry.get("id"),
                seq=entry.get("seq"),
                message=entry.get("order"),
                signature=entry.get("signature"),
                filled_wh=entry.get("filledWh"),
            )
        )
    return PublishedBook(
        interval=interval,
        book_root=data.get("bookRoot"),
        domain=data.get("domain"),
        orders=tuple(parsed),
        source=source,
    )


def rules_from_market_info(info: Mapping[str, Any], source: str) -> ClearingRules:
    """The clearing rules a ``GET /market`` body declares; InputError when it has none."""
    mech = info.get("mechanism")
    if not isinstance(mech, Mapping) or not isinstance(mech.get("name"), str):
        raise InputError(f"{source}: no mechanism declared (expected mechanism.name)")
    raw_k = mech.get("k") or [1, 2]
    if (
        not isinstance(raw_k, list)
        or len(raw_k) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in raw_k)
    ):
        raise InputError(f"{source}: mechanism.k is not a pair of integers: {raw_k!r}")
    return ClearingRules(str(mech["name"]), (int(raw_k[0]), int(raw_k[1])), source)


__all__ = [
    "AuditError",
    "ClearingRules",
    "CommitRecord",
    "CommittedTrade",
    "EscrowRecord",
    "IntervalState",
    "LedgerEvidence",
    "LockRecord",
    "LogPosition",
    "MeterChange",
    "MissingBook",
    "PartySettledRecord",
    "PublishedBook",
    "PublishedOrder",
    "ReadingRecord",
    "TradeSettledRecord",
    "parse_published_book",
    "rules_from_market_info",
]
