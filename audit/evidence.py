"""What the audit reads: the chain's record and the published order sets, as plain values.

:class:`LedgerEvidence` is everything :func:`audit.chain_source.read_ledger` reads from one
EnergyMarket at one block (its events as :mod:`ledger.events` records, the committed trades as
:class:`ledger.records.Trade`); :class:`PublishedBook` one interval's published signed order set
(``GET /intervals/{t}/orders``), its fields kept as published so that the audit, not the
parser, judges them; :class:`ClearingRules` the mechanism the market declares. Pure values: the
checks in :mod:`audit.checks` take them, and tests build or bend them freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger import eip712 as signing
from ledger.errors import InputError, WattledgerError
from ledger.events import (
    CollateralLocked,
    EscrowChange,
    IntervalCommitted,
    IntervalEvents,
    IntervalSettled,
    MeterEvent,
    ParticipantSettled,
    ReadingSubmitted,
    TradeSettled,
    group_by_interval,
)
from ledger.records import IntervalInfo, Trade
from market.clearing import MECHANISMS


class AuditError(WattledgerError):
    """Raised when the audit cannot read its evidence: the chain, the market address, the
    market API or the orders directory is unreachable, missing or malformed.

    A violation by the operator is never an error: it is reported in the
    :class:`~audit.report.AuditReport`.
    """

    code = "audit_input_unavailable"


@dataclass(frozen=True, slots=True)
class CreationRecord:
    """The transaction that created the audited market, as the chain has it.

    ``to`` is None for a contract-creation transaction (a market created by a call to a
    factory or a wallet contract has ``to`` set, and its init code is not in the transaction);
    ``created`` is the receipt's ``contractAddress``. ``record_args`` are the constructor
    arguments the deployment record states (``constructorArgs`` of
    ``deployments/<chainId>.json``), or None when the creation transaction was named without
    a record.
    """

    tx_hash: str
    to: str | None
    input: bytes
    created: str | None
    succeeded: bool
    record_args: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class CommitRecord:
    """An ``IntervalCommitted`` event and the trades of its ``TradesCommitted`` chunks.

    ``trades`` is None when the chunks could not be read as the commit's (missing, out of
    order, or not adding up to its trade count); ``trades_error`` says why. Parties are
    checksum addresses, order ids 32 bytes.
    """

    event: IntervalCommitted
    trades: tuple[Trade, ...] | None
    trades_error: str | None = None
    sender: str | None = None
    """The account that sent the commit transaction (checksum), which the contract lets
    commit only while it holds the OPERATOR role: the operator whose key must have signed
    the interval's receipts."""


@dataclass(frozen=True, slots=True)
class SignatureAnswer:
    """Whether an order's participant held code at the end of a block, and whether it accepted
    the order's signature there as ``commitInterval`` asks (``acceptsSignature``: the
    market's capped static ``isValidSignature`` call, made by the market)."""

    contract: bool
    accepts: bool


