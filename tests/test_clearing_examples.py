"""Worked examples and exact-boundary cases of the clearing engine (DESIGN §4)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ledger.errors import InputError
from ledger.units import PricePerWh, Wh
from market.clearing import ClearingResult, clear, k_price
from market.orders import MAX_PRICE_PER_WH, MAX_QUANTITY_WH, Order, OrderBook, Side
from market.reference_clearing import reference_clear


def bid(order_id: str, quantity: int, price: int, seq: int = 0) -> Order:
    return Order(order_id, Side.BUY, Wh(quantity), PricePerWh(price), seq)


def ask(order_id: str, quantity: int, price: int, seq: int = 0) -> Order:
    return Order(order_id, Side.SELL, Wh(quantity), PricePerWh(price), seq)


def pairs(result: ClearingResult) -> list[tuple[str, str, int, int]]:
    return [(t.buy, t.sell, t.quantity_wh, t.price_per_wh) for t in result.trades]


@pytest.mark.parametrize(
    "book",
    [
        [],
        [bid("b", 5, 10)],
        [ask("a", 5, 10)],
        [bid("b1", 5, 10), bid("b2", 1, 20)],
        [bid("b", 5, 9), ask("a", 5, 10)],
    ],
    ids=["empty", "single-bid", "single-ask", "bids-only", "no-crossing"],
)
@pytest.mark.parametrize("mechanism", ["uniform", "pay-as-bid"])
def test_book_without_crossing_clears_to_no_trades_and_null_price(
    book: list[Order], mechanism: str
) -> None:
    result = clear(book, mechanism)
    assert result.price is None
    assert result.price_bounds is None
    assert result.volume_wh == 0
    assert result.trades == ()
    assert dict(result.fills) == {o.id: 0 for o in book}
    assert result.total_payment_base_units == 0
    assert result.to_json_dict() == {
        "price": None,
        "volume_wh": 0,
        "trades": [],
        "fills": {o.id: 0 for o in sorted(book, key=lambda o: o.id)},
    }


def test_clears_when_bid_price_equals_ask_price_exactly() -> None:
    result = clear([bid("b", 5, 10), ask("a", 5, 10)])
    assert pairs(result) == [("b", "a", 5, 10)]
    assert result.price == 10


def test_does_not_clear_when_bid_is_one_below_ask() -> None:
    assert clear([bid("b", 5, 9), ask("a", 5, 10)]).volume_wh == 0


def test_uniform_price_is_midpoint_of_L_and_U_rounded_down() -> None:
    # b 10@30 trades with a 10@20; the next bid (b2@25) and ask (a2@28) do not cross.
    # L = max(20, 25) = 25, U = min(30, 28) = 28, price = 25 + floor(3/2) = 26.
    book = [bid("b1", 10, 30), bid("b2", 10, 25), ask("a1", 10, 20), ask("a2", 10, 28)]
    result = clear(book)
    assert result.price_bounds == (25, 28)
    assert result.price == 26
    assert pairs(result) == [("b1", "a1", 10, 26)]
    assert clear(book, k=(0, 1)).price == 25
    assert clear(book, k=(1, 1)).price == 28
    assert clear(book, k=(2, 3)).price == 27


def test_partially_filled_marginal_bid_sets_price_to_its_limit() -> None:
    result = clear([bid("b", 10, 30), ask("a", 4, 20)], k=(0, 1))
    assert result.price_bounds == (30, 30)
    assert result.price == 30
    assert dict(result.fills) == {"b": 4, "a": 4}


def test_partially_filled_marginal_ask_sets_price_to_its_limit() -> None:
    result = clear([bid("b", 4, 30), ask("a", 10, 20)], k=(1, 1))
    assert result.price_bounds == (20, 20)
    assert result.price == 20


def test_missing_terms_are_ignored_when_both_sides_fill_completely() -> None:
    # No unfilled order at all: L = marginal ask price, U = marginal bid price.
    result = clear([bid("b", 5, 30), ask("a", 5, 10)])
    assert result.price_bounds == (10, 30)
    assert result.price == 20


def test_price_ties_are_broken_by_seq_then_by_id() -> None:
    book = [
        ask("z", 3, 10, seq=1),
        ask("m", 3, 10, seq=0),
        ask("a", 3, 10, seq=1),
        bid("b", 7, 10, seq=0),
    ]
    # Ask priority: m (seq 0), then a before z (same seq, id order).
    assert [(t.sell, t.quantity_wh) for t in clear(book).trades] == [("m", 3), ("a", 3), ("z", 1)]


def test_bid_ties_prefer_higher_price_then_earlier_seq() -> None:
    book = [bid("late", 5, 10, seq=2), bid("early", 5, 10, seq=1), bid("high", 5, 11, seq=9)]
    book.append(ask("a", 12, 1))
    assert [(t.buy, t.quantity_wh) for t in clear(book).trades] == [
        ("high", 5),
        ("early", 5),
        ("late", 2),
    ]


def test_id_tie_break_uses_string_order_not_numeric() -> None:
    book = [ask("o9", 1, 5), ask("o10", 1, 5), bid("b", 1, 5)]
    assert clear(book).trades[0].sell == "o10"


def test_pay_as_bid_trades_each_pair_at_its_bid_price() -> None:
    book = [bid("b1", 10, 30), bid("b2", 10, 25), ask("a1", 15, 20), ask("a2", 10, 24)]
    result = clear(book, "pay-as-bid")
    assert result.price is None
    assert result.k is None
    assert pairs(result) == [("b1", "a1", 10, 30), ("b2", "a1", 5, 25), ("b2", "a2", 5, 25)]
    assert result.total_payment_base_units == 10 * 30 + 10 * 25
    assert result.receipts_by_seller_base_units() == {"a1": 10 * 30 + 5 * 25, "a2": 5 * 25}
    assert result.price_bounds == (24, 24)  # a2 keeps 5 Wh unfilled at 24


def test_walk_volume_is_uniform_price_maximum_not_unrestricted_transport_maximum() -> None:
    """DESIGN §4's walk maximises volume at one price, not over arbitrary pairings.

    Pairing b_low with a_cheap and b_high with a_dear would trade 20 Wh, but it needs two
    prices (b_low pays <= 3, a_dear gets >= 5); no single price lets 20 Wh trade.
    """
    book = [bid("b_high", 10, 10), bid("b_low", 10, 3), ask("a_cheap", 10, 1), ask("a_dear", 10, 5)]
    result = clear(book)
    assert result.volume_wh == 10
    assert pairs(result) == [("b_high", "a_cheap", 10, 4)]


def test_payments_at_the_bounds_exceed_int64_and_stay_exact() -> None:
    book = [
        bid("b", MAX_QUANTITY_WH, MAX_PRICE_PER_WH),
        ask("a", MAX_QUANTITY_WH, MAX_PRICE_PER_WH),
    ]
    for mechanism in ("uniform", "pay-as-bid"):
        result = clear(book, mechanism)
        assert result.total_payment_base_units == MAX_QUANTITY_WH * MAX_PRICE_PER_WH
        assert result.total_payment_base_units > 2**100
        assert result.trades[0].payment_base_units == MAX_QUANTITY_WH * MAX_PRICE_PER_WH


def test_k_price_rounds_down_towards_L() -> None:
    assert k_price(10, 13, (1, 2)) == 11
    assert k_price(10, 13, (2, 3)) == 12
    assert k_price(10, 10, (1, 2)) == 10
    assert k_price(0, 2**130, (1, 3)) == 2**130 // 3


@pytest.mark.parametrize("k", [(1, 0), (3, 2), (-1, 2), (1,), (1.0, 2), (True, 2), "1/2"])
def test_invalid_k_is_rejected(k: object) -> None:
    with pytest.raises(InputError, match="k"):
        clear([bid("b", 1, 1)], k=k)  # type: ignore[arg-type]


def test_unknown_mechanism_is_rejected() -> None:
    with pytest.raises(InputError, match="mechanism"):
        clear([], mechanism="vickrey")


def test_result_is_frozen_and_its_arrays_read_only() -> None:
    result = clear([bid("b", 5, 10), ask("a", 5, 10)])
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.price = PricePerWh(3)  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        result.fill_wh[0] = 99
    with pytest.raises(ValueError, match="read-only"):
        result.trade_quantity_wh[0] = 99
    with pytest.raises(TypeError):
        result.fills["b"] = 1  # type: ignore[index]


def random_book(rng: np.random.Generator, n: int, seq_range: int) -> OrderBook:
    """A random book with few price levels (many ties) and overlapping sides."""
    is_buy = rng.random(n) < 0.5
    levels = rng.integers(1, 40, size=8)
    price = np.where(is_buy, rng.choice(levels, n) + 5, rng.choice(levels, n))
    return OrderBook(
        ids=[f"o{i}" for i in rng.permutation(n)],
        is_buy=is_buy,
        quantity_wh=rng.integers(1, 50, n),
        price_per_wh=price,
        seq=rng.integers(0, seq_range, n),
    )


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_agrees_with_reference_on_seeded_medium_books(seed: int) -> None:
    rng = np.random.default_rng(seed)
    book = random_book(rng, int(rng.integers(50, 3000)), seq_range=int(rng.integers(1, 100)))
    orders = list(book)
    for mechanism, k in (("uniform", (1, 2)), ("uniform", (0, 1)), ("pay-as-bid", (1, 2))):
        result = clear(book, mechanism, k)
        reference = reference_clear(orders, mechanism, k)
        assert result.price == reference.price
        assert result.price_bounds == reference.bounds
        assert result.volume_wh == reference.volume_wh
        assert pairs(result) == reference.trades
        assert dict(result.fills) == reference.fills


def test_large_book_conserves_energy_with_array_result() -> None:
    rng = np.random.default_rng(2024)
    book = random_book(rng, 200_000, seq_range=2**40)
    result = clear(book)
    assert int(result.trade_quantity_wh.sum()) == result.volume_wh
    assert int(result.fill_wh[book.is_buy].sum()) == result.volume_wh
    assert int(result.fill_wh[~book.is_buy].sum()) == result.volume_wh
    assert np.all(result.fill_wh <= book.quantity_wh)
    buy_fill = np.bincount(result.trade_buy_rows, result.trade_quantity_wh, minlength=len(book))
    assert np.array_equal(buy_fill[book.is_buy], result.fill_wh[book.is_buy])
    assert result.price is not None
    assert np.all(book.price_per_wh[result.trade_buy_rows] >= result.price)
    assert np.all(book.price_per_wh[result.trade_sell_rows] <= result.price)
