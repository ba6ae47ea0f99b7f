"""The clearing engine: an exact, deterministic double auction for one interval (DESIGN §4).

``clear(orders, mechanism="uniform", k=(1, 2))`` is pure: it takes a book and returns a frozen
:class:`ClearingResult`; it does no I/O. All arithmetic is on integers, so there is nothing to
round except where DESIGN §4 divides (the k-price, see :func:`k_price`).

Priority (DESIGN §4)
    Bids by price, highest first; asks by price, lowest first. Ties by ``seq`` (arrival),
    then by order id. Orders are divisible down to 1 Wh.

Matching (DESIGN §4)
    A two-pointer walk over both priority lists trades while the best remaining bid price is
    at least the best remaining ask price. Here the walk is computed, not stepped:

    * with ``CB``/``CA`` the cumulative quantities of bids/asks in priority order and
      ``S(p)`` the ask quantity priced at or below ``p``, bid ``i`` gets energy iff
      ``S(price_i) > CB[i] - q_i`` (some ask it accepts is left when its turn comes). The
      predicate holds for a prefix of the bids, so the number of bids that trade is found by
      bisection (``O(log n)`` vectorised look-ups, no loop over orders);
    * the cleared volume is ``V = min(CB[m], S(price_m))`` for the marginal (last trading)
      bid ``m``;
    * the trade pairs are the segments between the merged breakpoints of ``CB`` and ``CA``
      clipped at ``V``: each segment lies within one bid and one ask, found by
      ``searchsorted``. This is exactly the sequence the two-pointer walk produces, in the
      same order.

    ``V`` is the largest volume that can trade at one price acceptable to every trading order:
    ``V = max_p min(D(p), S(p))`` with ``D(p)`` the bid quantity priced at or above ``p``
    (see ``tests/test_clearing_properties.py`` for the argument and the oracle). It is not the
    largest volume of an unrestricted matching where each pair may have its own price: a
    low bid can be paired with a cheap ask only if the high bid takes a dearer one, which no
    uniform price supports. Highest-bid-with-lowest-ask is also the allocation with the
    largest gains from trade.

``uniform`` (the default): the k-double auction
    ``L = max(marginal ask price, price of the best bid with unfilled quantity)`` and
    ``U = min(marginal bid price, price of the best ask with unfilled quantity)``, ignoring
    terms that do not exist; ``L <= U``. Every trade is at ``L + floor(k_num*(U-L)/k_den)``.
    References: Chatterjee & Samuelson (1983), Satterthwaite & Williams (1989) for the
    k-double auction; Wilson (1985) for the clearing-price interval.

``pay-as-bid``
    Same pairs; each pair trades at its bid's limit price. There is no single clearing price,
    so :attr:`ClearingResult.price` is ``None``; each trade carries its own price.

Sizes: quantities are summed in ``int64`` (the bounds in :mod:`market.orders` make that safe);
payments (``quantity_wh * price``) are Python ints and never wrap.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import NDArray

from ledger.errors import InputError
from ledger.units import BaseUnits, PricePerWh, Wh
from market.orders import I64, Order, OrderBook

Mechanism = Literal["uniform", "pay-as-bid"]
MECHANISMS: tuple[Mechanism, ...] = ("uniform", "pay-as-bid")
DEFAULT_K: tuple[int, int] = (1, 2)
"""k = 1/2: the uniform price lies midway between L and U (rounded down)."""


def k_price(lower: int, upper: int, k: tuple[int, int]) -> PricePerWh:
    """The k-double-auction price ``L + floor(k_num * (U - L) / k_den)`` (DESIGN §4).

    Rounds down, towards ``L``: the fraction of a base unit per Wh that the floor drops is
    left with the buyers. Nothing is created or lost, since every trade then uses this one
    integer price. ``k = (0, d)`` gives ``L``; ``k = (d, d)`` gives ``U``.
    """
    k_num, k_den = k
    return PricePerWh(lower + (k_num * (upper - lower)) // k_den)


@dataclass(frozen=True, slots=True)
class Trade:
    """One trade pair: ``quantity_wh`` from ask ``sell`` to bid ``buy`` at ``price_per_wh``."""

    buy: str
    sell: str
    quantity_wh: Wh
    price_per_wh: PricePerWh

    @property
    def payment_base_units(self) -> BaseUnits:
        """What the buyer pays the seller: ``quantity_wh * price_per_wh``, exact."""
        return BaseUnits(self.quantity_wh * self.price_per_wh)


def _frozen(array: NDArray[Any]) -> NDArray[Any]:
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class ClearingResult:
    """The outcome of clearing one book; frozen, arrays read-only.

    Large results stay as arrays (no Python object per order): trade ``t`` is
    ``trade_buy_rows[t]``, ``trade_sell_rows[t]`` (rows of :attr:`book`),
    ``trade_quantity_wh[t]`` and ``trade_price_per_wh[t]``, in walk order; ``fill_wh[r]`` is
    the energy filled for row ``r`` of :attr:`book`. :attr:`trades` and :attr:`fills` build
    Python objects on first use, for small books and for output.

    ``price`` is the uniform price, ``None`` when nothing trades and for pay-as-bid.
    ``price_bounds`` is ``(L, U)`` of DESIGN §4 when something trades (for both mechanisms),
    else ``None``. ``k`` is ``None`` for pay-as-bid. Compare results with
    :meth:`to_json_dict`; ``==`` is identity because arrays have no single truth value.
    """

    book: OrderBook
    mechanism: Mechanism
    k: tuple[int, int] | None
    price: PricePerWh | None
    price_bounds: tuple[PricePerWh, PricePerWh] | None
    volume_wh: Wh
    trade_buy_rows: I64
    trade_sell_rows: I64
    trade_quantity_wh: I64
    trade_price_per_wh: I64
    fill_wh: I64

    @cached_property
    def trades(self) -> tuple[Trade, ...]:
        """The trade pairs as :class:`Trade` objects, in walk (priority) order."""
        ids = self.book.ids
        return tuple(
            Trade(ids[b], ids[s], Wh(q), PricePerWh(p))
            for b, s, q, p in zip(
                self.trade_buy_rows.tolist(),
                self.trade_sell_rows.tolist(),
                self.trade_quantity_wh.tolist(),
                self.trade_price_per_wh.tolist(),
                strict=True,
            )
        )

    @cached_property
    def fills(self) -> Mapping[str, Wh]:
        """Energy filled per order id (every order of the book, 0 if unfilled)."""
        return MappingProxyType(dict(zip(self.book.ids, self.fill_wh.tolist(), strict=True)))

    @cached_property
    def total_payment_base_units(self) -> BaseUnits:
        """Sum of ``quantity_wh * price`` over all trades, exact (a Python int)."""
        if self.price is not None:
            return BaseUnits(self.volume_wh * self.price)
        quantities = self.trade_quantity_wh.tolist()
        prices = self.trade_price_per_wh.tolist()
        return BaseUnits(sum(q * p for q, p in zip(quantities, prices, strict=True)))

    def payments_by_buyer_base_units(self) -> dict[str, int]:
        """What each bid with a fill pays in total, by order id; exact Python ints."""
        return self._sum_payments(self.trade_buy_rows)

    def receipts_by_seller_base_units(self) -> dict[str, int]:
        """What each ask with a fill receives in total, by order id; exact Python ints."""
        return self._sum_payments(self.trade_sell_rows)

    def _sum_payments(self, rows: I64) -> dict[str, int]:
        ids = self.book.ids
        totals: dict[str, int] = {}
        for row, q, p in zip(
            rows.tolist(),
            self.trade_quantity_wh.tolist(),
            self.trade_price_per_wh.tolist(),
            strict=True,
        ):
            totals[ids[row]] = totals.get(ids[row], 0) + q * p
        return totals

    def to_json_dict(self) -> dict[str, Any]:
        """The result in the JSON shape of DESIGN §4.

        ``{"price", "volume_wh", "trades": [{"buy", "sell", "quantity_wh", "price"}],
        "fills": {id: Wh}}``. Trades are in walk order; fills list every order, sorted by id,
        so the output depends only on the set of orders, not on their row order.
        """
        ids = self.book.ids
        trades = [
            {"buy": ids[b], "sell": ids[s], "quantity_wh": q, "price": p}
            for b, s, q, p in zip(
                self.trade_buy_rows.tolist(),
                self.trade_sell_rows.tolist(),
                self.trade_quantity_wh.tolist(),
                self.trade_price_per_wh.tolist(),
                strict=True,
            )
        ]
        fill = self.fill_wh.tolist()
        rows = sorted(range(len(ids)), key=ids.__getitem__)
        return {
            "price": self.price,
            "volume_wh": self.volume_wh,
            "trades": trades,
            "fills": {ids[row]: fill[row] for row in rows},
        }


def priority_order(book: OrderBook, *, buy: bool) -> I64:
    """Rows of the bids (``buy=True``) or asks of ``book`` in DESIGN §4 priority order.

    Bids sort by ``(-price, seq, id)``, asks by ``(price, seq, id)``. One ``lexsort`` handles
    price and seq; the id tie-break is applied only to runs with equal price and seq, which
    are rare when seq is an arrival sequence. ``-price`` cannot overflow: prices are >= 1.
    """
    rows = np.flatnonzero(book.is_buy == buy)
    price = book.price_per_wh[rows]
    key = -price if buy else price
    seq = book.seq[rows]
    perm = np.lexsort((seq, key))
    key_sorted = key[perm]
    seq_sorted = seq[perm]
    tied = (key_sorted[1:] == key_sorted[:-1]) & (seq_sorted[1:] == seq_sorted[:-1])
    ordered = rows[perm]
    if tied.any():
        _break_ties_by_id(ordered, tied, book.ids)
    return ordered


def _break_ties_by_id(ordered: I64, tied: NDArray[np.bool_], ids: Sequence[str]) -> None:
    """Sort each run of rows with equal (price, seq) by id, in place.

    ``tied[i]`` says that positions ``i`` and ``i + 1`` of ``ordered`` have equal keys. Ids
    are ASCII (see :mod:`market.orders`), so numpy's string order is Python's.
    """
    in_run = np.zeros(len(ordered), dtype=np.bool_)
    in_run[1:] |= tied
    in_run[:-1] |= tied
    positions = np.flatnonzero(in_run)
    run_number = np.cumsum(np.concatenate(([True], ~tied)))[positions]
    rows = ordered[positions]
    id_rank = np.unique(np.array([ids[row] for row in rows.tolist()]), return_inverse=True)[1]
    ordered[positions] = rows[np.lexsort((id_rank, run_number))]


def _check_k(k: object) -> tuple[int, int]:
    """Return ``k`` as ``(num, den)`` with ``den > 0`` and ``0 <= num <= den``, else raise."""
    if (
        not isinstance(k, tuple)
        or len(k) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in k)
    ):
        raise InputError(f"k: expected a pair of integers (num, den), got {k!r}")
    num, den = cast(tuple[int, int], k)
    if den <= 0 or not 0 <= num <= den:
        raise InputError(f"k: {num}/{den} is not a fraction in [0, 1] with a positive denominator")
    return num, den


@dataclass(frozen=True, slots=True)
class _Walk:
    """The walk over both priority lists, as arrays in priority order."""

    volume_wh: int
    bid_fill: I64  # fill of the first len(bid_fill) bids in priority order
    ask_fill: I64
    trade_bid: I64  # positions in the bid priority list
    trade_ask: I64
    trade_quantity_wh: I64
    lower: int  # L of DESIGN §4 (meaningful when volume_wh > 0)
    upper: int  # U


_EMPTY = _frozen(np.zeros(0, dtype=np.int64))


def _walk(qb: I64, pb: I64, qa: I64, pa: I64) -> _Walk:
    """Compute the two-pointer walk of DESIGN §4 with sorting, cumsum and searchsorted.

    ``qb, pb`` are bid quantities and prices in bid priority order (prices non-increasing),
    ``qa, pa`` the asks in ask priority order (prices non-decreasing).
    """
    nb, na = len(qb), len(qa)
    if nb == 0 or na == 0:
        return _Walk(0, _EMPTY, _EMPTY, _EMPTY, _EMPTY, _EMPTY, 0, 0)
    cb = np.cumsum(qb)
    ca = np.cumsum(qa)

    def supply(price: int) -> int:
        """Ask quantity priced at or below ``price``."""
        j = int(np.searchsorted(pa, price, side="right"))
        return int(ca[j - 1]) if j else 0

    def bid_trades(i: int) -> bool:
        return supply(int(pb[i])) > int(cb[i]) - int(qb[i])

    # Number of bids that trade: bid_trades holds for a prefix (S(price) falls and the
    # quantity ahead of the bid rises along the list).
    n_bids = bisect.bisect_left(range(nb), True, key=lambda i: not bid_trades(i))
    if n_bids == 0:
        return _Walk(0, _EMPTY, _EMPTY, _EMPTY, _EMPTY, _EMPTY, 0, 0)
    marginal_bid_price = int(pb[n_bids - 1])
    volume = min(int(cb[n_bids - 1]), supply(marginal_bid_price))
    n_asks = int(np.searchsorted(ca, volume, side="left")) + 1

    # Cumulative ends clipped at the volume; both strictly increase and end at `volume`.
    bid_ends = cb[:n_bids].copy()
    bid_ends[-1] = volume
    ask_ends = ca[:n_asks].copy()
    ask_ends[-1] = volume
    merged = np.concatenate((bid_ends, ask_ends))
    merged.sort(kind="stable")  # two sorted runs: timsort merges them in linear time
    keep = np.ones(len(merged), dtype=np.bool_)
    keep[1:] = merged[1:] != merged[:-1]
    ends = merged[keep]
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1]
    trade_bid = np.searchsorted(bid_ends, starts, side="right").astype(np.int64)
    trade_ask = np.searchsorted(ask_ends, starts, side="right").astype(np.int64)

    marginal_ask_price = int(pa[n_asks - 1])
    lower, upper = marginal_ask_price, marginal_bid_price
    if int(cb[n_bids - 1]) > volume:
        lower = max(lower, marginal_bid_price)  # the marginal bid keeps unfilled quantity
    elif n_bids < nb:
        lower = max(lower, int(pb[n_bids]))
    if int(ca[n_asks - 1]) > volume:
        upper = min(upper, marginal_ask_price)
    elif n_asks < na:
        upper = min(upper, int(pa[n_asks]))
    if lower > upper:  # pragma: no cover - would mean the walk stopped too early
        raise AssertionError(f"clearing invariant broken: L={lower} > U={upper}")
    return _Walk(
        volume_wh=volume,
        bid_fill=np.diff(bid_ends, prepend=0),
        ask_fill=np.diff(ask_ends, prepend=0),
        trade_bid=trade_bid,
        trade_ask=trade_ask,
        trade_quantity_wh=ends - starts,
        lower=lower,
        upper=upper,
    )


def clear(
    orders: OrderBook | Sequence[Order],
    mechanism: str = "uniform",
    k: tuple[int, int] = DEFAULT_K,
) -> ClearingResult:
    """Clear one interval's book (DESIGN §4) and return the frozen result.

    ``orders`` is an :class:`OrderBook` or a sequence of :class:`Order`. ``mechanism`` is
    ``"uniform"`` (k-double auction; ``k = (num, den)`` with ``0 <= num <= den``) or
    ``"pay-as-bid"`` (``k`` is ignored). An empty or one-sided book, or one whose prices do
    not cross, clears to no trades with ``price`` None. Raises InputError for a bad
    ``mechanism`` or ``k`` (and, for Orders, a duplicate id).
    """
    book = orders if isinstance(orders, OrderBook) else OrderBook.from_orders(orders)
    if mechanism not in MECHANISMS:
        raise InputError(
            f"mechanism: {mechanism!r} is not one of {', '.join(MECHANISMS)}",
        )
    mech: Mechanism = mechanism
    k_checked = _check_k(k)
    bids = priority_order(book, buy=True)
    asks = priority_order(book, buy=False)
    pb = book.price_per_wh[bids]
    walk = _walk(book.quantity_wh[bids], pb, book.quantity_wh[asks], book.price_per_wh[asks])

    fill = np.zeros(len(book), dtype=np.int64)
    fill[bids[: len(walk.bid_fill)]] = walk.bid_fill
    fill[asks[: len(walk.ask_fill)]] = walk.ask_fill
    price: PricePerWh | None = None
    bounds: tuple[PricePerWh, PricePerWh] | None = None
    if walk.volume_wh > 0:
        bounds = (PricePerWh(walk.lower), PricePerWh(walk.upper))
        if mech == "uniform":
            price = k_price(walk.lower, walk.upper, k_checked)
    if price is not None:
        trade_price = np.full(len(walk.trade_bid), price, dtype=np.int64)
    else:
        trade_price = pb[walk.trade_bid]
    return ClearingResult(
        book=book,
        mechanism=mech,
        k=k_checked if mech == "uniform" else None,
        price=price,
        price_bounds=bounds,
        volume_wh=Wh(walk.volume_wh),
        trade_buy_rows=_frozen(bids[walk.trade_bid]),
        trade_sell_rows=_frozen(asks[walk.trade_ask]),
        trade_quantity_wh=_frozen(walk.trade_quantity_wh),
        trade_price_per_wh=_frozen(trade_price),
        fill_wh=_frozen(fill),
    )
