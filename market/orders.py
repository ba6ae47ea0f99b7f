"""Orders, one at a time (:class:`Order`) or as columns (:class:`OrderBook`), and their bounds.

An order offers to buy (a *bid*) or sell (an *ask*) up to ``quantity_wh`` of energy in one
delivery interval, at a limit price in token base units per Wh (DESIGN §3). ``seq`` is the
arrival sequence used to break price ties (DESIGN §4); ``id`` breaks the remaining ties.

Bounds
------
The clearing engine works on numpy ``int64`` columns and sums quantities in them. The bounds
below are chosen so that no such sum can overflow, whatever the book:

* ``MAX_BOOK_ORDERS * MAX_QUANTITY_WH = 2**23 * (2**40 - 1) < 2**63``, so every cumulative
  quantity of a book fits in ``int64``;
* prices are only compared and sorted in ``int64``, never summed there; payments
  (``quantity_wh * price``, up to about ``2**103``) are computed with Python ints.

``MAX_QUANTITY_WH`` is 1.1 TWh, far above any order for one interval. ``MAX_PRICE_PER_WH``
is about 9,223 currency units per kWh, far above the price caps of wholesale power markets.
Prices start at 1 base unit per Wh: a zero-price trade would move no money, and the
on-chain contract refuses it. A seller willing to take any price asks 1
(10**-15 currency/kWh).

Order ids are 1 to 128 characters from ``A-Z a-z 0-9 _ . : -`` (hashes, UUIDs and the like).
Keeping them ASCII makes their order (the last tie-break) the same in Python, in numpy and in
any other language, and keeps them safe in CSV and JSON without quoting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ledger.errors import InputError
from ledger.units import PricePerWh, Wh

MIN_QUANTITY_WH = 1
"""Smallest order quantity in Wh (orders are divisible down to 1 Wh)."""
MAX_QUANTITY_WH = 2**40 - 1
"""Largest order quantity in Wh (about 1.1 TWh); see the module docstring for why."""
MIN_PRICE_PER_WH = 1
"""Smallest limit price in base units per Wh; zero-price trades are refused on-chain."""
MAX_PRICE_PER_WH = 2**63 - 1
"""Largest limit price in base units per Wh (fits int64; the chain allows uint128)."""
MIN_SEQ = 0
"""Smallest arrival sequence number."""
MAX_SEQ = 2**63 - 1
"""Largest arrival sequence number."""
MAX_BOOK_ORDERS = 2**23
"""Most orders in one book (8,388,608); with MAX_QUANTITY_WH, sums fit int64."""
MAX_ID_LENGTH = 128
"""Longest order id in characters."""

ID_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
"""What an order id must match in full."""

_ID_CHARS = re.compile(r"[A-Za-z0-9_.:\-\n]*")

I64 = NDArray[np.int64]


class Side(StrEnum):
    """Which way an order trades: ``buy`` (a bid) or ``sell`` (an ask)."""

    BUY = "buy"
    SELL = "sell"


def check_id(value: object, where: str) -> str:
    """Return ``value`` if it is a valid order id, else raise InputError naming ``where``."""
    if not isinstance(value, str):
        raise InputError(f"{where}, field 'id': expected a string, got {type(value).__name__}")
    if not ID_PATTERN.fullmatch(value):
        raise InputError(
            f"{where}, field 'id': {value!r} is not a valid order id",
            hint="An id is 1 to 128 characters from A-Z a-z 0-9 _ . : -",
        )
    return value


def check_int(value: object, field: str, low: int, high: int, where: str) -> int:
    """Return ``value`` if it is an int in ``[low, high]``, else raise InputError.

    The message names ``where`` (row or order) and ``field``. ``bool`` is not an int here.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(
            f"{where}, field {field!r}: expected an integer, got {type(value).__name__} {value!r}"
        )
    number = int(value)
    if number < low:
        kind = "negative" if number < 0 else "too small"
        raise InputError(f"{where}, field {field!r}: {number} is {kind}; the minimum is {low}")
    if number > high:
        raise InputError(f"{where}, field {field!r}: {number} is above the maximum {high}")
    return number


def check_side(value: object, where: str) -> Side:
    """Return ``value`` as a :class:`Side` (``buy``/``sell``, any case), or raise InputError."""
    if isinstance(value, Side):
        return value
    if isinstance(value, str) and value.lower() in ("buy", "sell"):
        return Side(value.lower())
    raise InputError(f"{where}, field 'side': {value!r} is not a side; use 'buy' or 'sell'")


