"""The pure property checkers of market/properties.py: silent on every result clear() gives,
and each one names its property when a result is bent to break it."""

from __future__ import annotations

import dataclasses
import random

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import ks, mechanisms, orders
from test_clearing_properties import uniform_price_volume_oracle

from ledger.units import PricePerWh, Wh
from market.clearing import Trade, clear
from market.orders import Order, Side
from market.properties import (
    BUDGET_BALANCE,
    CONSERVATION,
    INDIVIDUAL_RATIONALITY,
    MARKET_CLEARING,
    MAXIMAL_VOLUME,
    PAY_AS_BID_PRICE,
    UNIFORM_PRICE,
    PriceBounds,
    PropertyViolation,
    check_clearing_properties,
    check_result,
    max_single_price_volume,
    price_bounds,
)

MANY = settings(max_examples=300, deadline=None)


def _names(found: list[PropertyViolation]) -> set[str]:
    return {v.property for v in found}


def _order(order_id: str, side: Side, quantity: int, price: int, seq: int) -> Order:
    return Order(order_id, side, Wh(quantity), PricePerWh(price), seq)


# A book with a known result: bids 10@30, 5@20; asks 8@10, 10@25.
# Walk: (b1, a1, 8), (b1, a2, 2) -> b1 full at 10; b2@20 < a2@25 stops. Volume 10.
# L = max(marginal ask 25, best unfilled bid 20) = 25; U = min(marginal bid 30, unfilled ask 25)
# = 25; the uniform price is 25.
BOOK = [
    _order("b1", Side.BUY, 10, 30, 0),
    _order("b2", Side.BUY, 5, 20, 1),
    _order("a1", Side.SELL, 8, 10, 2),
    _order("a2", Side.SELL, 10, 25, 3),
]


def _trade(buy: str, sell: str, quantity: int, price: int) -> Trade:
    return Trade(buy, sell, Wh(quantity), PricePerWh(price))


def test_known_book_clears_to_the_worked_example_and_every_property_holds() -> None:
    result = clear(BOOK)
    assert result.trades == (_trade("b1", "a1", 8, 25), _trade("b1", "a2", 2, 25))
    assert check_result(result) == []
    assert price_bounds({o.id: o for o in BOOK}, result.fills) == PriceBounds(25, 25)


@MANY
@given(book=orders(extreme=True), mechanism=mechanisms, k=ks())
def test_every_result_of_clear_satisfies_every_property(
    book: list[Order], mechanism: str, k: tuple[int, int]
) -> None:
    assert check_result(clear(book, mechanism, k)) == []


@MANY
@given(book=orders(extreme=True), mechanism=mechanisms, k=ks(), seed=st.randoms())
def test_checkers_do_not_depend_on_trade_or_book_order(
    book: list[Order], mechanism: str, k: tuple[int, int], seed: random.Random
) -> None:
    result = clear(book, mechanism, k)
    trades = list(result.trades)
    seed.shuffle(trades)
    shuffled = list(book)
    seed.shuffle(shuffled)
    assert check_clearing_properties(shuffled, trades, mechanism, k, dict(result.fills)) == []


@MANY
@given(book=orders(extreme=True), k=ks())
def test_price_bounds_from_fills_equal_the_engines_bounds(
    book: list[Order], k: tuple[int, int]
) -> None:
    result = clear(book, "uniform", k)
    bounds = price_bounds({o.id: o for o in book}, result.fills)
    if result.price_bounds is None:
        assert bounds is None
    else:
        assert bounds == PriceBounds(*result.price_bounds)


@settings(max_examples=400, deadline=None)
@given(book=orders(small=True, max_size=8))
def test_max_single_price_volume_equals_the_brute_force_oracle(book: list[Order]) -> None:
    assert max_single_price_volume({o.id: o for o in book}) == uniform_price_volume_oracle(book)


# ----------------------------------------------------------------------------- each property


def _bent(book: list[Order], trades: list[Trade], mechanism: str = "uniform") -> set[str]:
    return _names(check_clearing_properties(book, trades, mechanism))


def test_price_above_a_bids_limit_breaks_individual_rationality() -> None:
    trades = [_trade("b1", "a1", 8, 31), _trade("b1", "a2", 2, 31)]
    assert INDIVIDUAL_RATIONALITY in _bent(BOOK, trades)


def test_price_below_an_asks_limit_breaks_individual_rationality() -> None:
    trades = [_trade("b1", "a1", 8, 24), _trade("b1", "a2", 2, 24)]
    found = check_clearing_properties(BOOK, trades)
    assert any(
        v.property == INDIVIDUAL_RATIONALITY and "below ask a2's limit 25" in v.message
        for v in found
    )


