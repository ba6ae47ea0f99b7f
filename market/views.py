"""What the market serves to read: orders, participants, intervals, books and proofs.

Reads only: nothing here changes the book, the nonces or the store. An interval's order set
and clearing are published from its gate closure on (:mod:`market.gate_closure`); before
that, its depth is that of its open orders.

An interval whose gate closure time has passed with no open order and none being written
(none came, or all were cancelled) is closed and ``empty`` without a stored record
(:meth:`MarketViews.closed_record`): intake refuses it from its gate on, so the answer can
never change, and it is derived per request from the store and the book, never by walking
past intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.merkle import EMPTY_ROOT, leaf_hash
from market.book import OpenBook
from market.clearing import clear
from market.clock import Clock
from market.collateral import Collateral
from market.gate_closure import GateSchedule, book_tree, clearing_document
from market.http.errors import IntervalNotClosed, OrderNotFound, OrderNotInBook
from market.signed_messages import parse_address
from market.store import (
    CLOSED,
    EMPTY,
    EXCLUDED,
    OPEN,
    PUBLISHED_STATUSES,
    IntervalRecord,
    OrderStore,
    StoredOrder,
)


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
    meter: str | None
    """The registered meter key (lower-case ``0x``), None when never registered."""
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


class MarketViews:
    """Answers the market's reads from the store and the open book."""

    def __init__(
        self,
        store: OrderStore,
        book: OpenBook,
        collateral: Collateral,
        schedule: GateSchedule,
        clock: Clock,
        mechanism: str = "uniform",
        k: tuple[int, int] = (1, 2),
    ) -> None:
        self.store = store
        self.book = book
        self.collateral = collateral
        self.schedule = schedule
        self.clock = clock
        self.mechanism = mechanism
        self.k = k

    def closed_record(self, interval: int) -> IntervalRecord | None:
        """The gate closure record of ``interval``: the stored one, or, for an interval whose
        gate closure time has passed with no open order and none being written, an ``empty``
        one (closed at its gate closure time, empty set and root, no trade, no commit); None
        while the gate is open or the interval still waits for gate closure."""
        record = self.store.get_interval(interval)
        if record is not None:
            return record
        gate_closure_at = self.schedule.gate_closure_at(interval)
        if self.clock.now() < gate_closure_at or not self.book.is_idle(interval):
            return None
        result = clear([], mechanism=self.mechanism, k=self.k)
        return IntervalRecord(
            interval=interval,
            state=EMPTY,
            closed_at=gate_closure_at,
            book_root="0x" + EMPTY_ROOT.hex(),
            clearing=clearing_document(result, [], [], self.collateral.terms.penalty_price_per_wh),
            commit_tx=None,
            commit_block=None,
        )

    def get_order(self, order_id: str) -> StoredOrder:
        """The order with id ``order_id`` (its EIP-712 hash); OrderNotFound if none."""
        order = self.book.open.get(order_id.lower()) or self.store.get_order(order_id.lower())
        if order is None:
            raise OrderNotFound(f"no order {order_id}")
        return order

    def participant(self, address: str) -> ParticipantView:
        """Balances read from the chain now, and what open orders reserve."""
        key = parse_address(address, "address")
        record, balance = self.collateral.read_standing(key)
        reserved, open_orders = self.book.participant_orders(key)
        meter = str(record.meter).lower()
        return ParticipantView(
            address=key,
            registered=record.registered,
            meter=None if int(meter, 16) == 0 else meter,
            free_base_units=balance.free,
            locked_base_units=balance.locked,
            reserved_base_units=reserved,
            open_orders=open_orders,
        )

    def participant_orders(
        self, address: str, status: str | None = None, interval: int | None = None
    ) -> list[StoredOrder]:
        """Every order of ``address`` (any status unless filtered) in arrival order."""
        return self.store.orders_of(parse_address(address, "address"), status, interval)

    def interval(self, interval: int) -> IntervalView:
        """Gate closure state of ``interval``: ``open``, ``closing``, ``frozen``, ``empty``
        or ``committed``."""
        record = self.closed_record(interval)
        if record is not None:
            state = record.state
        elif interval in self.book.closing:
            state = "closing"
        else:
            state = OPEN
        return IntervalView(interval, state, self.schedule.gate_closure_at(interval), record)

    def book_orders(self, interval: int) -> list[StoredOrder]:
        """The orders behind ``interval``'s depth: open ones, or the frozen book once closed."""
        if self.closed_record(interval) is not None:
            return self.store.interval_orders(interval, CLOSED)
        return self.book.interval_orders(interval)

    def published_orders(self, interval: int) -> tuple[IntervalRecord, list[StoredOrder]]:
        """The frozen signed order set of a closed interval; IntervalNotClosed before."""
        record = self.closed_record(interval)
        if record is None:
            raise IntervalNotClosed(
                f"interval {interval}: its gate closes at "
                f"{self.schedule.gate_closure_at(interval)}; the order set is published then"
            )
        return record, self.store.published_orders(interval)

    def published_cancels(self, interval: int) -> list[StoredOrder]:
        """The orders of a closed interval cancelled before its gate closed (each with its
        accepted cancel and receipts), in the order the cancels arrived; IntervalNotClosed
        before the gate closes."""
        self.published_orders(interval)
        return self.store.cancelled_orders(interval)

    def published_refusals(self, interval: int) -> list[tuple[StoredOrder, str]]:
        """The orders of a closed interval left out at gate closure, with the reason stored
        by the gate closure; IntervalNotClosed before the gate closes."""
        record, _ = self.published_orders(interval)
        reasons = (record.clearing or {}).get("excludedReasons") or {}
        return [
            (o, str(reasons.get(o.id) or "left out at gate closure"))
            for o in self.store.interval_orders(interval, EXCLUDED)
        ]

    def clearing(self, interval: int) -> IntervalRecord:
        """The stored clearing of a closed interval; IntervalNotClosed before."""
        record = self.closed_record(interval)
        if record is None:
            raise IntervalNotClosed(
                f"interval {interval}: not cleared yet; its gate closes at "
                f"{self.schedule.gate_closure_at(interval)}"
            )
        return record

    def proof(self, order_id: str) -> Proof:
        """The Merkle inclusion proof of an order in its interval's committed book."""
        order = self.get_order(order_id)
        record = self.closed_record(order.interval)
        if record is None:
            raise IntervalNotClosed(
                f"interval {order.interval}: its gate has not closed, so it has no book root yet"
            )
        if order.status not in PUBLISHED_STATUSES:
            raise OrderNotInBook(f"order {order_id} is {order.status}, not in the book")
        members = self.store.published_orders(order.interval)
        tree = book_tree(members)
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
        return len(self.book.open)


__all__ = ["IntervalView", "MarketViews", "ParticipantView", "Proof"]
