"""The audit: anyone re-derives and verifies every committed interval from public data.

Nobody has to trust the operator. For each interval committed on-chain the audit takes the
signed order set the market published and the chain's own record, and checks:

``signatures``
    Every published order is a well-formed ``Order`` message for this interval; its id is its
    EIP-712 digest under the market's domain as the *chain* defines it (chain id from the
    node, ``verifyingContract`` the audited address, name and version from the contract's
    EIP-5267 ``eip712Domain()``); its signature recovers to its ``participant``, who was a
    registered participant when the interval was committed; no id appears twice.
``book_root``
    The Merkle root (:mod:`market.merkle`) of the published ids equals the ``bookRoot`` of
    ``IntervalCommitted`` and of ``intervalInfo(t)``, and the root the publication states.
``commitment``
    The trades read from the ``commitInterval`` calldata are the committed ones: their count
    is ``tradeCount``, their order ids fold to ``ordersDigest`` and the trade hash chain
    (``TradeChain``) to ``settlementHead``; ``intervalInfo(t)`` agrees with the event.
``reclear``
    :func:`market.clearing.clear` on the published set with the market's mechanism gives
    exactly the committed trades, in commit order: buy and sell order ids, buyer and seller,
    quantity and price, and the published fills.
``properties``
    Every DESIGN §4 property (:mod:`market.properties`) holds on the *committed* result.
``settlement``
    :mod:`settlement.model` recomputes, from the committed trades, the snapshotted terms and
    the readings accepted on-chain (``ReadingSubmitted``, each re-verified against the meter
    key registered at the time), what each commit locked (``CollateralLocked``), how every
    settled trade settled (``TradeSettled``: delivered, payment, refund, penalty) and each
    party's netted change (``ParticipantSettled``); each trade settles at most once, in
    cursor order, and ``IntervalSettled`` comes exactly when all have.

and, for the market as a whole at the audited block:

``conservation``
    Every participant's free and locked balance, rebuilt from the events alone (deposits,
    withdrawals, locks, settlement releases and credits), equals ``balanceOf``; their sum
    equals ``totalEscrowed()`` and ``deposits - withdrawals``; the token balance of the market
    covers it (a surplus, which anyone can cause by sending tokens directly, is a note).
``code``
    The runtime code at the audited address is the EnergyMarket this audit mirrors (the
    committed artifact, bytes of immutables aside), so the settlement rules it re-runs are the
    ones the chain runs.

This module is the pure core: it takes the evidence as values (:class:`LedgerEvidence`,
:class:`PublishedBook`) and returns an :class:`AuditReport`. Reading the chain and the
published sets is :mod:`market.audit_sources`; :func:`audit_market` is the library entry that
does both.

What the audit trusts, and why
    * The chain itself, read at one pinned block: it is the ledger of record.
    * The ``seq`` (arrival sequence) of each published order. It only breaks price ties, and
      neither the order signature nor the book root covers it; the audit checks it is a
      non-negative integer, unique within the interval.
    * The mechanism and ``k``: the chain does not record them. They are the market's declared
      rule from ``GET /market`` (or ``market.json`` beside archived order sets), or what the
      auditor passes; never the per-interval clearing record, which the operator could bend to
      fit a wrong price.
    * That the published set is the whole book. The root proves the set is what was committed,
      not that no signed order was left out before the root was built: a participant checks
      its own order's inclusion proof (``GET /orders/{id}/proof``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from market import signing
from market.api_errors import BadSignature
from market.clearing import MECHANISMS, Trade, clear
from market.errors import InputError, WattledgerError
from market.merkle import EMPTY_ROOT, MerkleTree
from market.orders import Order, Side
from market.properties import check_clearing_properties
from market.units import (
    PricePerWh,
    Wh,
    currency_from_base_units,
    currency_per_kwh_from_price_per_wh,
)
from settlement import model
from settlement.readings import ReadingDomain, SignedReading, recover_meter

if TYPE_CHECKING:  # pragma: no cover - imports for annotations only
    from market.audit_sources import LedgerReader, OrderSourceLike

SIGNATURES = "signatures"
BOOK_ROOT = "book_root"
COMMITMENT = "commitment"
RECLEAR = "reclear"
PROPERTIES = "properties"
SETTLEMENT = "settlement"
CONSERVATION = "conservation"
CODE = "code"

INTERVAL_CHECKS: tuple[str, ...] = (
    SIGNATURES,
    BOOK_ROOT,
    COMMITMENT,
    RECLEAR,
    PROPERTIES,
    SETTLEMENT,
)
"""The checks run on every committed interval, in report order."""
MARKET_CHECKS: tuple[str, ...] = (CODE, CONSERVATION)
"""The checks run once on the whole market at the audited block."""

MAX_DIFFERENCES = 8
"""Most differences one check lists for one interval before it says how many more there are."""


class AuditError(WattledgerError):
    """Raised when the audit cannot read its evidence: the chain, the market address, the
    market API or the orders directory is unreachable, missing or malformed.

    A violation by the operator is never an error: it is reported in the :class:`AuditReport`.
    """

    code = "audit_input_unavailable"


# ----------------------------------------------------------------------------- evidence


@dataclass(frozen=True, order=True, slots=True)
class LogPosition:
    """Where an event sits on the chain; events sort by it."""

    block_number: int
    log_index: int


@dataclass(frozen=True, slots=True)
class MeterChange:
    """``ParticipantRegistered`` (``participant_index`` set) or ``MeterRotated``."""

    participant: str
    meter: str
    participant_index: int | None
    position: LogPosition


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


# ----------------------------------------------------------------------------- report


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed check: which interval (None for a market check), which check, and what."""

    check: str
    message: str
    interval: int | None = None

    def __str__(self) -> str:
        where = "market" if self.interval is None else f"interval {self.interval}"
        return f"{where}: {self.check}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        """``{"interval", "check", "message"}``."""
        return {"interval": self.interval, "check": self.check, "message": self.message}


def _decimal_text(value: Decimal) -> str:
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class IntervalReport:
    """The audit of one committed interval."""

    interval: int
    violations: tuple[Violation, ...]
    notes: tuple[str, ...]
    trade_count: int
    volume_wh: int
    prices_per_wh: tuple[int, ...]
    """The distinct committed trade prices, ascending."""
    settlement: str

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.violations

    @property
    def failed_checks(self) -> tuple[str, ...]:
        """Names of the checks that failed, in report order."""
        failed = {v.check for v in self.violations}
        return tuple(c for c in INTERVAL_CHECKS if c in failed)

    def describe(self) -> str:
        """``3 trades, 1,234 Wh @ 0.25/kWh, settled``."""
        trades = f"{self.trade_count} trade{'s' if self.trade_count != 1 else ''}"
        if not self.prices_per_wh:
            return f"{trades}, {self.settlement}"
        low, high = self.prices_per_wh[0], self.prices_per_wh[-1]
        price = _decimal_text(currency_per_kwh_from_price_per_wh(low))
        if high != low:
            price += "-" + _decimal_text(currency_per_kwh_from_price_per_wh(high))
        return f"{trades}, {self.volume_wh:,} Wh @ {price}/kWh, {self.settlement}"

    def line(self) -> str:
        """One line: ``interval 12  PASS  ...`` or ``interval 12  FAIL  check: what; ...``."""
        if self.ok:
            return f"interval {self.interval}  PASS  {self.describe()}"
        shown = "; ".join(f"{v.check}: {v.message}" for v in self.violations)
        return f"interval {self.interval}  FAIL  {shown}"

    def to_json(self) -> dict[str, Any]:
        """The interval's report as JSON values (big integers as decimal strings)."""
        return {
            "interval": self.interval,
            "ok": self.ok,
            "tradeCount": self.trade_count,
            "volumeWh": self.volume_wh,
            "pricesPerWh": [str(p) for p in self.prices_per_wh],
            "settlement": self.settlement,
            "failedChecks": list(self.failed_checks),
            "violations": [v.to_json() for v in self.violations],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class AuditReport:
    """The audit of a market at one block: every committed interval and the market checks."""

    market: str
    chain_id: int
    block_number: int
    block_timestamp: int
    rules: ClearingRules
    intervals: tuple[IntervalReport, ...]
    market_violations: tuple[Violation, ...]
    market_notes: tuple[str, ...]
    range_from: int | None = None
    range_to: int | None = None

    @property
    def ok(self) -> bool:
        """True when no check failed anywhere."""
        return not self.market_violations and all(r.ok for r in self.intervals)

    @property
    def violations(self) -> tuple[Violation, ...]:
        """Every violation: the intervals' in interval order, then the market's."""
        out = [v for r in self.intervals for v in r.violations]
        return (*out, *self.market_violations)

    def interval(self, t: int) -> IntervalReport:
        """The report of interval ``t`` (KeyError when it was not audited)."""
        for r in self.intervals:
            if r.interval == t:
                return r
        raise KeyError(t)

    def market_line(self) -> str:
        """The market checks in one line."""
        if self.market_violations:
            shown = "; ".join(f"{v.check}: {v.message}" for v in self.market_violations)
            return f"market  FAIL  {shown}"
        return "market  PASS  " + "; ".join(self.market_notes)

    def summary(self) -> str:
        """One line: what was audited where, and how it went."""
        passed = sum(r.ok for r in self.intervals)
        failed = len(self.intervals) - passed
        verdict = "PASS" if self.ok else "FAIL"
        span = ""
        if self.range_from is not None or self.range_to is not None:
            span = (
                f" (intervals {'' if self.range_from is None else self.range_from}.."
                f"{'' if self.range_to is None else self.range_to})"
            )
        return (
            f"{verdict}: audited {len(self.intervals)} committed interval"
            f"{'s' if len(self.intervals) != 1 else ''}{span} of {self.market} on chain "
            f"{self.chain_id} at block {self.block_number}: {passed} passed, {failed} failed, "
            f"{len(self.violations)} violation{'s' if len(self.violations) != 1 else ''}; "
            f"mechanism {self.rules.mechanism}"
            + (
                f" k={self.rules.k[0]}/{self.rules.k[1]}"
                if self.rules.mechanism == "uniform"
                else ""
            )
            + f" ({self.rules.source})"
        )

    def lines(self) -> list[str]:
        """The human report: one line per interval, the market line, the summary."""
        return [*(r.line() for r in self.intervals), self.market_line(), self.summary()]

    def to_json(self) -> dict[str, Any]:
        """The whole report as JSON values (``--json``)."""
        return {
            "ok": self.ok,
            "market": self.market,
            "chainId": self.chain_id,
            "blockNumber": self.block_number,
            "blockTimestamp": self.block_timestamp,
            "mechanism": {
                "name": self.rules.mechanism,
                "k": list(self.rules.k),
                "source": self.rules.source,
            },
            "range": {"from": self.range_from, "to": self.range_to},
            "intervals": [r.to_json() for r in self.intervals],
            "marketChecks": {
                "ok": not self.market_violations,
                "violations": [v.to_json() for v in self.market_violations],
                "notes": list(self.market_notes),
            },
            "summary": {
                "intervals": len(self.intervals),
                "passed": sum(r.ok for r in self.intervals),
                "failed": sum(not r.ok for r in self.intervals),
                "violations": len(self.violations),
            },
        }


# ----------------------------------------------------------------------------- helpers


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


def _short(text: str) -> str:
    return text if len(text) <= 14 else f"{text[:10]}…"


def _capped(items: list[str], limit: int = MAX_DIFFERENCES) -> list[str]:
    if len(items) <= limit:
        return items
    return [*items[:limit], f"and {len(items) - limit} more"]


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class _Checks:
    """Collects violations and notes of one interval (or of the market)."""

    def __init__(self, interval: int | None) -> None:
        self.interval = interval
        self.violations: list[Violation] = []
        self.notes: list[str] = []

    def fail(self, check: str, message: str) -> None:
        self.violations.append(Violation(check, message, self.interval))

    def fail_all(self, check: str, messages: list[str]) -> None:
        for message in _capped(messages):
            self.fail(check, message)


def _address_key(address: str) -> str:
    """Addresses compare in checksum form."""
    return signing.checksum_address("0x" + address[2:].lower())


def _word_address(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def orders_digest(trades: Sequence[CommittedTrade]) -> bytes:
    """``IntervalCommitted.ordersDigest``: ``d_{k+1} = keccak256(d_k ‖ buyId_k ‖ sellId_k)``."""
    digest = bytes(32)
    for t in trades:
        digest = signing.keccak(
            digest + bytes.fromhex(t.buy_order_id[2:]) + bytes.fromhex(t.sell_order_id[2:])
        )
    return digest


def settlement_head(trades: Sequence[CommittedTrade], seller_index: Mapping[str, int]) -> bytes:
    """``IntervalCommitted.settlementHead``: the head ``h_0`` of the TradeChain hash chain.

    ``h_n = 0`` and ``h_k = keccak256(abi.encode(buyer, seller, sellerIndex, quantityWh,
    pricePerWh, sellerSoldWh, sellerSoldBeforeWh, h_{k+1}))``; every field is one static word.
    """
    positions = model.seller_positions([_model_trade(t) for t in trades])
    head = bytes(32)
    for k in range(len(trades) - 1, -1, -1):
        t = trades[k]
        head = signing.keccak(
            _word_address(t.buyer)
            + _word_address(t.seller)
            + _word(seller_index[t.seller])
            + _word(t.quantity_wh)
            + _word(t.price_per_wh)
            + _word(positions[k].sold_wh)
            + _word(positions[k].sold_before_wh)
            + head
        )
    return head


def _model_trade(t: CommittedTrade) -> model.Trade:
    return model.Trade(t.buyer, t.seller, t.quantity_wh, t.price_per_wh)


def code_matches(deployed: bytes, reference: bytes) -> tuple[bool, int]:
    """Whether ``deployed`` is ``reference`` with only its zero bytes filled in.

    Immutables (token address, epoch, interval length, cached EIP-712 values) are written
    into the runtime code at deployment over zero placeholders; every other byte is fixed by
    the source. Returns (matches, number of bytes that differ outside placeholders).
    """
    if len(deployed) != len(reference):
        return False, abs(len(deployed) - len(reference))
    foreign = sum(1 for d, r in zip(deployed, reference, strict=True) if d != r and r != 0)
    return foreign == 0, foreign


# ----------------------------------------------------------------------------- checks


@dataclass
class _Book:
    """The published set as the audit reads it."""

    orders: dict[str, Order] = field(default_factory=dict)
    """Every well-formed order by its recomputed id (bad signatures included)."""
    fills: dict[str, int] | None = None
    ids: list[bytes] = field(default_factory=list)
    """Every published id that is 32 bytes of hex, as bytes (for the root)."""


def check_signatures(
    book: PublishedBook,
    domain: signing.Domain,
    registered_before: Callable[[str], bool],
    checks: _Checks,
) -> _Book:
    """The ``signatures`` check; returns the well-formed orders for the other checks."""
    t = book.interval
    separator = domain.separator
    out = _Book(fills={})
    problems: list[str] = []
    published_domain = book.domain
    if isinstance(published_domain, Mapping):
        expected = domain.as_json()
        shown = {k: published_domain.get(k) for k in expected}
        if {k: str(v).lower() for k, v in shown.items()} != {
            k: str(v).lower() for k, v in expected.items()
        }:
            problems.append(f"published domain {shown} differs from the chain's {expected}")
    seen_ids: set[str] = set()
    seen_seq: dict[int, str] = {}
    for i, entry in enumerate(book.orders):
        label = f"order {i} ({_short(str(entry.id))})"
        message = entry.message
        if not isinstance(message, Mapping):
            problems.append(f"{label}: no signed message")
            continue
        try:
            order_hash = signing.digest(separator, "Order", message)
        except InputError as err:
            problems.append(f"{label}: malformed message: {err.message}")
            continue
        order_id = _hex(order_hash)
        published_id = str(entry.id).lower()
        if published_id != order_id:
            problems.append(
                f"{label}: id expected {order_id} (the EIP-712 digest) found {entry.id}"
            )
        if order_id in seen_ids:
            problems.append(f"{label}: order {order_id} is published twice")
            continue
        seen_ids.add(order_id)
        out.ids.append(order_hash)
        participant = str(message.get("participant", ""))
        try:
            signer = signing.recover(order_hash, entry.signature)
        except BadSignature as err:
            problems.append(f"{label}: signature is invalid: {err.message}")
        else:
            if signer != participant.lower():
                problems.append(
                    f"{label}: signature recovers to {signer}, not to participant {participant}"
                )
        if str(message.get("interval")) != str(t):
            problems.append(f"{label}: signed for interval {message.get('interval')!r}, not {t}")
        elif not registered_before(participant):
            problems.append(
                f"{label}: participant {participant} was not registered when {t} was committed"
            )
        if not _is_uint(entry.seq):
            problems.append(f"{label}: seq {entry.seq!r} is not a non-negative integer")
            continue
        if entry.seq in seen_seq:
            problems.append(f"{label}: seq {entry.seq} is also the seq of {seen_seq[entry.seq]}")
        seen_seq[entry.seq] = _short(order_id)
        try:
            side = {signing.SIDE_BUY: Side.BUY, signing.SIDE_SELL: Side.SELL}[int(message["side"])]
            out.orders[order_id] = Order(
                id=order_id,
                side=side,
                quantity_wh=Wh(int(message["quantityWh"])),
                price_per_wh=PricePerWh(int(message["pricePerWh"])),
                seq=entry.seq,
                participant=_address_key(participant),
            )
        except (KeyError, ValueError, TypeError, InputError) as err:
            problems.append(f"{label}: not an order of this market: {err}")
            continue
        if out.fills is not None:
            if entry.filled_wh is None:
                out.fills = None
            elif not _is_uint(entry.filled_wh):
                problems.append(f"{label}: filledWh {entry.filled_wh!r} is not a quantity")
                out.fills = None
            else:
                out.fills[order_id] = int(entry.filled_wh)
    checks.fail_all(SIGNATURES, problems)
    return out


def check_book_root(
    book: PublishedBook,
    parsed: _Book,
    commit: CommitRecord,
    state: IntervalState | None,
    checks: _Checks,
) -> None:
    """The ``book_root`` check."""
    root = MerkleTree.of(parsed.ids).root if parsed.ids else EMPTY_ROOT
    if len(parsed.ids) != len(book.orders):
        checks.fail(
            BOOK_ROOT,
            f"only {len(parsed.ids)} of {len(book.orders)} published orders have a usable id",
        )
    if root != commit.book_root:
        checks.fail(
            BOOK_ROOT,
            f"root of the {len(parsed.ids)} published orders expected {_hex(commit.book_root)} "
            f"(committed bookRoot) found {_hex(root)}",
        )
    stated = book.book_root
    if stated is not None and str(stated).lower() != _hex(root):
        checks.fail(
            BOOK_ROOT,
            f"the publication states bookRoot {stated}, its orders' root is {_hex(root)}",
        )
    if state is not None and state.book_root != commit.book_root:
        checks.fail(
            BOOK_ROOT,
            f"intervalInfo bookRoot {_hex(state.book_root)} differs from the committed event's "
            f"{_hex(commit.book_root)}",
        )


def check_commitment(
    commit: CommitRecord,
    state: IntervalState | None,
    seller_index: Mapping[str, int],
    checks: _Checks,
) -> None:
    """The ``commitment`` check: calldata trades are bound to the event; state agrees."""
    if state is None or state.status == "none":
        checks.fail(COMMITMENT, "intervalInfo says the interval is not committed")
    else:
        for what, found, expected in (
            ("tradeCount", state.trade_count, commit.trade_count),
            ("deadline", state.deadline, commit.deadline),
            ("penaltyPricePerWh", state.penalty_price_per_wh, commit.penalty_price_per_wh),
            ("toleranceBps", state.tolerance_bps, commit.tolerance_bps),
        ):
            if found != expected:
                checks.fail(
                    COMMITMENT,
                    f"intervalInfo {what} expected {expected} (IntervalCommitted) found {found}",
                )
    trades = commit.trades
    if trades is None:
        checks.fail(
            COMMITMENT,
            f"the trades of commit transaction {commit.tx_hash} cannot be read: "
            f"{commit.trades_error}",
        )
        return
    if len(trades) != commit.trade_count:
        checks.fail(
            COMMITMENT,
            f"tradeCount expected {commit.trade_count} found {len(trades)} trades in the calldata",
        )
    digest = orders_digest(trades)
    if digest != commit.orders_digest:
        checks.fail(
            COMMITMENT,
            f"ordersDigest expected {_hex(commit.orders_digest)} found {_hex(digest)} from the "
            "calldata trades",
        )
    missing = sorted({t.seller for t in trades} - set(seller_index))
    if missing:
        checks.fail(COMMITMENT, f"sellers never registered: {', '.join(missing)}")
        return
    head = settlement_head(trades, seller_index)
    if head != commit.settlement_head:
        checks.fail(
            COMMITMENT,
            f"settlementHead expected {_hex(commit.settlement_head)} found {_hex(head)} from "
            "the calldata trades",
        )


def check_reclear(
    parsed: _Book, trades: Sequence[CommittedTrade], rules: ClearingRules, checks: _Checks
) -> None:
    """The ``reclear`` check: clearing the published set gives exactly the committed trades."""
    result = clear(list(parsed.orders.values()), rules.mechanism, rules.k)
    expected = result.trades
    problems: list[str] = []
    if len(expected) != len(trades):
        problems.append(
            f"trade count expected {len(expected)} found {len(trades)} (volume expected "
            f"{result.volume_wh} Wh found {sum(t.quantity_wh for t in trades)} Wh)"
        )
    owner = {oid: o.participant for oid, o in parsed.orders.items()}
    for i, (want, got) in enumerate(zip(expected, trades, strict=False)):
        fields = (
            ("buy order", want.buy, got.buy_order_id),
            ("sell order", want.sell, got.sell_order_id),
            ("quantity", want.quantity_wh, got.quantity_wh),
            ("price", want.price_per_wh, got.price_per_wh),
            ("buyer", owner.get(want.buy), got.buyer),
            ("seller", owner.get(want.sell), got.seller),
        )
        for name, a, b in fields:
            if a != b:
                problems.append(f"trade {i}: {name} expected {a} found {b}")
    for i, got in enumerate(trades):
        for role, oid in (("buy", got.buy_order_id), ("sell", got.sell_order_id)):
            if oid not in parsed.orders:
                problems.append(f"trade {i}: {role} order {oid} is not in the published set")
    if parsed.fills is not None:
        for oid, fill in sorted(result.fills.items()):
            published = parsed.fills.get(oid, 0)
            if published != fill:
                problems.append(f"order {_short(oid)}: filledWh expected {fill} found {published}")
    checks.fail_all(RECLEAR, problems)


def check_properties(
    parsed: _Book, trades: Sequence[CommittedTrade], rules: ClearingRules, checks: _Checks
) -> None:
    """The ``properties`` check: DESIGN §4 on the committed trades over the published book."""
    claimed = [
        Trade(t.buy_order_id, t.sell_order_id, Wh(t.quantity_wh), PricePerWh(t.price_per_wh))
        for t in trades
    ]
    found = check_clearing_properties(parsed.orders, claimed, rules.mechanism, rules.k)
    checks.fail_all(PROPERTIES, [str(v) for v in found])


def _meter_at(changes: Sequence[MeterChange], participant: str, at: LogPosition) -> str | None:
    meter = None
    for change in changes:
        if change.position >= at:
            break
        if change.participant == participant:
            meter = change.meter
    return meter


def check_settlement(
    commit: CommitRecord,
    trades: Sequence[CommittedTrade],
    state: IntervalState | None,
    ledger: LedgerEvidence,
    checks: _Checks,
) -> str:
    """The ``settlement`` check; returns the interval's settlement status for the report."""
    t = commit.interval
    problems: list[str] = []
    model_trades = [_model_trade(x) for x in trades]
    terms = model.Terms(commit.penalty_price_per_wh, commit.tolerance_bps)

    expected_locks = {
        p: a
        for p, a in model.collateral_locks(model_trades, terms.penalty_price_per_wh).items()
        if a
    }
    found_locks: dict[str, int] = {}
    for lock in ledger.locks:
        if lock.interval == t:
            found_locks[lock.participant] = (
                found_locks.get(lock.participant, 0) + lock.amount_base_units
            )
    for party in sorted(set(expected_locks) | set(found_locks)):
        want, got = expected_locks.get(party, 0), found_locks.get(party, 0)
        if want != got:
            problems.append(f"collateral locked of {party}: expected {want} found {got}")

    exported: dict[str, int] = {}
    domain = ReadingDomain(ledger.chain_id, ledger.market)
    for reading in sorted(
        (r for r in ledger.readings if r.interval == t), key=lambda r: r.position
    ):
        who = reading.participant
        if who in exported:
            problems.append(f"reading of {who} accepted twice")
            continue
        exported[who] = reading.exported_wh
        if reading.position < commit.position:
            problems.append(f"reading of {who} accepted before the commit")
        meter = _meter_at(ledger.meter_changes, who, reading.position)
        if reading.signature is None:
            checks.notes.append(
                f"meter signature of {who}'s reading not re-verified (transaction "
                f"{reading.tx_hash} is not a direct submitReadings call)"
            )
            continue
        signed = SignedReading(
            model.Reading(who, t, reading.imported_wh, reading.exported_wh), *reading.signature
        )
        try:
            signer = recover_meter(signed, domain)
        except Exception as err:  # eth_account raises several types for a bad signature
            problems.append(f"reading of {who}: signature does not recover ({err})")
            continue
        if meter is None or signer != meter:
            problems.append(
                f"reading of {who} (exported {reading.exported_wh} Wh): signed by {signer}, "
                f"the registered meter was {meter}"
            )

    expected = model.settle_range(model_trades, exported, terms)
    events = sorted(
        (e for e in ledger.trade_settlements if e.interval == t), key=lambda e: e.position
    )
    seen: set[int] = set()
    for n, event in enumerate(events):
        k = event.trade_index
        if k in seen:
            problems.append(f"trade {k} settled twice")
            continue
        seen.add(k)
        if k >= len(trades):
            problems.append(f"trade {k} settled, but only {len(trades)} were committed")
            continue
        if k != n:
            problems.append(f"trade {k} settled out of cursor order (position {n})")
        outcome = expected.outcomes[k]
        for name, a, b in (
            ("delivered Wh", outcome.delivered_wh, event.delivered_wh),
            ("payment", outcome.payment, event.payment_base_units),
            ("refund", outcome.refund, event.refund_base_units),
            ("penalty", outcome.penalty, event.penalty_base_units),
        ):
            if a != b:
                problems.append(f"trade {k}: {name} expected {a} found {b}")

    settled_count = len(seen)
    partial = model.settle_range(model_trades, exported, terms, 0, min(settled_count, len(trades)))
    found_released: dict[str, int] = {}
    found_credited: dict[str, int] = {}
    for party_event in ledger.party_settlements:
        if party_event.interval == t:
            p = party_event.participant
            found_released[p] = found_released.get(p, 0) + party_event.released_base_units
            found_credited[p] = found_credited.get(p, 0) + party_event.credited_base_units
    for party in sorted(set(partial.deltas) | set(found_released)):
        delta = partial.deltas.get(party, model.BalanceDelta(0, 0))
        for name, a, b in (
            ("released", delta.released, found_released.get(party, 0)),
            ("credited", delta.credited, found_credited.get(party, 0)),
        ):
            if a != b:
                problems.append(f"{party}: {name} expected {a} found {b}")
    released, credited = sum(found_released.values()), sum(found_credited.values())
    if released != credited:
        problems.append(
            f"settlement moved value: released {released} base units from locked balances, "
            f"credited {credited} to free balances"
        )

    marked = t in ledger.settled_intervals
    if marked and settled_count != len(trades):
        problems.append(f"IntervalSettled emitted after {settled_count} of {len(trades)} trades")
    if state is not None:
        if marked != (state.status == "settled"):
            problems.append(
                f"intervalInfo status {state.status!r} but IntervalSettled "
                f"{'was' if marked else 'was not'} emitted"
            )
        if state.cursor != settled_count and state.status != "none":
            problems.append(
                f"cursor expected {settled_count} (trades settled) found {state.cursor}"
            )
    checks.fail_all(SETTLEMENT, problems)

    if marked:
        return "settled"
    if settled_count:
        return f"{settled_count} of {len(trades)} trades settled"
    if ledger.block_timestamp < commit.deadline:
        return "reading window open"
    return "awaiting settlement"


def audit_interval(
    t: int,
    ledger: LedgerEvidence,
    book: PublishedBook | MissingBook | None,
    rules: ClearingRules,
) -> IntervalReport:
    """Run every interval check on committed interval ``t``."""
    commit = ledger.commits[t]
    state = ledger.states.get(t)
    checks = _Checks(t)
    seller_index = {
        c.participant: c.participant_index
        for c in ledger.meter_changes
        if c.participant_index is not None
    }
    check_commitment(commit, state, seller_index, checks)
    trades = commit.trades or ()
    if commit.trades is None:
        checks.fail(RECLEAR, "not compared: the committed trades cannot be read")

    parsed: _Book | None = None
    if book is None or isinstance(book, MissingBook):
        reason = "no source" if book is None else book.reason
        checks.fail(BOOK_ROOT, f"no published order set to check ({reason})")
        checks.fail(SIGNATURES, f"no published order set to check ({reason})")
    else:
        registered = {c.participant for c in ledger.meter_changes if c.position < commit.position}
        parsed = check_signatures(
            book,
            ledger.order_domain,
            lambda p: _is_registered(p, registered),
            checks,
        )
        check_book_root(book, parsed, commit, state, checks)
        if commit.trades is not None:
            check_reclear(parsed, trades, rules, checks)
            check_properties(parsed, trades, rules, checks)
    if parsed is None and commit.trades is not None:
        checks.fail(RECLEAR, "not re-cleared: no published order set")

    status = check_settlement(commit, trades, state, ledger, checks)
    return IntervalReport(
        interval=t,
        violations=tuple(checks.violations),
        notes=tuple(checks.notes),
        trade_count=len(trades),
        volume_wh=sum(x.quantity_wh for x in trades),
        prices_per_wh=tuple(sorted({x.price_per_wh for x in trades})),
        settlement=status,
    )


def _is_registered(participant: str, registered: set[str]) -> bool:
    try:
        return _address_key(participant) in registered
    except ValueError:
        return False


def check_conservation(ledger: LedgerEvidence, checks: _Checks) -> None:
    """The market-wide ``conservation`` check at the audited block."""
    rebuilt: dict[str, list[int]] = {}

    def entry(p: str) -> list[int]:
        return rebuilt.setdefault(p, [0, 0])

    deposits = withdrawals = 0
    for e in ledger.escrow:
        entry(e.participant)[0] += e.amount_base_units
        if e.amount_base_units >= 0:
            deposits += e.amount_base_units
        else:
            withdrawals -= e.amount_base_units
    for lock in ledger.locks:
        b = entry(lock.participant)
        b[0] -= lock.amount_base_units
        b[1] += lock.amount_base_units
    for s in ledger.party_settlements:
        b = entry(s.participant)
        b[1] -= s.released_base_units
        b[0] += s.credited_base_units
    problems = []
    for p in sorted(set(rebuilt) | set(ledger.balances)):
        free, locked = rebuilt.get(p, [0, 0])
        on_chain = ledger.balances.get(p)
        if on_chain is None:
            problems.append(f"{p}: balance not read at block {ledger.block_number}")
            continue
        if (free, locked) != on_chain:
            problems.append(
                f"{p}: balance rebuilt from events (free {free}, locked {locked}) differs from "
                f"balanceOf (free {on_chain[0]}, locked {on_chain[1]})"
            )
        if free < 0 or locked < 0:
            problems.append(f"{p}: events give a negative balance (free {free}, locked {locked})")
    total = sum(f + lk for f, lk in rebuilt.values())
    if total != ledger.total_escrowed:
        problems.append(
            f"sum of balances rebuilt from events {total} differs from totalEscrowed "
            f"{ledger.total_escrowed}"
        )
    if deposits - withdrawals != ledger.total_escrowed:
        problems.append(
            f"deposits {deposits} - withdrawals {withdrawals} = {deposits - withdrawals} differs "
            f"from totalEscrowed {ledger.total_escrowed}"
        )
    if ledger.token_balance < ledger.total_escrowed:
        problems.append(
            f"token balance of the market {ledger.token_balance} is below totalEscrowed "
            f"{ledger.total_escrowed}"
        )
    checks.fail_all(CONSERVATION, problems)
    if not problems:
        tokens = _decimal_text(currency_from_base_units(ledger.total_escrowed))
        note = (
            f"conservation: {len(rebuilt)} balances rebuilt from events match balanceOf; "
            f"their sum {tokens} tokens = totalEscrowed"
        )
        surplus = ledger.token_balance - ledger.total_escrowed
        note += (
            f"; the token balance is {surplus} base units above it (sent directly, not deposited)"
            if surplus
            else " = token balance"
        )
        checks.notes.append(note)


def check_code(ledger: LedgerEvidence, checks: _Checks) -> None:
    """The market-wide ``code`` check."""
    same, differing = code_matches(ledger.deployed_code, ledger.reference_code)
    if same:
        checks.notes.append("code: the EnergyMarket build this audit mirrors")
        return
    if len(ledger.deployed_code) != len(ledger.reference_code):
        checks.fail(
            CODE,
            f"runtime code is {len(ledger.deployed_code)} bytes, the EnergyMarket build "
            f"{len(ledger.reference_code)} bytes",
        )
    else:
        checks.fail(
            CODE,
            f"runtime code differs from the EnergyMarket build in {differing} "
            f"byte{'s' if differing != 1 else ''} outside immutables",
        )


def audit_evidence(
    ledger: LedgerEvidence,
    books: Mapping[int, PublishedBook | MissingBook],
    rules: ClearingRules,
    from_t: int | None = None,
    to_t: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Audit the committed intervals of ``ledger`` in ``[from_t, to_t]`` against ``books``.

    Pure: every input is a value. Intervals without an entry in ``books`` fail
    ``book_root`` and ``signatures`` (nothing was published to check).
    """
    say = progress or (lambda _msg: None)
    chosen = select_intervals(ledger.commits, from_t, to_t)
    reports = []
    for n, t in enumerate(chosen, 1):
        say(f"checking interval {t} ({n}/{len(chosen)})")
        reports.append(audit_interval(t, ledger, books.get(t), rules))
    market = _Checks(None)
    check_code(ledger, market)
    check_conservation(ledger, market)
    return AuditReport(
        market=ledger.market,
        chain_id=ledger.chain_id,
        block_number=ledger.block_number,
        block_timestamp=ledger.block_timestamp,
        rules=rules,
        intervals=tuple(reports),
        market_violations=tuple(market.violations),
        market_notes=tuple(market.notes),
        range_from=from_t,
        range_to=to_t,
    )


def select_intervals(
    commits: Iterable[int], from_t: int | None = None, to_t: int | None = None
) -> list[int]:
    """The committed intervals in ``[from_t, to_t]`` (either end open when None), ascending."""
    return sorted(
        t for t in commits if (from_t is None or t >= from_t) and (to_t is None or t <= to_t)
    )


def audit_market(
    chain: Any,
    market_address: str,
    order_source: OrderSourceLike,
    from_t: int | None = None,
    to_t: int | None = None,
    *,
    block: int | None = None,
    from_block: int = 0,
    rules: ClearingRules | None = None,
    reader: LedgerReader | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Audit a market: the library entry (the ``wattledger audit`` command calls it too).

    ``chain`` is a :class:`deploy.chain.Chain`, a ``Web3`` or a JSON-RPC URL.
    ``order_source`` is where the published order sets come from: a market API base URL, a
    :class:`market.client.MarketClient`, a directory of ``<t>.json`` files (with an optional
    ``market.json``), a mapping ``{t: GET /intervals/{t}/orders body}``, or an
    :class:`market.audit_sources.OrderSource`. ``block`` pins the audit to a block (default:
    the latest); ``from_block`` is where the event scan starts (the market's deployment
    block, to read fewer logs). ``rules`` overrides the mechanism the source declares.
    ``reader`` replaces the chain reader (tests use it to tamper with the events the audit
    reads). Raises :class:`AuditError` when the evidence cannot be read.
    """
    from market.audit_sources import run_audit  # the I/O edge, imported only when used

    return run_audit(
        chain,
        market_address,
        order_source,
        from_t,
        to_t,
        block=block,
        from_block=from_block,
        rules=rules,
        reader=reader,
        progress=progress,
    )


__all__ = [
    "BOOK_ROOT",
    "CODE",
    "COMMITMENT",
    "CONSERVATION",
    "INTERVAL_CHECKS",
    "MARKET_CHECKS",
    "PROPERTIES",
    "RECLEAR",
    "SETTLEMENT",
    "SIGNATURES",
    "AuditError",
    "AuditReport",
    "ClearingRules",
    "CommitRecord",
    "CommittedTrade",
    "EscrowRecord",
    "IntervalReport",
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
    "Violation",
    "audit_evidence",
    "audit_interval",
    "audit_market",
    "code_matches",
    "orders_digest",
    "parse_published_book",
    "rules_from_market_info",
    "select_intervals",
    "settlement_head",
]