@dataclass(frozen=True)
class LedgerEvidence:
    """Everything the audit reads from the chain, pinned at ``block_number``.

    Addresses are EIP-55 checksum strings. ``balances`` holds ``balanceOf`` (free, locked) at
    the block for every address that appears in an event; ``states`` the ``intervalInfo`` of
    every committed interval. Events are :mod:`ledger.events` records, each kind in chain
    order. ``reference_code``, ``immutable_ranges`` and ``reference_init_code`` are the
    EnergyMarket build the audit mirrors (runtime code, where its immutables go, creation
    code); ``creation`` the market's creation transaction when the audit was told which it is.
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
    meter_changes: tuple[MeterEvent, ...]
    commits: Mapping[int, CommitRecord]
    states: Mapping[int, IntervalInfo]
    readings: tuple[ReadingSubmitted, ...] = ()
    trade_settlements: tuple[TradeSettled, ...] = ()
    party_settlements: tuple[ParticipantSettled, ...] = ()
    locks: tuple[CollateralLocked, ...] = ()
    escrow: tuple[EscrowChange, ...] = ()
    interval_settlements: tuple[IntervalSettled, ...] = ()
    immutable_ranges: tuple[tuple[int, int], ...] = ()
    reference_init_code: bytes = b""
    creation: CreationRecord | None = None
    epoch: int | None = None
    """``epoch()`` of the market: interval ``t`` covers ``[epoch + t * intervalSeconds,
    epoch + (t + 1) * intervalSeconds)`` (None when not read)."""
    interval_seconds: int | None = None
    """``intervalSeconds()`` of the market (None when not read)."""
    grids: Mapping[int, tuple[bytes, str]] = field(default_factory=dict)
    """``gridOf(t)`` of each committed interval with a nonzero gridRoot: (gridRoot, the grid
    operator it snapshotted, checksum)."""
    nodes: Mapping[str, bytes] = field(default_factory=dict)
    """The registry's node per participant (checksum): the last ``NodeRecorded``'s
    ``keccak256`` of the node id, up to the pinned block."""
    block_times: Mapping[int, int] = field(default_factory=dict)
    """Unix timestamps of the blocks right after those the published sets name defaulters at
    (:mod:`audit.checks.defaulters`): a balance read at block ``B`` was read after the gate
    closed when block ``B + 1`` was mined at or after it."""
    signature_answers: Mapping[tuple[str, str, int], SignatureAnswer] = field(default_factory=dict)
    """What the chain answers, by ``(participant, order id, block)`` (participant checksum,
    id ``0x`` lower-case hex), for every order the published sets name a block for: an order
    of a contract account with its ``signatureBlock``, and the order a ``refused_signature``
    defaulter names with the defaulter's block."""

    def signature_answer(self, participant: str, order_id: str, block: int) -> SignatureAnswer:
        """:attr:`signature_answers` of one order at one block (not read: neither a contract
        nor accepting, which fails every claim that needs either)."""
        key = (participant, order_id.lower(), block)
        return self.signature_answers.get(key, SignatureAnswer(False, False))

    @property
    def operators(self) -> frozenset[str]:
        """Every account (checksum) that sent a commit of this market: each held the
        OPERATOR role when it did, as the contract checks."""
        return frozenset(c.sender for c in self.commits.values() if c.sender is not None)

    def interval_end(self, t: int) -> int | None:
        """Unix second at which interval ``t`` ends (None without the market's timing)."""
        if self.epoch is None or self.interval_seconds is None:
            return None
        return self.epoch + (t + 1) * self.interval_seconds

    @property
    def order_domain(self) -> signing.Domain:
        """The EIP-712 domain orders must be signed under, as the chain defines it."""
        return signing.Domain(self.chain_id, self.market, self.domain_name, self.domain_version)

    def events_by_interval(self) -> dict[int, IntervalEvents]:
        """Every interval's events (:func:`ledger.events.group_by_interval`), so that each
        check reads only its own."""
        return group_by_interval(
            [
                *(c.event for c in self.commits.values()),
                *self.locks,
                *self.readings,
                *self.trade_settlements,
                *self.party_settlements,
                *self.interval_settlements,
            ]
        )


@dataclass(frozen=True, slots=True)
class PublishedOrder:
    """One entry of a published order set, as published (fields checked by the audit)."""

    id: Any
    seq: Any
    message: Any
    signature: Any
    filled_wh: Any = None
    status: Any = None
    """``closed``, ``expired`` or ``dropped`` as published (None in sets published before
    expiry)."""
    receipt: Any = None
    """The operator's ``OrderReceipt`` as published: ``{"seq", "receivedAt", "signature"}``."""
    signature_block: Any = None
    """For an order of a contract account: the block at which the market found its
    ``isValidSignature`` accepting it (``signatureBlock``)."""


@dataclass(frozen=True, slots=True)
class PublishedCancel:
    """An order of the interval its participant cancelled, as published beside the set: the
    signed order and its receipt, the signed cancel and its receipt (fields as published)."""

    id: Any
    seq: Any
    message: Any
    signature: Any
    receipt: Any
    cancel: Any
    cancel_signature: Any
    cancel_digest: Any
    cancel_receipt: Any


@dataclass(frozen=True, slots=True)
class PublishedRefusal:
    """An order the market left out at gate closure, as published, with the reason."""

    id: Any
    seq: Any
    message: Any
    signature: Any
    receipt: Any
    reason: Any


@dataclass(frozen=True)
class PublishedGrid:
    """What a grid market publishes about one interval beyond its order set (docs/grid.md):
    the grid document's bytes and the grid operator's signature (``GET /intervals/{t}/grid``),
    the ``gridRoot`` and each committed trade's seller price as the clearing states them
    (``GET /intervals/{t}/clearing``), and the grid operator and node registry ``GET /market``
    names. Fields as published; the ``grid`` check judges them, and against the chain's
    (``gridOf``, ``NodeRecorded``, the committed seller prices) too."""

    document: bytes
    signature: Any
    grid_operator: Any
    nodes: Any
    stated_root: Any = None
    sell_prices: Any = None
    """The clearing's ``sellPricePerWh`` per trade in commit order, as published."""