def test_price_exactly_at_both_limits_is_individually_rational() -> None:
    # Exact boundary: a2's limit is 25 and the price is 25.
    assert INDIVIDUAL_RATIONALITY not in _bent(
        BOOK, [_trade("b1", "a1", 8, 25), _trade("b1", "a2", 2, 25)]
    )


def test_overfilled_order_unknown_order_and_wrong_side_break_conservation() -> None:
    over = [_trade("b1", "a1", 9, 25), _trade("b1", "a2", 2, 25)]
    found = check_clearing_properties(BOOK, over)
    assert any("a1" in v.message and "above its quantity 8" in v.message for v in found)
    assert CONSERVATION in _bent(BOOK, [_trade("ghost", "a1", 8, 25)])
    assert CONSERVATION in _bent(BOOK, [_trade("a1", "b1", 8, 25)])
    assert CONSERVATION in _bent(BOOK, [_trade("b1", "a1", 0, 25)])


def test_claimed_fills_must_match_the_trades() -> None:
    trades = [_trade("b1", "a1", 8, 25), _trade("b1", "a2", 2, 25)]
    good = {"b1": 10, "a1": 8, "a2": 2}
    assert check_clearing_properties(BOOK, trades, fills=good) == []
    found = check_clearing_properties(BOOK, trades, fills={**good, "b2": 1})
    assert [v.property for v in found] == [CONSERVATION, CONSERVATION]  # b2, and bought != sold


def test_a_second_price_breaks_uniform_budget_balance_and_the_single_price() -> None:
    trades = [_trade("b1", "a1", 8, 25), _trade("b1", "a2", 2, 26)]
    found = _bent(BOOK, trades)
    assert {BUDGET_BALANCE, UNIFORM_PRICE} <= found


def test_price_inside_the_bounds_but_off_the_k_formula_breaks_uniform_price() -> None:
    book = [
        _order("b1", Side.BUY, 10, 30, 0),
        _order("a1", Side.SELL, 8, 10, 1),
        _order("a2", Side.SELL, 2, 20, 2),
    ]
    # All fill: L = marginal ask 20, U = marginal bid 30; k = 1/2 gives 25.
    assert clear(book).price == 25
    trades = [_trade("b1", "a1", 8, 24), _trade("b1", "a2", 2, 24)]
    found = check_clearing_properties(book, trades)
    assert [v.property for v in found] == [UNIFORM_PRICE]
    assert "price 24 differs from L + floor(1 * (U - L) / 2) = 25" in found[0].message


def test_leaving_a_crossing_order_unfilled_breaks_market_clearing_and_volume() -> None:
    found = _bent(BOOK, [_trade("b1", "a1", 8, 25)])
    assert {MARKET_CLEARING, MAXIMAL_VOLUME} <= found


def test_no_trades_on_a_crossing_book_breaks_market_clearing() -> None:
    found = check_clearing_properties(BOOK, [])
    assert {v.property for v in found} == {MARKET_CLEARING, MAXIMAL_VOLUME}


def test_pay_as_bid_trade_off_the_bid_limit_breaks_its_price_rule() -> None:
    result = clear(BOOK, "pay-as-bid")
    assert check_result(result) == []
    trades = [
        dataclasses.replace(t, price_per_wh=PricePerWh(t.price_per_wh - 1)) for t in result.trades
    ]
    assert {PAY_AS_BID_PRICE, BUDGET_BALANCE} <= _bent(BOOK, trades, "pay-as-bid")


@MANY
@given(book=orders(extreme=True), mechanism=mechanisms, k=ks(), data=st.data())
def test_every_bent_result_is_caught(
    book: list[Order], mechanism: str, k: tuple[int, int], data: st.DataObject
) -> None:
    """Change one number of one trade, or drop one: with the engine's fills as the claimed
    fills, some property always breaks."""
    result = clear(book, mechanism, k)
    trades = list(result.trades)
    assume(trades)
    i = data.draw(st.integers(0, len(trades) - 1))
    how = data.draw(st.sampled_from(("price+", "price-", "quantity+", "quantity-", "drop")))
    t = trades[i]
    if how == "drop":
        del trades[i]
    elif how.startswith("price"):
        price = t.price_per_wh + (1 if how == "price+" else -1)
        assume(price >= 1)
        trades[i] = dataclasses.replace(t, price_per_wh=PricePerWh(price))
    else:
        quantity = t.quantity_wh + (1 if how == "quantity+" else -1)
        trades[i] = dataclasses.replace(t, quantity_wh=Wh(quantity))
    found = check_clearing_properties(book, trades, mechanism, k, dict(result.fills))
    assert found, (how, i)