@dataclass(frozen=True, slots=True)
class Order:
    """One limit order for one interval; every field is checked on construction.

    ``quantity_wh`` is in ``[MIN_QUANTITY_WH, MAX_QUANTITY_WH]``, ``price_per_wh`` in
    ``[MIN_PRICE_PER_WH, MAX_PRICE_PER_WH]`` and ``seq`` in ``[MIN_SEQ, MAX_SEQ]``.
    ``participant`` (e.g. an address) is carried along and not used by clearing.
    """

    id: str
    side: Side
    quantity_wh: Wh
    price_per_wh: PricePerWh
    seq: int
    participant: str | None = None

    def __post_init__(self) -> None:
        where = f"order {self.id!r}" if isinstance(self.id, str) else "order"
        check_id(self.id, where)
        object.__setattr__(self, "side", check_side(self.side, where))
        check_int(self.quantity_wh, "quantity_wh", MIN_QUANTITY_WH, MAX_QUANTITY_WH, where)
        check_int(self.price_per_wh, "price_per_wh", MIN_PRICE_PER_WH, MAX_PRICE_PER_WH, where)
        check_int(self.seq, "seq", MIN_SEQ, MAX_SEQ, where)
        if self.participant is not None and not isinstance(self.participant, str):
            raise InputError(f"{where}, field 'participant': expected a string or None")


def _frozen(array: NDArray[Any]) -> NDArray[Any]:
    array.flags.writeable = False
    return array


def _int_column(values: ArrayLike, field: str, low: int, high: int, ids: Sequence[str]) -> I64:
    """Check one integer column and return it as a read-only int64 array (a copy)."""

    def scan(items: Sequence[object]) -> None:
        """Raise for the first value that is not an int in bounds (names row and field)."""
        for row, value in enumerate(items):
            check_int(value, field, low, high, f"row {row} (id {ids[row]!r})")

    if isinstance(values, np.ndarray):
        array = values
    else:
        # Python values: never let numpy guess a dtype (it would turn 2**63 into a float,
        # or truncate 1.5 when told int64).
        items = list(cast(Iterable[object], values))
        if not all(type(v) is int for v in items):
            scan(items)  # np.integer values pass the scan and convert below
        try:
            array = np.array(items, dtype=np.int64)
        except OverflowError:
            scan(items)
            raise
    if array.size == 0 and len(ids) == 0:
        return _frozen(np.zeros(0, dtype=np.int64))
    if array.ndim != 1 or len(array) != len(ids):
        raise InputError(
            f"field {field!r}: expected {len(ids)} values in one dimension, got shape {array.shape}"
        )
    if array.dtype.kind not in "iu":
        scan(array.tolist())  # floats, bools, strings or objects: name the first
        raise InputError(f"field {field!r}: expected integers, got dtype {array.dtype}")
    if array.dtype.kind == "u":
        too_big = array > np.uint64(high)
        if too_big.any():
            row = int(np.argmax(too_big))
            check_int(int(array[row]), field, low, high, f"row {row} (id {ids[row]!r})")
    column = array.astype(np.int64, copy=True)
    bad = (column < low) | (column > high)
    if bad.any():
        row = int(np.argmax(bad))
        check_int(int(column[row]), field, low, high, f"row {row} (id {ids[row]!r})")
    return _frozen(column)


def _check_ids(ids: Sequence[object]) -> tuple[str, ...]:
    """Return ``ids`` as a tuple after checking each is valid and all are distinct.

    The common case is checked in bulk (one regex over the joined ids); a failure falls back
    to a per-row scan so that the message names the row.
    """
    result = tuple(ids)
    try:
        joined = "\n".join(result)  # type: ignore[arg-type]  # non-str is caught below
        ok = (
            joined.count("\n") == len(result) - 1
            and _ID_CHARS.fullmatch(joined) is not None
            and all(
                0 < len(i) <= MAX_ID_LENGTH  # type: ignore[arg-type]
                for i in result
            )
        )
    except TypeError:
        ok = False
    if not ok:
        for row, value in enumerate(result):
            check_id(value, f"row {row}")
    strings: tuple[str, ...] = result  # type: ignore[assignment]  # all checked above
    if len(set(strings)) != len(strings):
        first: dict[str, int] = {}
        for row, value in enumerate(strings):
            if value in first:
                raise InputError(
                    f"row {row}, field 'id': duplicate id {value!r} (first at row {first[value]})"
                )
            first[value] = row
    return strings