@dataclass(frozen=True)
class PublishedBook:
    """An interval's published signed order set (``GET /intervals/{t}/orders``), and beside
    it the interval's cancelled orders and the orders refused at gate closure."""

    interval: int
    book_root: Any
    domain: Any
    orders: tuple[PublishedOrder, ...]
    source: str = ""
    closed_at: Any = None
    """When the gate closed (``closedAt``): orders whose expiry is before it do not clear."""
    cancels: tuple[PublishedCancel, ...] = ()
    refused: tuple[PublishedRefusal, ...] = ()
    state: Any = None
    """The interval's state as published (``frozen``, ``committed``, ``empty``)."""
    defaulters: tuple[Any, ...] = ()
    """The parties dropped at commit, as published: objects with ``round``, ``block``,
    ``participant`` and ``reason``, and ``freeBaseUnits`` and ``neededBaseUnits`` (for want of
    collateral) or ``order`` (a refused signature) (:mod:`market.defaulters`)."""
    grid: PublishedGrid | None = None
    """A grid market's document and outcome of the interval (None: the market has no grid)."""


@dataclass(frozen=True)
class MissingBook:
    """A committed interval whose order set could not be had from the source."""

    interval: int
    reason: str


@dataclass(frozen=True, slots=True)
class PublishedReadings:
    """One interval's meter readings as the settlement service publishes them
    (``GET /intervals/{t}/readings``): each entry as published (``participant``,
    ``interval``, ``importedWh``, ``exportedWh``, ``signature``, ``status``, ``onChain``), so
    that the audit, not the parser, judges the fields. ``source`` says where they came from."""

    interval: int
    entries: tuple[Any, ...]
    source: str


@dataclass(frozen=True, slots=True)
class MissingReadings:
    """A committed interval whose published readings could not be had from the source."""

    interval: int
    reason: str


def parse_published_readings(body: Any, interval: int, source: str) -> PublishedReadings:
    """A ``GET /intervals/{t}/readings`` body as :class:`PublishedReadings`; InputError when
    it is not one (not an object, no ``readings`` list, another interval)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("readings"), list):
        raise InputError(f"{source}: the readings of interval {interval} are not a readings body")
    stated = body.get("interval", interval)
    if stated != interval:
        raise InputError(f"{source}: asked for the readings of interval {interval}, got {stated!r}")
    return PublishedReadings(interval, tuple(body["readings"]), source)


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
                status=entry.get("status"),
                receipt=entry.get("receipt"),
                signature_block=entry.get("signatureBlock"),
            )
        )
    cancels = [
        PublishedCancel(
            id=entry.get("id"),
            seq=entry.get("seq"),
            message=entry.get("order"),
            signature=entry.get("signature"),
            receipt=entry.get("receipt"),
            cancel=entry.get("cancel"),
            cancel_signature=entry.get("cancelSignature"),
            cancel_digest=entry.get("cancelDigest"),
            cancel_receipt=entry.get("cancelReceipt"),
        )
        for entry in _entries(data, "cancels", where)
    ]
    refused = [
        PublishedRefusal(
            id=entry.get("id"),
            seq=entry.get("seq"),
            message=entry.get("order"),
            signature=entry.get("signature"),
            receipt=entry.get("receipt"),
            reason=entry.get("reason"),
        )
        for entry in _entries(data, "refused", where)
    ]
    return PublishedBook(
        interval=interval,
        book_root=data.get("bookRoot"),
        domain=data.get("domain"),
        orders=tuple(parsed),
        source=source,
        closed_at=data.get("closedAt"),
        cancels=tuple(cancels),
        refused=tuple(refused),
        state=data.get("state"),
        defaulters=tuple(_entries(data, "defaulters", where)),
    )


def _entries(data: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    """The objects of the optional list ``data[key]`` (none when absent, as in sets
    published before cancels and refusals were)."""
    value = data.get(key, [])
    if not isinstance(value, list):
        raise InputError(f"{where}: {key!r} is not a list")
    for i, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            raise InputError(f"{where}: {key} entry {i} is not a JSON object")
    return value


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
    "CreationRecord",
    "LedgerEvidence",
    "MissingBook",
    "MissingReadings",
    "PublishedBook",
    "PublishedCancel",
    "PublishedGrid",
    "PublishedOrder",
    "PublishedReadings",
    "PublishedRefusal",
    "SignatureAnswer",
    "parse_published_book",
    "parse_published_readings",
    "rules_from_market_info",
]
