"""The market service: order intake, collateral check, gate closure, clearing and commit.

:class:`MarketService` is the one place where the market's rules for signed orders live; the
HTTP API (``market.http.app``) is a thin layer over it, and a simulation can drive it in-process
with a :class:`~market.clock.SimulatedClock`.

Intake (``POST /orders``)
    An order is the EIP-712 ``Order`` message of :mod:`ledger.eip712` plus its signature.
    It is accepted when, in this order of checks: every field is in range; the signature
    recovers to ``participant``; the participant is registered on-chain; ``expiry`` has not
    passed; the interval's gate is still open and the interval is at most
    ``max_ahead_intervals`` ahead of the current one; the participant has not used the nonce;
    and the participant's collateral covers it. ``expiry`` bounds when the signed message may
    be *submitted* (like an ERC-2612 permit deadline): an accepted order stays in the book
    until its gate closes or it is cancelled.

Nonces
    Each signer's nonces are single-use and unordered (any unused ``uint64``), shared by its
    orders and cancels. Unordered nonces let a participant, or a VPP signing for many, submit
    concurrently without sequencing requests; a replayed message always reuses its nonce.

Collateral (DESIGN §5)
    ``commitInterval`` locks ``quantity * price`` of a buyer's free balance and
    ``quantity * penaltyPrice`` of a seller's. An order is accepted only when the
    participant's on-chain free balance minus what all its open orders (every interval) could
    lock still covers its own worst-case lock: ``quantity * limit`` for a bid,
    ``quantity * penaltyPrice`` for an ask. A fill never locks more than that (a buyer never
    pays above its limit), so the commit cannot revert for collateral. Free balances are
    cached: read from the chain the first time a participant is seen and whenever a check
    would fail (a fresh deposit is then seen), and lowered by what each commit locked. The
    hot path never calls the chain. Because a participant can withdraw at any time, gate
    closure re-reads the free balances of the interval's participants and leaves out
    (``excluded``) the orders of any participant who could no longer cover them all.

Gate closure of interval ``t`` (``gate_closure_seconds`` before ``t`` starts)
    Freeze ``t``'s open orders (intake for ``t`` stops first and waits for orders already
    being written), drop uncovered ones, build the book root (:mod:`ledger.merkle`), clear
    the book (:func:`market.clearing.clear`), store all of it durably (from then on
    ``GET /intervals/{t}/orders`` publishes the set with signatures), then call
    ``commitInterval(t, bookRoot, trades)``. A failed or interrupted commit leaves ``t``
    ``frozen``; :meth:`MarketService.tick` and :meth:`MarketService.recover` finish it, and
    nothing is committed twice (the ledger's committed root is checked first).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger import eip712 as signing
from ledger.addresses import checksum_address
from ledger.errors import RequestError
from ledger.merkle import MerkleTree, leaf_hash
from ledger.records import Terms, Trade
from market.clearing import clear
from market.clock import Clock
from market.http.errors import (
    BatchRejected,
    BatchTooLarge,
    InsufficientCollateral,
    IntervalClosed,
    IntervalNotClosed,
    IntervalTooFar,
    InvalidPrice,
    InvalidQuantity,
    InvalidRequest,
    InvalidSide,
    NonceUsed,
    NotOperator,
    NotYourOrder,
    OrderExpired,
    OrderNotFound,
    OrderNotInBook,
    OrderNotOpen,
    OutOfBounds,
    SelfCross,
    ServiceUnavailable,
    SignerMismatch,
    UnregisteredParticipant,
)
from market.ledger_port import Ledger, LedgerCallFailed, LedgerInfo
from market.orders import MAX_PRICE_PER_WH, MAX_QUANTITY_WH, Order, Side
from market.store import (
    CLOSED,
    COMMITTED,
    EMPTY,
    FROZEN,
    OPEN,
    IntervalRecord,
    OrderStore,
    StoredOrder,
    StoreError,
)

log = logging.getLogger(__name__)

UINT64_MAX = 2**64 - 1
UNREGISTERED_CACHE_SECONDS = 2.0
"""How long a "not registered" answer from the chain is trusted (monotonic seconds)."""


@dataclass(frozen=True)
class MarketConfig:
    """Market rules that are the service's to choose (the chain fixes the rest).

    ``gate_closure_seconds``: how long before an interval starts its gate closes.
    ``max_ahead_intervals``: how many intervals past the current one accept orders.
    ``mechanism`` and ``k``: passed to :func:`market.clearing.clear`.
    ``max_batch_orders``: most orders in one ``POST /orders:batch``.
    """

    gate_closure_seconds: int = 300
    max_ahead_intervals: int = 96
    mechanism: str = "uniform"
    k: tuple[int, int] = (1, 2)
    max_batch_orders: int = 1000


@dataclass(frozen=True, slots=True)
class SignedMessage:
    """An EIP-712 message (as JSON values) with its 65-byte hex signature."""

    message: Mapping[str, Any]
    signature: str


@dataclass
class Prepared:
    """Orders that passed every check and hold their reservations, not yet stored.

    Finish with :meth:`MarketService.commit_prepared` (store, then make them open) or
    :meth:`MarketService.abort_prepared` (release everything).
    """

    orders: list[StoredOrder]
    locks: list[int]
    done: bool = False


@dataclass(frozen=True, slots=True)
class IntervalView:
    """What the service knows about one interval's gate closure."""

    interval: int
    state: str
    gate_closure_at: int
    record: IntervalRecord | None