@dataclass(frozen=True, eq=False, init=False)
class OrderBook:
    """A book of orders as columns, for books of any size up to ``MAX_BOOK_ORDERS``.

    Row ``i`` is one order: ``ids[i]``, ``is_buy[i]`` (True for a bid), ``quantity_wh[i]``,
    ``price_per_wh[i]``, ``seq[i]`` and, if given, ``participants[i]``. The arrays are
    read-only int64/bool copies of what was passed in, checked against the module bounds;
    bad data raises InputError naming the row and the field. ``seq`` defaults to the row
    index.
    """

    ids: tuple[str, ...]
    is_buy: NDArray[np.bool_]
    quantity_wh: I64
    price_per_wh: I64
    seq: I64
    participants: tuple[str | None, ...] | None

    def __init__(
        self,
        ids: Sequence[str],
        is_buy: ArrayLike,
        quantity_wh: ArrayLike,
        price_per_wh: ArrayLike,
        seq: ArrayLike | None = None,
        participants: Sequence[str | None] | None = None,
    ) -> None:
        if isinstance(ids, str | bytes):
            raise InputError("field 'id': expected a sequence of ids, got one string")
        checked_ids = _check_ids(ids)
        n = len(checked_ids)
        if n > MAX_BOOK_ORDERS:
            raise InputError(f"a book holds at most {MAX_BOOK_ORDERS} orders, got {n}")
        sides = np.asarray(is_buy)
        if n == 0 and sides.size == 0:
            sides = np.zeros(0, dtype=np.bool_)
        if sides.dtype != np.bool_ or sides.ndim != 1 or len(sides) != n:
            raise InputError(
                f"field 'is_buy': expected {n} booleans (True for buy), got dtype "
                f"{sides.dtype} and shape {sides.shape}"
            )
        if seq is None:
            seq = np.arange(n, dtype=np.int64)
        parts: tuple[str | None, ...] | None = None
        if participants is not None:
            parts = tuple(participants)
            if len(parts) != n:
                raise InputError(f"field 'participant': expected {n} values, got {len(parts)}")
            for row, part in enumerate(parts):
                if part is not None and not isinstance(part, str):
                    raise InputError(f"row {row}, field 'participant': expected a string or None")
        set_ = object.__setattr__
        set_(self, "ids", checked_ids)
        set_(self, "is_buy", _frozen(sides.copy()))
        set_(
            self,
            "quantity_wh",
            _int_column(quantity_wh, "quantity_wh", MIN_QUANTITY_WH, MAX_QUANTITY_WH, checked_ids),
        )
        set_(
            self,
            "price_per_wh",
            _int_column(
                price_per_wh, "price_per_wh", MIN_PRICE_PER_WH, MAX_PRICE_PER_WH, checked_ids
            ),
        )
        set_(self, "seq", _int_column(seq, "seq", MIN_SEQ, MAX_SEQ, checked_ids))
        set_(self, "participants", parts)

    @classmethod
    def from_orders(cls, orders: Sequence[Order]) -> OrderBook:
        """Build a book from :class:`Order` objects (rows in the given order)."""
        for row, order in enumerate(orders):
            if not isinstance(order, Order):
                raise InputError(f"row {row}: expected an Order, got {type(order).__name__}")
        participants = [o.participant for o in orders]
        return cls(
            ids=[o.id for o in orders],
            is_buy=np.array([o.side is Side.BUY for o in orders], dtype=np.bool_),
            quantity_wh=np.array([o.quantity_wh for o in orders], dtype=np.int64),
            price_per_wh=np.array([o.price_per_wh for o in orders], dtype=np.int64),
            seq=np.array([o.seq for o in orders], dtype=np.int64),
            participants=None if all(p is None for p in participants) else participants,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def order(self, row: int) -> Order:
        """Row ``row`` as an :class:`Order`."""
        return Order(
            id=self.ids[row],
            side=Side.BUY if self.is_buy[row] else Side.SELL,
            quantity_wh=Wh(int(self.quantity_wh[row])),
            price_per_wh=PricePerWh(int(self.price_per_wh[row])),
            seq=int(self.seq[row]),
            participant=None if self.participants is None else self.participants[row],
        )

    def __iter__(self) -> Iterator[Order]:
        return (self.order(row) for row in range(len(self)))


EXPIRED = "expired"
"""The status of an order whose expiry had passed at its interval's gate closure."""
DROPPED = "dropped"
"""The status of an order whose participant defaulted when its interval was committed
(:mod:`market.defaulters`)."""


def is_expired(expiry: int, closed_at: int) -> bool:
    """Whether an order with ``expiry`` is dead at its interval's gate closure at
    ``closed_at`` (Unix seconds): its expiry is before it. An order that expires at the gate
    closure itself is valid until the gate closes and clears. An expired order stays in the
    published set (and under the ``bookRoot``) but does not enter the clearing; the audit
    applies the same rule to the published ``closedAt``."""
    return expiry < closed_at
