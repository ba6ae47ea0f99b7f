"""The audit's checks: each compares what was published or recorded with what it must be.

Every function here is pure. A check appends :class:`Violation` s (with the numbers that show
them) and notes to a :class:`CheckLog`; :mod:`audit.report` runs them per interval and on the
whole market and builds the report. What each check compares is listed in :mod:`audit.report`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from audit.evidence import (
    ClearingRules,
    CommitRecord,
    CommittedTrade,
    IntervalState,
    LedgerEvidence,
    LockRecord,
    LogPosition,
    MeterChange,
    PartySettledRecord,
    PublishedBook,
    ReadingRecord,
    TradeSettledRecord,
)
from ledger import eip712 as signing
from ledger import records
from ledger.addresses import checksum_address
from ledger.errors import BadSignature, InputError
from ledger.hashing import keccak
from ledger.merkle import EMPTY_ROOT, MerkleTree
from ledger.units import PricePerWh, Wh, currency_from_base_units
from market.clearing import Trade, clear
from market.orders import Order, Side
from market.properties import check_clearing_properties
from settlement import model

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


def decimal_text(value: Decimal) -> str:
    """A Decimal without trailing zeros, never in exponent form: ``0.25``, ``3``."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


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


class CheckLog:
    """Collects violations and notes of one interval (or of the market)."""

    def __init__(self, interval: int | None) -> None:
        self.interval = interval
        self.violations: list[Violation] = []
        self.notes: list[str] = []

    def fail(self, check: str, message: str) -> None:
        """Record one violation of ``check``."""
        self.violations.append(Violation(check, message, self.interval))

    def fail_all(self, check: str, messages: list[str]) -> None:
        """Record each message as a violation of ``check``, the first MAX_DIFFERENCES only."""
        for message in _capped(messages):
            self.fail(check, message)


def _address_key(address: str) -> str:
    """Addresses compare in checksum form."""
    return checksum_address("0x" + address[2:].lower())


def _word_address(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def orders_digest(trades: Sequence[CommittedTrade]) -> bytes:
    """``IntervalCommitted.ordersDigest``: ``d_{k+1} = keccak256(d_k ‖ buyId_k ‖ sellId_k)``."""
    digest = bytes(32)
    for t in trades:
        digest = keccak(
            digest + bytes.fromhex(t.buy_order_id[2:]) + bytes.fromhex(t.sell_order_id[2:])
        )
    return digest


def settlement_head(trades: Sequence[CommittedTrade], seller_index: Mapping[str, int]) -> bytes:
    """``IntervalCommitted.settlementHead``: the head ``h_0`` of the TradeChain hash chain.

    ``h_n = 0`` and ``h_k = keccak256(abi.encode(buyer, seller, sellerIndex, quantityWh,
    pricePerWh, sellerSoldWh, sellerSoldBeforeWh, h_{k+1}))``; every field is one static word.
    """
    positions = records.seller_positions([_model_trade(t) for t in trades])
    head = bytes(32)
    for k in range(len(trades) - 1, -1, -1):
        t = trades[k]
        head = keccak(
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


def _model_trade(t: CommittedTrade) -> records.Trade:
    return records.Trade(t.buyer, t.seller, t.quantity_wh, t.price_per_wh)


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
class PublishedSet:
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
    checks: CheckLog,
) -> PublishedSet:
    """The ``signatures`` check; returns the well-formed orders for the other checks."""
    t = book.interval
    separator = domain.separator
    out = PublishedSet(fills={})
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
    parsed: PublishedSet,
    commit: CommitRecord,
    state: IntervalState | None,
    checks: CheckLog,
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
    checks: CheckLog,
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
    parsed: PublishedSet, trades: Sequence[CommittedTrade], rules: ClearingRules, checks: CheckLog
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
    parsed: PublishedSet, trades: Sequence[CommittedTrade], rules: ClearingRules, checks: CheckLog
) -> None:
    """The ``properties`` check: DESIGN §4 on the committed trades over the published book."""
    claimed = [
        Trade(t.buy_order_id, t.sell_order_id, Wh(t.quantity_wh), PricePerWh(t.price_per_wh))
        for t in trades
    ]
    found = check_clearing_properties(parsed.orders, claimed, rules.mechanism, rules.k)
    checks.fail_all(PROPERTIES, [str(v) for v in found])


class MeterHistory:
    """Each participant's registrations, meter rotations and deregistrations, in chain order.

    Look-ups bisect one participant's changes, so the audit stays linear in the number of
    readings and orders however long the market has run.
    """

    def __init__(self, changes: Sequence[MeterChange]) -> None:
        self._changes: dict[str, list[MeterChange]] = {}
        for change in sorted(changes, key=lambda c: c.position):
            self._changes.setdefault(change.participant, []).append(change)
        self._positions = {p: [c.position for c in cs] for p, cs in self._changes.items()}
        self.indices: dict[str, int] = {
            c.participant: c.participant_index
            for cs in self._changes.values()
            for c in cs
            if c.participant_index is not None
        }
        """Participant index of every address ever registered (fixed at first registration)."""

    def last_before(self, participant: str, at: LogPosition) -> MeterChange | None:
        """The last change of ``participant`` (any address form) before ``at``, if any."""
        try:
            who = _address_key(participant)
        except ValueError:
            return None
        positions = self._positions.get(who)
        if not positions:
            return None
        i = bisect.bisect_left(positions, at)
        return self._changes[who][i - 1] if i else None

    def meter_at(self, participant: str, at: LogPosition) -> str | None:
        """The meter key registered for ``participant`` just before ``at`` (None if never)."""
        change = self.last_before(participant, at)
        return None if change is None else change.meter

    def registered_at(self, participant: str, at: LogPosition) -> bool:
        """Whether ``participant`` was registered just before ``at``."""
        change = self.last_before(participant, at)
        return change is not None and change.registered