@dataclass(frozen=True, slots=True)
class ParticipantView:
    """A participant's balances and the collateral its open orders reserve."""

    address: str
    registered: bool
    free_base_units: int
    locked_base_units: int
    reserved_base_units: int
    open_orders: list[StoredOrder]


@dataclass(frozen=True, slots=True)
class Proof:
    """An order's inclusion proof in its interval's book."""

    order_id: str
    interval: int
    leaf: bytes
    book_root: bytes
    proof: list[bytes]


def _uint(value: Any, field_name: str, bits: int, error: type[RequestError]) -> int:
    """Parse a JSON uint (int or string of digits); ``error`` for a non-integer."""
    kind = type(value)
    if kind is int:
        number = value
    elif kind is str and value.isdigit() and value.isascii() and len(value) <= 80:
        number = int(value)  # the common case, decided without the general path below
    else:
        number = value
        if isinstance(number, str) and 0 < len(number) <= 80 and number.isascii():
            text = number.strip()
            if text.isdigit() or (text.startswith("-") and text[1:].isdigit()):
                number = int(text)
        if isinstance(number, bool) or not isinstance(number, int):
            raise error(f"{field_name}: expected an unsigned integer, got {value!r}")
    if number < 0:
        raise error(f"{field_name}: {number} is negative")
    if number >> bits:
        raise OutOfBounds(f"{field_name}: {number} does not fit uint{bits}")
    return int(number)


_ADDRESS = re.compile(r"0[xX][0-9a-fA-F]{40}")


