"""The open book: every accepted order whose interval's gate has not closed yet, in memory.

The order store (:mod:`market.store`) is the durable record; :class:`OpenBook` is the hot
copy intake and gate closure work on. Besides the open orders it keeps what intake reserves
for orders it has checked but not stored yet (:class:`market.intake.Prepared`): each
participant's reserved collateral, each participant's own orders per interval (for the
self-cross check), and per interval how many reserved orders are still being written, which
gate closure waits for before it freezes the interval.

Not locked by itself: the market's one lock (``lock``, shared with intake and collateral)
guards it. Methods that change it expect the caller to hold the lock; the readers take it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ledger import eip712 as signing
from market.http.errors import SelfCross
from market.store import StoredOrder


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

    def count(self) -> int:
        """How many own orders (both sides)."""
        return len(self._prices[0]) + len(self._prices[1])


def _better(side: int, price_per_wh: int, than: int) -> bool:
    """Whether ``price_per_wh`` is a better own price for ``side`` than ``than``."""
    return price_per_wh > than if side == signing.SIDE_BUY else price_per_wh < than


class OpenBook:
    """Open and reserved orders, their collateral reservations, and the intervals closing.

    ``open``: open orders by id. ``reserved``: per participant, the collateral (base units)
    its open and reserved orders could lock. ``closing`` and ``closed``: intervals whose
    gate is being closed or has closed; intake refuses orders and cancels for both.
    """

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self.drained = threading.Condition(lock)
        """Notified whenever reserved orders were stored or released."""
        self.open: dict[str, StoredOrder] = {}
        self.reserved: dict[str, int] = {}
        self.closing: set[int] = set()
        self.closed: set[int] = set()
        self._by_interval: dict[int, dict[str, StoredOrder]] = {}
        self._lock_of_order: dict[str, int] = {}
        # Open and reserved orders by (participant, interval), for self-cross prevention.
        self._own: dict[tuple[str, int], _OwnOrders] = {}
        # Reserved orders not yet stored or released, per interval.
        self._pending: dict[int, int] = {}

    # -- changes (the caller holds the lock) ------------------------------------------------

    def add_open(self, order: StoredOrder, lock_base_units: int) -> None:
        """Open a stored ``order`` that locks ``lock_base_units`` at most (at start-up)."""
        self._add_own(order)
        self.open[order.id] = order
        self._by_interval.setdefault(order.interval, {})[order.id] = order
        self._lock_of_order[order.id] = lock_base_units
        self.reserved[order.participant] = self.reserved.get(order.participant, 0) + lock_base_units

    def remove_open(self, order_id: str) -> StoredOrder:
        """Take an open order out of the book and release its reservation."""
        order = self.open.pop(order_id)
        self._drop_own(order)
        book = self._by_interval.get(order.interval)
        if book is not None:
            book.pop(order_id, None)
            if not book:
                del self._by_interval[order.interval]
        lock = self._lock_of_order.pop(order_id)
        self.reserved[order.participant] -= lock
        return order

    def reserve(self, order: StoredOrder, lock_base_units: int) -> None:
        """Hold ``lock_base_units`` and ``order``'s place for self-cross checks while it is
        written; gate closure of its interval waits until :meth:`open_reserved` or
        :meth:`release`."""
        self._add_own(order)
        self.reserved[order.participant] = self.reserved.get(order.participant, 0) + lock_base_units
        self._pending[order.interval] = self._pending.get(order.interval, 0) + 1

    def release(self, order: StoredOrder, lock_base_units: int) -> None:
        """Undo :meth:`reserve` of an order that will not be stored (notify ``drained``
        after)."""
        self._drop_own(order)
        self.reserved[order.participant] -= lock_base_units
        self._pending[order.interval] -= 1

    def open_reserved(self, orders: Sequence[StoredOrder], locks: Sequence[int]) -> None:
        """Open reserved ``orders``, now stored (notify ``drained`` after).

        :meth:`add_open` without its own-order entry and reservation (both made by
        :meth:`reserve`): the reservation becomes the open order's lock.
        """
        open_orders, by_interval, lock_of_order = self.open, self._by_interval, self._lock_of_order
        pending = self._pending
        for order, lock in zip(orders, locks, strict=True):
            order_id = order.id
            open_orders[order_id] = order
            book = by_interval.get(order.interval)
            if book is None:
                book = by_interval[order.interval] = {}
            book[order_id] = order
            lock_of_order[order_id] = lock
            pending[order.interval] -= 1

    def check_self_cross(
        self, participant: str, interval: int, side: int, price_per_wh: int
    ) -> None:
        """Refuse an order that would match the participant's own opposite order.

        A bid at price b and an ask at price a of one participant in one interval can only
        be paired by the clearing walk when b >= a; refusing exactly those keeps every
        committed trade between two different parties (the contract's ``SelfTrade``). Only
        the best own order of the other side needs comparing: the highest own bid, or the
        lowest own ask.
        """
        own = self._own.get((participant, interval))
        if own is None:
            return
        other = own.best(1 - side)
        if other is None:
            return
        other_price, other_id = other
        if side == signing.SIDE_BUY:
            bid, ask = price_per_wh, other_price
        else:
            bid, ask = other_price, price_per_wh
        if bid >= ask:
            raise SelfCross(
                f"interval {interval}: this {'bid' if side == 0 else 'ask'} "
                f"at {price_per_wh} crosses your own open order {other_id} at "
                f"{other_price} (bid {bid} >= ask {ask})",
                hint="Cancel your own opposite order first, or price the orders apart.",
            )

    def own_order_count(self, participant: str, interval: int) -> int:
        """How many open and reserved orders ``participant`` has in ``interval``. Caller
        holds the lock."""
        own = self._own.get((participant, interval))
        return 0 if own is None else own.count()

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

    # -- gate closure -----------------------------------------------------------------------

    def freeze(self, interval: int) -> list[StoredOrder]:
        """Mark ``interval`` closing, wait until none of its reserved orders is still being
        written, and return its open orders in arrival order."""
        with self._lock:
            self.closing.add(interval)
            while self._pending.get(interval, 0) > 0:
                self.drained.wait()
            return sorted(self._by_interval.get(interval, {}).values(), key=lambda o: o.seq)

    def close(self, interval: int, orders: Sequence[StoredOrder]) -> None:
        """``interval`` has closed with ``orders`` (its frozen open orders): out of the book.
        Caller holds the lock."""
        self.closed.add(interval)
        for order in orders:
            self.remove_open(order.id)

    # -- reading ----------------------------------------------------------------------------

    def intervals(self) -> list[int]:
        """Intervals with open orders."""
        with self._lock:
            return list(self._by_interval)

    def is_idle(self, interval: int) -> bool:
        """Whether ``interval`` has no open order, none being written and no gate closing:
        once its gate closure time has passed, nothing can change that."""
        with self._lock:
            return (
                interval not in self._by_interval
                and not self._pending.get(interval, 0)
                and interval not in self.closing
            )

    def interval_orders(self, interval: int) -> list[StoredOrder]:
        """Open orders of ``interval`` (in the order they were opened)."""
        with self._lock:
            return list(self._by_interval.get(interval, {}).values())

    def participant_orders(self, participant: str) -> tuple[int, list[StoredOrder]]:
        """Collateral ``participant``'s open and reserved orders could lock (base units),
        and its open orders in arrival order."""
        with self._lock:
            reserved = self.reserved.get(participant, 0)
            orders = sorted(
                (o for o in self.open.values() if o.participant == participant),
                key=lambda o: o.seq,
            )
        return reserved, orders


__all__ = ["OpenBook"]