@dataclass
class IntervalEvents:
    """The events of one interval, grouped once so that each check reads only its own."""

    readings: list[ReadingRecord] = field(default_factory=list)
    trade_settlements: list[TradeSettledRecord] = field(default_factory=list)
    party_settlements: list[PartySettledRecord] = field(default_factory=list)
    locks: list[LockRecord] = field(default_factory=list)


def events_by_interval(ledger: LedgerEvidence) -> dict[int, IntervalEvents]:
    """Every interval's events, each list in chain order."""
    grouped: dict[int, IntervalEvents] = {}

    def of(t: int) -> IntervalEvents:
        return grouped.setdefault(t, IntervalEvents())

    for r in sorted(ledger.readings, key=lambda e: e.position):
        of(r.interval).readings.append(r)
    for e in sorted(ledger.trade_settlements, key=lambda e: e.position):
        of(e.interval).trade_settlements.append(e)
    for p in sorted(ledger.party_settlements, key=lambda e: e.position):
        of(p.interval).party_settlements.append(p)
    for lock in sorted(ledger.locks, key=lambda e: e.position):
        of(lock.interval).locks.append(lock)
    return grouped


READING_TYPEHASH = keccak(
    b"MeterReading(address participant,uint64 interval,uint64 importedWh,uint64 exportedWh)"
)


def reading_digest(separator: bytes, reading: ReadingRecord) -> bytes:
    """The EIP-712 digest a meter signs for ``reading`` (the contract's ``readingDigest``)."""
    struct = keccak(
        READING_TYPEHASH
        + _word_address(reading.participant)
        + _word(reading.interval)
        + _word(reading.imported_wh)
        + _word(reading.exported_wh)
    )
    return keccak(b"\x19\x01" + separator + struct)


def reading_signer(separator: bytes, reading: ReadingRecord) -> str:
    """Checksum address that signed ``reading`` (``r``, ``vs`` as EIP-2098); raise if none.

    As OpenZeppelin's ``ECDSA.tryRecover``: ``v = 27 + (vs >> 255)``, ``s`` the low 255 bits,
    and a high ``s`` is refused (:func:`ledger.eip712.recover` checks that).
    """
    assert reading.signature is not None
    r, vs = reading.signature
    raw_vs = int.from_bytes(vs, "big")
    s_value = raw_vs & ((1 << 255) - 1)
    v = 27 + (raw_vs >> 255)
    signature = "0x" + (r + s_value.to_bytes(32, "big") + bytes([v])).hex()
    return _address_key(signing.recover(reading_digest(separator, reading), signature))


def check_settlement(
    commit: CommitRecord,
    trades: Sequence[CommittedTrade],
    state: IntervalState | None,
    events: IntervalEvents,
    ledger: LedgerEvidence,
    meters: MeterHistory,
    checks: CheckLog,
) -> str:
    """The ``settlement`` check; returns the interval's settlement status for the report."""
    t = commit.interval
    problems: list[str] = []
    model_trades = [_model_trade(x) for x in trades]
    terms = records.Terms(commit.penalty_price_per_wh, commit.tolerance_bps)

    expected_locks = {
        p: a
        for p, a in model.collateral_locks(model_trades, terms.penalty_price_per_wh).items()
        if a
    }
    found_locks: dict[str, int] = {}
    for lock in events.locks:
        found_locks[lock.participant] = (
            found_locks.get(lock.participant, 0) + lock.amount_base_units
        )
    for party in sorted(set(expected_locks) | set(found_locks)):
        want, got = expected_locks.get(party, 0), found_locks.get(party, 0)
        if want != got:
            problems.append(f"collateral locked of {party}: expected {want} found {got}")

    exported: dict[str, int] = {}
    separator = ledger.order_domain.separator
    for reading in events.readings:
        who = reading.participant
        if who in exported:
            problems.append(f"reading of {who} accepted twice")
            continue
        exported[who] = reading.exported_wh
        if reading.position < commit.position:
            problems.append(f"reading of {who} accepted before the commit")
        if reading.signature is None:
            checks.notes.append(
                f"meter signature of {who}'s reading not re-verified (transaction "
                f"{reading.tx_hash} is not a direct submitReadings call)"
            )
            continue
        meter = meters.meter_at(who, reading.position)
        try:
            signer = reading_signer(separator, reading)
        except BadSignature as err:
            problems.append(f"reading of {who}: signature does not recover ({err.message})")
            continue
        if signer != meter:
            problems.append(
                f"reading of {who} (exported {reading.exported_wh} Wh): signed by {signer}, "
                f"the registered meter was {meter}"
            )

    expected = model.settle_range(model_trades, exported, terms)
    seen: set[int] = set()
    for n, event in enumerate(events.trade_settlements):
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
    for party_event in events.party_settlements:
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


def check_conservation(ledger: LedgerEvidence, checks: CheckLog) -> None:
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
        tokens = decimal_text(currency_from_base_units(ledger.total_escrowed))
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


def check_code(ledger: LedgerEvidence, checks: CheckLog) -> None:
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