def _address(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or _ADDRESS.fullmatch(value) is None:
        raise InvalidRequest(f"{field_name}: expected a 0x-prefixed 20-byte hex address")
    return "0x" + value[2:].lower()


@dataclass(frozen=True, slots=True)
class ParsedOrder:
    """An order message with every field checked and converted."""

    participant: str
    interval: int
    side: int
    quantity_wh: int
    price_per_wh: int
    nonce: int
    expiry: int

    def as_message(self) -> dict[str, Any]:
        """The message in the form the digest is computed from."""
        return {
            "participant": self.participant,
            "interval": self.interval,
            "side": self.side,
            "quantityWh": self.quantity_wh,
            "pricePerWh": self.price_per_wh,
            "nonce": self.nonce,
            "expiry": self.expiry,
        }


def parse_order(message: Mapping[str, Any]) -> ParsedOrder:
    """Check an ``Order`` message's fields and bounds; raise the matching RequestError."""
    _require_fields(message, "Order", "order")
    quantity = _uint(message["quantityWh"], "quantityWh", 64, InvalidQuantity)
    if quantity == 0:
        raise InvalidQuantity("quantityWh: must be at least 1 Wh")
    if quantity > MAX_QUANTITY_WH:
        raise OutOfBounds(f"quantityWh: {quantity} is above the maximum {MAX_QUANTITY_WH}")
    price = _uint(message["pricePerWh"], "pricePerWh", 128, InvalidPrice)
    if price == 0:
        raise InvalidPrice("pricePerWh: must be at least 1 base unit per Wh")
    if price > MAX_PRICE_PER_WH:
        raise OutOfBounds(f"pricePerWh: {price} is above the maximum {MAX_PRICE_PER_WH}")
    side = _uint(message["side"], "side", 8, InvalidSide)
    if side not in (signing.SIDE_BUY, signing.SIDE_SELL):
        raise InvalidSide(f"side: {side} is not 0 (buy) or 1 (sell)")
    return ParsedOrder(
        participant=_address(message["participant"], "participant"),
        interval=_uint(message["interval"], "interval", 64, InvalidRequest),
        side=side,
        quantity_wh=quantity,
        price_per_wh=price,
        nonce=_uint(message["nonce"], "nonce", 64, InvalidRequest),
        expiry=_uint(message["expiry"], "expiry", 64, InvalidRequest),
    )


_FIELD_NAMES = {
    primary_type: (tuple(f["name"] for f in fields), frozenset(f["name"] for f in fields))
    for primary_type, fields in signing.TYPES.items()
}


def _require_fields(message: Mapping[str, Any], primary_type: str, what: str) -> None:
    if not isinstance(message, Mapping):
        raise InvalidRequest(f"{what}: expected a JSON object")
    ordered, names = _FIELD_NAMES[primary_type]
    if message.keys() == names:
        return
    missing = [n for n in ordered if n not in message]
    extra = [k for k in message if k not in names]
    raise InvalidRequest(
        f"{what}: missing fields {missing}, unknown fields {extra}; expected exactly "
        f"{list(ordered)}"
    )


def order_message_json(order: StoredOrder) -> dict[str, Any]:
    """An order's signed message in its canonical JSON form (big uints as strings)."""
    return {
        "participant": checksum_address(order.participant),
        "interval": order.interval,
        "side": order.side,
        "quantityWh": order.quantity_wh,
        "pricePerWh": str(order.price_per_wh),
        "nonce": str(order.nonce),
        "expiry": str(order.expiry),
    }


class _OwnOrders:
    """One participant's open and reserved orders in one interval: price by id for each
    side, and the best price of each side (highest bid, lowest ask) kept at hand, so the
    self-cross check costs the same however many orders the participant has.

    The best is found again (one pass over that side) only after the best order itself
    left; adding never needs a pass.
    """

    __slots__ = ("_best", "_prices", "_stale")

    def __init__(self) -> None:
        self._prices: tuple[dict[str, int], dict[str, int]] = ({}, {})
        # Per side: (price, order id) of the best order, or None when the side is empty;
        # stale when the best order left and the best must be found again.
        self._best: list[tuple[int, str] | None] = [None, None]
        self._stale = [False, False]

    def add(self, side: int, order_id: str, price_per_wh: int) -> None:
        self._prices[side][order_id] = price_per_wh
        if self._stale[side]:
            return
        best = self._best[side]
        if best is None or _better(side, price_per_wh, best[0]):
            self._best[side] = (price_per_wh, order_id)

    def drop(self, side: int, order_id: str) -> None:
        if self._prices[side].pop(order_id, None) is None:
            return
        best = self._best[side]
        if best is not None and best[1] == order_id:
            self._stale[side] = True

    def best(self, side: int) -> tuple[int, str] | None:
        """``(price, order id)`` of the highest own bid (side 0) or lowest own ask (side 1)."""
        if self._stale[side]:
            prices = self._prices[side]
            pick = max if side == signing.SIDE_BUY else min
            self._best[side] = (
                pick((price, order_id) for order_id, price in prices.items()) if prices else None
            )
            self._stale[side] = False
        return self._best[side]

    def empty(self) -> bool:
        return not self._prices[0] and not self._prices[1]


def _better(side: int, price_per_wh: int, than: int) -> bool:
    """Whether ``price_per_wh`` is a better own price for ``side`` than ``than``."""
    return price_per_wh > than if side == signing.SIDE_BUY else price_per_wh < than


def _lock_of(side: int, quantity_wh: int, price_per_wh: int, penalty_price_per_wh: int) -> int:
    """Worst-case collateral an order can lock at commit (DESIGN §5), in base units."""
    if side == signing.SIDE_BUY:
        return quantity_wh * price_per_wh
    return quantity_wh * penalty_price_per_wh


class MarketService:
    """Order intake, collateral, gate closure and commit for one market deployment.

    Thread-safe: intake, cancels and gate closure may run concurrently (the API takes
    orders on its event loop while a background thread closes gates).
    """

    def __init__(
        self,
        store: OrderStore,
        ledger: Ledger,
        clock: Clock,
        config: MarketConfig | None = None,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.clock = clock
        self.config = config or MarketConfig()
        self.info: LedgerInfo = ledger.info()
        self.timing = ledger.timing()
        self._terms: Terms = ledger.terms()
        self.domain = signing.Domain(
            self.info.chain_id,
            self.info.market_address,
            name=self.info.eip712_name,
            version=self.info.eip712_version,
        )
        self._separator = self.domain.separator
        self._operator = self.info.operator.lower()
        store.bind_deployment(self.info.chain_id, self.info.market_address)

        self._lock = threading.RLock()
        self._drained = threading.Condition(self._lock)
        self._open: dict[str, StoredOrder] = {}
        self._by_interval: dict[int, dict[str, StoredOrder]] = {}
        self._reserved: dict[str, int] = {}
        self._lock_of_order: dict[str, int] = {}
        # Open and reserved orders by (participant, interval), for self-cross prevention.
        self._own: dict[tuple[str, int], _OwnOrders] = {}
        self._free: dict[str, int] = {}
        self._registered: set[str] = set()
        self._unregistered_until: dict[str, float] = {}
        self._nonces: set[tuple[str, int]] = set()
        self._seq = 0
        self._closed: set[int] = set()
        self._closing: set[int] = set()
        self._pending: dict[int, int] = {}
        self._close_lock = threading.Lock()
        self._load()

    # -- start-up ------------------------------------------------------------------------

    def _load(self) -> None:
        """Rebuild the in-memory book, nonces and sequence from the store."""
        self._seq = self.store.max_seq()
        self._nonces = set(self.store.used_nonces())
        for state in (FROZEN, COMMITTED, EMPTY):
            self._closed.update(self.store.intervals_in_state(state))
        for order in self.store.open_orders():
            self._add_open(order, self._order_lock(order))

    def recover(self) -> list[int]:
        """Finish the commit of every interval left ``frozen``; return those committed."""
        done = []
        for interval in self.store.intervals_in_state(FROZEN):
            if self._commit_frozen(interval):
                done.append(interval)
        return done

    # -- time ----------------------------------------------------------------------------

    def gate_closure_at(self, interval: int) -> int:
        """Unix time at which ``interval``'s gate closes."""
        return self.timing.start(interval) - self.config.gate_closure_seconds

    def current_interval(self) -> int:
        """The interval being delivered now."""
        return self.timing.current(self.clock.now())

    def terms(self) -> Terms:
        """The terms last read from the chain."""
        return self._terms

    # -- intake --------------------------------------------------------------------------

    def _order_lock(self, order: StoredOrder) -> int:
        return _lock_of(
            order.side, order.quantity_wh, order.price_per_wh, self._terms.penalty_price_per_wh
        )

    def _add_own(self, order: StoredOrder) -> None:
        key = (order.participant, order.interval)
        own = self._own.get(key)
        if own is None:
            own = self._own[key] = _OwnOrders()
        own.add(order.side, order.id, order.price_per_wh)

    def _drop_own(self, order: StoredOrder) -> None:
        key = (order.participant, order.interval)
        own = self._own.get(key)
        if own is not None:
            own.drop(order.side, order.id)
            if own.empty():
                del self._own[key]

    def _check_self_cross(self, parsed: ParsedOrder) -> None:
        """Refuse an order that would match the participant's own opposite order.

        A bid at price b and an ask at price a of one participant in one interval can only
        be paired by the clearing walk when b >= a; refusing exactly those keeps every
        committed trade between two different parties (the contract's ``SelfTrade``). Only
        the best own order of the other side needs comparing: the highest own bid, or the
        lowest own ask.
        """
        own = self._own.get((parsed.participant, parsed.interval))
        if own is None:
            return
        other = own.best(1 - parsed.side)
        if other is None:
            return
        other_price, other_id = other
        if parsed.side == signing.SIDE_BUY:
            bid, ask = parsed.price_per_wh, other_price
        else:
            bid, ask = other_price, parsed.price_per_wh
        if bid >= ask:
            raise SelfCross(
                f"interval {parsed.interval}: this {'bid' if parsed.side == 0 else 'ask'} "
                f"at {parsed.price_per_wh} crosses your own open order {other_id} at "
                f"{other_price} (bid {bid} >= ask {ask})",
                hint="Cancel your own opposite order first, or price the orders apart.",
            )

    def _add_open(self, order: StoredOrder, lock: int) -> None:
        self._add_own(order)
        self._open[order.id] = order
        self._by_interval.setdefault(order.interval, {})[order.id] = order
        self._lock_of_order[order.id] = lock
        self._reserved[order.participant] = self._reserved.get(order.participant, 0) + lock

    def _remove_open(self, order_id: str) -> StoredOrder:
        order = self._open.pop(order_id)
        self._drop_own(order)
        book = self._by_interval.get(order.interval)
        if book is not None:
            book.pop(order_id, None)
            if not book:
                del self._by_interval[order.interval]
        lock = self._lock_of_order.pop(order_id)
        self._reserved[order.participant] -= lock
        return order

    def unknown_participants(self, signed: Sequence[SignedMessage]) -> set[str]:
        """Participants of ``signed`` whose registration or free balance has not been read
        from the chain yet (intake would read them, a blocking call, on first sight)."""
        unknown = set()
        for item in signed:
            participant = item.message.get("participant")
            if isinstance(participant, str) and _ADDRESS.fullmatch(participant):
                key = "0x" + participant[2:].lower()
                if key not in self._registered or key not in self._free:
                    unknown.add(key)
        return unknown

    def look_up(self, participants: set[str]) -> None:
        """Read the registration and free balance of ``participants`` from the chain.

        For a worker thread, so that the API's event loop does not wait for the chain on a
        participant's first order. A failure is not raised here: intake meets it again.
        """
        for participant in participants:
            try:
                self._check_registered(participant)
                self._free_balance(participant)
            except (RequestError, ServiceUnavailable):
                continue

    def _check_registered(self, participant: str) -> None:
        if participant in self._registered:
            return
        until = self._unregistered_until.get(participant)
        if until is not None and time.monotonic() < until:
            raise UnregisteredParticipant(f"{participant} is not a registered participant")
        if self._call_ledger(self.ledger.is_registered, participant):
            with self._lock:
                self._registered.add(participant)
                self._unregistered_until.pop(participant, None)
            return
        with self._lock:
            if len(self._unregistered_until) > 100_000:
                self._unregistered_until.clear()
            self._unregistered_until[participant] = time.monotonic() + UNREGISTERED_CACHE_SECONDS
        raise UnregisteredParticipant(
            f"{participant} is not a registered participant",
            hint="Ask the market's registrar to register the address and its meter key.",
        )

    def _check_window(self, interval: int, now: int) -> None:
        if interval in self._closed or interval in self._closing:
            raise IntervalClosed(f"interval {interval}: its gate has closed")
        if now >= self.gate_closure_at(interval):
            raise IntervalClosed(
                f"interval {interval}: its gate closed at {self.gate_closure_at(interval)}"
            )
        latest = self.timing.current(now) + self.config.max_ahead_intervals
        if interval > latest:
            raise IntervalTooFar(
                f"interval {interval} is more than {self.config.max_ahead_intervals} "
                f"intervals ahead; the latest open interval is {latest}"
            )

    def _free_balance(self, participant: str, refresh: bool = False) -> int:
        if refresh or participant not in self._free:
            balances = self._call_ledger(self.ledger.balances, participant)
            with self._lock:
                self._free[participant] = balances.free
        return self._free[participant]

    def _authenticate(self, signed: SignedMessage) -> tuple[ParsedOrder, bytes]:
        """Field checks and signature recovery (no shared state; runs outside the lock)."""
        parsed = parse_order(signed.message)
        order_hash = signing.order_digest(
            self._separator,
            parsed.participant,
            parsed.interval,
            parsed.side,
            parsed.quantity_wh,
            parsed.price_per_wh,
            parsed.nonce,
            parsed.expiry,
        )
        signer = signing.recover(order_hash, signed.signature)
        if signer != parsed.participant:
            raise SignerMismatch(
                f"the signature is by {signer}, not by participant {parsed.participant}",
                hint="Sign with the participant's key, over the domain GET /market publishes.",
            )
        return parsed, order_hash

    def prepare_orders(self, signed: Sequence[SignedMessage]) -> Prepared:
        """Check orders and reserve their nonces, sequence numbers and collateral.

        All or nothing: a single bad order raises its own error; in a batch of more than one,
        :class:`BatchRejected` lists every bad order by index. Nothing is reserved then.
        """
        if len(signed) > self.config.max_batch_orders:
            raise BatchTooLarge(
                f"{len(signed)} orders in one batch; at most {self.config.max_batch_orders}"
            )
        if not signed:
            raise InvalidRequest("a batch needs at least one order")
        now = self.clock.now()
        checked: list[tuple[int, ParsedOrder, bytes] | tuple[int, RequestError]] = []
        for index, item in enumerate(signed):
            try:
                parsed, order_hash = self._authenticate(item)
                self._check_registered(parsed.participant)
                if parsed.expiry <= now:
                    raise OrderExpired(f"expiry {parsed.expiry} is not after now ({now})")
                checked.append((index, parsed, order_hash))
            except RequestError as err:
                checked.append((index, err))
        for entry in checked:
            if len(entry) == 3 and entry[1].participant not in self._free:
                self._free_balance(entry[1].participant)
        prepared = Prepared(orders=[], locks=[])
        errors: list[tuple[int, RequestError]] = []
        with self._lock:
            seq_before = self._seq
            try:
                for entry in checked:
                    if len(entry) == 2:
                        errors.append(entry)
                        continue
                    index, parsed, order_hash = entry
                    try:
                        order, lock = self._reserve(
                            parsed, order_hash, now, signed[index].signature
                        )
                    except RequestError as err:
                        errors.append((index, err))
                        continue
                    prepared.orders.append(order)
                    prepared.locks.append(lock)
            except BaseException:
                self._release(prepared)
                raise
            if errors:
                self._release(prepared)
                self._seq = seq_before  # a refused request leaves no trace, not even a gap
        if errors:
            if len(signed) == 1:
                raise errors[0][1]
            first = errors[0][1]
            raise BatchRejected(
                f"{len(errors)} of {len(signed)} orders refused; none was stored "
                f"(first: order {errors[0][0]}: {first.message})",
                extra={
                    "errors": [
                        {"index": i, "code": e.code, "status": e.status, "detail": e.message}
                        for i, e in errors
                    ]
                },
            ).with_status(first.status)
        return prepared

    def _reserve(
        self, parsed: ParsedOrder, order_hash: bytes, now: int, signature: str
    ) -> tuple[StoredOrder, int]:
        """Stateful checks and reservation of one order; caller holds the lock."""
        self._check_window(parsed.interval, now)
        participant = parsed.participant
        if (participant, parsed.nonce) in self._nonces:
            raise NonceUsed(f"nonce {parsed.nonce} of {participant} was already used")
        self._check_self_cross(parsed)
        lock = _lock_of(
            parsed.side, parsed.quantity_wh, parsed.price_per_wh, self._terms.penalty_price_per_wh
        )
        reserved = self._reserved.get(participant, 0)
        free = self._free_balance(participant)
        if free - reserved < lock:
            free = self._free_balance(participant, refresh=True)
            if free - reserved < lock:
                raise InsufficientCollateral(
                    f"{participant}: this order can lock {lock} base units, but the free "
                    f"balance {free} minus {reserved} reserved by open orders leaves "
                    f"{max(free - reserved, 0)}",
                    hint="Deposit more tokens on the market contract, or cancel open orders.",
                )
        self._seq += 1
        order = StoredOrder(
            id="0x" + order_hash.hex(),
            seq=self._seq,
            participant=participant,
            interval=parsed.interval,
            side=parsed.side,
            quantity_wh=parsed.quantity_wh,
            price_per_wh=parsed.price_per_wh,
            nonce=parsed.nonce,
            expiry=parsed.expiry,
            signature=signature.lower(),
            received_at=now,
        )
        self._nonces.add((participant, parsed.nonce))
        self._add_own(order)
        self._reserved[participant] = reserved + lock
        self._pending[parsed.interval] = self._pending.get(parsed.interval, 0) + 1
        return order, lock

    def _release(self, prepared: Prepared) -> None:
        """Undo the reservations of ``prepared``; caller holds the lock."""
        for order, lock in zip(prepared.orders, prepared.locks, strict=True):
            self._nonces.discard((order.participant, order.nonce))
            self._drop_own(order)
            self._reserved[order.participant] -= lock
            self._pending[order.interval] -= 1
        prepared.done = True
        self._drained.notify_all()

    def commit_prepared(self, batches: Sequence[Prepared]) -> None:
        """Store the orders of ``batches`` in one durable transaction and open them.

        On a store failure every batch is released and :class:`ServiceUnavailable` raised.
        """
        rows = [o for p in batches for o in p.orders]
        try:
            self.store.insert_orders(rows)
        except StoreError as err:
            self.abort_prepared(batches)
            raise ServiceUnavailable(f"the order store failed: {err.message}") from None
        # _add_open without its _add_own and reservation (both made by _reserve): the
        # reservation becomes the open order's lock, the own-order entry stays as it is.
        open_orders, by_interval, lock_of_order = self._open, self._by_interval, self._lock_of_order
        pending = self._pending
        with self._lock:
            for prepared in batches:
                for order, lock in zip(prepared.orders, prepared.locks, strict=True):
                    order_id = order.id
                    open_orders[order_id] = order
                    book = by_interval.get(order.interval)
                    if book is None:
                        book = by_interval[order.interval] = {}
                    book[order_id] = order
                    lock_of_order[order_id] = lock
                    pending[order.interval] -= 1
                prepared.done = True
            self._drained.notify_all()

    def abort_prepared(self, batches: Sequence[Prepared]) -> None:
        """Release the reservations of prepared batches that will not be stored."""
        with self._lock:
            for prepared in batches:
                if not prepared.done:
                    self._release(prepared)

    def submit_orders(self, signed: Sequence[SignedMessage]) -> list[StoredOrder]:
        """Check, store durably and open ``signed`` orders (all or nothing)."""
        prepared = self.prepare_orders(signed)
        self.commit_prepared([prepared])
        return prepared.orders

    def submit_order(self, signed: SignedMessage) -> StoredOrder:
        """Check, store durably and open one signed order."""
        return self.submit_orders([signed])[0]

    # -- cancel --------------------------------------------------------------------------

    def cancel_order(self, order_id: str, signed: SignedMessage) -> StoredOrder:
        """Cancel an open order with its participant's signed ``Cancel`` message."""
        message = signed.message
        _require_fields(message, "Cancel", "cancel")
        participant = _address(message["participant"], "participant")
        order_hash = signing.parse_bytes32(message["orderHash"], "orderHash").hex()
        nonce = _uint(message["nonce"], "nonce", 64, InvalidRequest)
        expiry = _uint(message["expiry"], "expiry", 64, InvalidRequest)
        if "0x" + order_hash != order_id.lower():
            raise InvalidRequest("orderHash in the cancel differs from the order id in the path")
        digest = signing.digest(
            self._separator,
            "Cancel",
            {
                "participant": participant,
                "orderHash": "0x" + order_hash,
                "nonce": nonce,
                "expiry": expiry,
            },
        )
        signer = signing.recover(digest, signed.signature)
        if signer != participant:
            raise SignerMismatch(f"the signature is by {signer}, not by {participant}")
        now = self.clock.now()
        if expiry <= now:
            raise OrderExpired(f"expiry {expiry} is not after now ({now})")
        with self._lock:
            order = self._open.get(order_id.lower())
            if order is None:
                stored = self.store.get_order(order_id.lower())
                if stored is None:
                    raise OrderNotFound(f"no order {order_id}")
                if stored.participant != participant:
                    raise NotYourOrder(f"order {order_id} belongs to another participant")
                raise OrderNotOpen(f"order {order_id} is {stored.status}")
            if order.participant != participant:
                raise NotYourOrder(f"order {order_id} belongs to another participant")
            if order.interval in self._closing or order.interval in self._closed:
                raise IntervalClosed(f"interval {order.interval}: its gate has closed")
            if (participant, nonce) in self._nonces:
                raise NonceUsed(f"nonce {nonce} of {participant} was already used")
            record = {
                "cancel": _cancel_json(message, participant, nonce, expiry),
                "signature": signed.signature.lower(),
                "at": now,
            }
            try:
                self.store.cancel_order(order.id, participant, nonce, record)
            except StoreError as err:
                raise ServiceUnavailable(f"the order store failed: {err.message}") from None
            self._nonces.add((participant, nonce))
            self._remove_open(order.id)
            return order._replace(status="cancelled", cancel=record)

    # -- reading -------------------------------------------------------------------------

    def get_order(self, order_id: str) -> StoredOrder:
        """The order with id ``order_id`` (its EIP-712 hash); OrderNotFound if none."""
        order = self._open.get(order_id.lower()) or self.store.get_order(order_id.lower())
        if order is None:
            raise OrderNotFound(f"no order {order_id}")
        return order

    def participant(self, address: str) -> ParticipantView:
        """Balances read from the chain now, and what open orders reserve."""
        key = _address(address, "address")
        registered = self._call_ledger(self.ledger.is_registered, key)
        balances = self._call_ledger(self.ledger.balances, key)
        with self._lock:
            self._free[key] = balances.free
            if registered:
                self._registered.add(key)
            reserved = self._reserved.get(key, 0)
            open_orders = sorted(
                (o for o in self._open.values() if o.participant == key), key=lambda o: o.seq
            )
        return ParticipantView(
            address=key,
            registered=registered,
            free_base_units=balances.free,
            locked_base_units=balances.locked,
            reserved_base_units=reserved,
            open_orders=open_orders,
        )

    def participant_orders(
        self, address: str, status: str | None = None, interval: int | None = None
    ) -> list[StoredOrder]:
        """Every order of ``address`` (any status unless filtered) in arrival order."""
        return self.store.orders_of(_address(address, "address"), status, interval)

    def interval(self, interval: int) -> IntervalView:
        """Gate closure state of ``interval``: ``open``, ``closing``, ``frozen``, ``empty``
        or ``committed``."""
        record = self.store.get_interval(interval)
        if record is not None:
            state = record.state
        elif interval in self._closing:
            state = "closing"
        else:
            state = OPEN
        return IntervalView(interval, state, self.gate_closure_at(interval), record)

    def book_orders(self, interval: int) -> list[StoredOrder]:
        """The orders behind ``interval``'s depth: open ones, or the frozen book once closed."""
        if self.store.get_interval(interval) is not None:
            return self.store.interval_orders(interval, CLOSED)
        with self._lock:
            return list(self._by_interval.get(interval, {}).values())

    def published_orders(self, interval: int) -> tuple[IntervalRecord, list[StoredOrder]]:
        """The frozen signed order set of a closed interval; IntervalNotClosed before."""
        record = self.store.get_interval(interval)
        if record is None:
            raise IntervalNotClosed(
                f"interval {interval}: its gate closes at {self.gate_closure_at(interval)}; "
                "the order set is published then"
            )
        return record, self.store.interval_orders(interval, CLOSED)

    def clearing(self, interval: int) -> IntervalRecord:
        """The stored clearing of a closed interval; IntervalNotClosed before."""
        record = self.store.get_interval(interval)
        if record is None:
            raise IntervalNotClosed(
                f"interval {interval}: not cleared yet; its gate closes at "
                f"{self.gate_closure_at(interval)}"
            )
        return record

    def proof(self, order_id: str) -> Proof:
        """The Merkle inclusion proof of an order in its interval's committed book."""
        order = self.get_order(order_id)
        record = self.store.get_interval(order.interval)
        if record is None:
            raise IntervalNotClosed(
                f"interval {order.interval}: its gate has not closed, so it has no book root yet"
            )
        if order.status != CLOSED:
            raise OrderNotInBook(f"order {order_id} is {order.status}, not in the book")
        members = self.store.interval_orders(order.interval, CLOSED)
        tree = MerkleTree.of([bytes.fromhex(o.id[2:]) for o in members])
        order_hash = bytes.fromhex(order.id[2:])
        return Proof(
            order_id=order.id,
            interval=order.interval,
            leaf=leaf_hash(order_hash),
            book_root=tree.root,
            proof=tree.proof(order_hash),
        )

    def open_order_count(self) -> int:
        """Number of open orders."""
        return len(self._open)

    # -- gate closure --------------------------------------------------------------------

    def due_intervals(self) -> list[int]:
        """Intervals with open orders whose gate closure time has come."""
        now = self.clock.now()
        with self._lock:
            candidates = list(self._by_interval)
        return sorted(t for t in candidates if self.gate_closure_at(t) <= now)

    def tick(self) -> list[int]:
        """Close every due interval and retry unfinished commits; return intervals closed."""
        closed = []
        for interval in self.due_intervals():
            self.close_gate(interval)
            closed.append(interval)
        for interval in self.store.intervals_in_state(FROZEN):
            self._commit_frozen(interval)
        return closed

    def close_gate(self, interval: int, *, early: bool = False) -> IntervalRecord:
        """Freeze, publish, clear and commit ``interval``; return its stored record.

        Before the gate closure time this raises IntervalNotClosed unless ``early`` (an
        operator action). Closing an interval that is already closed returns its record.
        Raises ServiceUnavailable when the store fails; a failed on-chain commit leaves the
        interval ``frozen`` and is retried by :meth:`tick`.
        """
        with self._close_lock:
            existing = self.store.get_interval(interval)
            if existing is not None:
                return existing
            now = self.clock.now()
            if not early and now < self.gate_closure_at(interval):
                raise IntervalNotClosed(
                    f"interval {interval}: its gate closes at {self.gate_closure_at(interval)}, "
                    f"it is {now}"
                )
            with self._lock:
                self._closing.add(interval)
                while self._pending.get(interval, 0) > 0:
                    self._drained.wait()
                orders = sorted(self._by_interval.get(interval, {}).values(), key=lambda o: o.seq)
            try:
                self._freeze(interval, now, orders)
            finally:
                with self._lock:
                    self._closing.discard(interval)
            self._commit_frozen(interval)
            record = self.store.get_interval(interval)
            assert record is not None
            return record

    def _freeze(self, interval: int, now: int, orders: list[StoredOrder]) -> None:
        self._terms = self._call_ledger(self.ledger.terms)
        penalty = self._terms.penalty_price_per_wh
        needs: dict[str, int] = {}
        for order in orders:
            lock = _lock_of(order.side, order.quantity_wh, order.price_per_wh, penalty)
            needs[order.participant] = needs.get(order.participant, 0) + lock
        read = self._call_ledger(self.ledger.balances_of, list(needs))
        fresh = {p: read[p].free for p in needs}
        short = {p for p, need in needs.items() if fresh[p] < need}
        # A deregistered party would make the whole commit revert; leave its orders out too.
        short |= {p for p in needs if not self._call_ledger(self.ledger.is_registered, p)}
        included = [o for o in orders if o.participant not in short]
        excluded = [o for o in orders if o.participant in short]
        if excluded:
            log.warning(
                "interval %d: left out %d orders of %d participants no longer registered or "
                "whose free balance no longer covers them",
                interval,
                len(excluded),
                len(short),
            )
        tree = MerkleTree.of([bytes.fromhex(o.id[2:]) for o in included])
        result = clear(
            [
                Order(
                    id=o.id,
                    side=Side.BUY if o.side == signing.SIDE_BUY else Side.SELL,
                    quantity_wh=o.quantity_wh,  # type: ignore[arg-type]
                    price_per_wh=o.price_per_wh,  # type: ignore[arg-type]
                    seq=o.seq,
                    participant=o.participant,
                )
                for o in included
            ],
            mechanism=self.config.mechanism,
            k=self.config.k,
        )
        owner = {o.id: o.participant for o in included}
        clearing = {
            "mechanism": result.mechanism,
            "k": list(result.k) if result.k else None,
            "price": None if result.price is None else str(result.price),
            "volumeWh": int(result.volume_wh),
            "trades": [
                {
                    "buyOrder": t.buy,
                    "sellOrder": t.sell,
                    "buyer": owner[t.buy],
                    "seller": owner[t.sell],
                    "quantityWh": int(t.quantity_wh),
                    "pricePerWh": str(t.price_per_wh),
                }
                for t in result.trades
            ],
            "penaltyPricePerWh": str(penalty),
            "excluded": [o.id for o in excluded],
        }
        fills = {k: int(v) for k, v in result.fills.items()}
        try:
            self.store.freeze_interval(
                interval,
                now,
                "0x" + tree.root.hex(),
                [o.id for o in included],
                [o.id for o in excluded],
                clearing,
                fills,
            )
        except StoreError as err:
            raise ServiceUnavailable(f"the order store failed: {err.message}") from None
        with self._lock:
            self._closed.add(interval)
            for order in orders:
                self._remove_open(order.id)
            self._free.update(fresh)
            self._registered -= short

    def _commit_frozen(self, interval: int) -> bool:
        """Commit a frozen interval on-chain unless it already is; True when committed."""
        record = self.store.get_interval(interval)
        if record is None or record.state != FROZEN or record.clearing is None:
            return False
        root = bytes.fromhex(record.book_root[2:])
        try:
            onchain = self.ledger.committed_root(interval)
            if onchain is not None:
                if onchain != root:
                    log.error(
                        "interval %d: on-chain book root %s differs from the stored %s",
                        interval,
                        onchain.hex(),
                        root.hex(),
                    )
                    return False
                self.store.record_commit(interval, None, None)
                return True
            trades = [
                Trade(
                    buyer=checksum_address(t["buyer"]),
                    seller=checksum_address(t["seller"]),
                    quantity_wh=int(t["quantityWh"]),
                    price_per_wh=int(t["pricePerWh"]),
                    buy_order_id=bytes.fromhex(t["buyOrder"][2:]),
                    sell_order_id=bytes.fromhex(t["sellOrder"][2:]),
                )
                for t in record.clearing["trades"]
            ]
            receipt = self.ledger.commit_interval(interval, root, trades)
        except LedgerCallFailed as err:
            log.error("interval %d: commit failed, will retry: %s", interval, err)
            return False
        self.store.record_commit(interval, receipt.tx_hash, receipt.block_number)
        penalty = int(record.clearing.get("penaltyPricePerWh", self._terms.penalty_price_per_wh))
        with self._lock:
            for trade in trades:
                buyer, seller = trade.buyer.lower(), trade.seller.lower()
                if buyer in self._free:
                    self._free[buyer] -= trade.quantity_wh * trade.price_per_wh
                if seller in self._free:
                    self._free[seller] -= trade.quantity_wh * penalty
        return True

    # -- operator --------------------------------------------------------------------------

    def operator_close_gate(self, interval: int, signed: SignedMessage) -> IntervalRecord:
        """Close ``interval`` now, on a ``CloseGate`` message signed by the operator key."""
        message = signed.message
        _require_fields(message, "CloseGate", "close")
        t = _uint(message["interval"], "interval", 64, InvalidRequest)
        nonce = _uint(message["nonce"], "nonce", 64, InvalidRequest)
        expiry = _uint(message["expiry"], "expiry", 64, InvalidRequest)
        if t != interval:
            raise InvalidRequest("interval in the message differs from the path")
        digest = signing.digest(
            self._separator, "CloseGate", {"interval": t, "nonce": nonce, "expiry": expiry}
        )
        signer = signing.recover(digest, signed.signature)
        if signer != self._operator:
            raise NotOperator(f"{signer} is not the market operator")
        now = self.clock.now()
        if expiry <= now:
            raise OrderExpired(f"expiry {expiry} is not after now ({now})")
        with self._lock:
            if (signer, nonce) in self._nonces:
                raise NonceUsed(f"nonce {nonce} of the operator was already used")
            try:
                self.store.use_nonce(signer, nonce)
            except StoreError as err:
                raise ServiceUnavailable(f"the order store failed: {err.message}") from None
            self._nonces.add((signer, nonce))
        return self.close_gate(interval, early=True)

    # -- edges -----------------------------------------------------------------------------

    def _call_ledger(self, method: Any, *args: Any) -> Any:
        try:
            return method(*args)
        except LedgerCallFailed as err:
            raise ServiceUnavailable(f"the chain failed: {err.message}") from None


def _cancel_json(
    message: Mapping[str, Any], participant: str, nonce: int, expiry: int
) -> dict[str, Any]:
    return {
        "participant": checksum_address(participant),
        "orderHash": str(message["orderHash"]).lower(),
        "nonce": str(nonce),
        "expiry": str(expiry),
    }


__all__ = [
    "IntervalView",
    "MarketConfig",
    "MarketService",
    "ParsedOrder",
    "ParticipantView",
    "Prepared",
    "Proof",
    "SignedMessage",
    "order_message_json",
    "parse_order",
]
