"""Shared hypothesis strategies for orders and books.

Books are drawn so that the hard cases are common, not rare:

* prices come from a small pool per book, so equal prices (ties among bids, among asks, and a
  bid priced exactly at an ask) happen in most examples;
* ``seq`` is often drawn from a tiny range, so the id tie-break is exercised;
* empty books, single orders and one-sided books are drawn;
* with ``extreme=True`` the pools also hold the bounds (``MIN``/``MAX`` quantity and price),
  so payments exceed int64.

``small=True`` keeps prices in ``1..SMALL_MAX_PRICE`` and quantities in
``1..small_max_quantity`` (default 6), for oracles that enumerate prices or units.
"""

from __future__ import annotations

from hypothesis import strategies as st

from ledger.units import PricePerWh, Wh
from market.orders import (
    MAX_PRICE_PER_WH,
    MAX_QUANTITY_WH,
    MAX_SEQ,
    MIN_PRICE_PER_WH,
    MIN_QUANTITY_WH,
    Order,
    Side,
)

SMALL_MAX_PRICE = 12
ID_ALPHABET = "abcxyzAB019_.:-"

EXTREME_PRICES = (MIN_PRICE_PER_WH, MIN_PRICE_PER_WH + 1, MAX_PRICE_PER_WH - 1, MAX_PRICE_PER_WH)
EXTREME_QUANTITIES = (MIN_QUANTITY_WH, MAX_QUANTITY_WH - 1, MAX_QUANTITY_WH)


def order_ids(min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[list[str]]:
    """Distinct valid order ids, in an order unrelated to their sort order."""
    return st.lists(
        st.text(alphabet=ID_ALPHABET, min_size=1, max_size=5),
        min_size=min_size,
        max_size=max_size,
        unique=True,
    )


def _pool(
    values: st.SearchStrategy[int], extremes: tuple[int, ...], extreme: bool
) -> st.SearchStrategy[list[int]]:
    element = st.one_of(values, st.sampled_from(extremes)) if extreme else values
    return st.lists(element, min_size=1, max_size=4)


@st.composite
def orders(
    draw: st.DrawFn,
    *,
    min_size: int = 0,
    max_size: int = 12,
    small: bool = False,
    small_max_quantity: int = 6,
    extreme: bool = False,
    sides: tuple[Side, ...] = (Side.BUY, Side.SELL),
) -> list[Order]:
    """A list of valid orders with distinct ids (see the module docstring)."""
    ids = draw(order_ids(min_size, max_size))
    if small:
        prices = draw(_pool(st.integers(1, SMALL_MAX_PRICE), (), False))
        quantities = draw(_pool(st.integers(1, small_max_quantity), (), False))
    else:
        prices = draw(_pool(st.integers(1, 1000), EXTREME_PRICES, extreme))
        quantities = draw(_pool(st.integers(1, 1000), EXTREME_QUANTITIES, extreme))
    seq_top = draw(st.sampled_from((0, 2, MAX_SEQ)))
    # One strategy per column, built once: building strategies inside the loop is slow.
    row = st.tuples(
        st.sampled_from(sides),
        st.sampled_from(quantities),
        st.sampled_from(prices),
        st.integers(0, min(seq_top, 2)),
    )
    result = []
    for i, order_id in enumerate(ids):
        side, quantity, price, seq = draw(row)
        result.append(
            Order(
                id=order_id,
                side=side,
                quantity_wh=Wh(quantity),
                price_per_wh=PricePerWh(price),
                seq=i if seq_top == MAX_SEQ else seq,
            )
        )
    return result


def ks() -> st.SearchStrategy[tuple[int, int]]:
    """Valid k = (num, den) with 0 <= num <= den, including the boundaries 0 and 1."""
    return st.integers(1, 10**6).flatmap(
        lambda den: st.tuples(
            st.sampled_from((0, den, den // 2)) | st.integers(0, den), st.just(den)
        )
    )


mechanisms = st.sampled_from(("uniform", "pay-as-bid"))
