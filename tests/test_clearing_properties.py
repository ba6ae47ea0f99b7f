"""Property tests for every property of DESIGN §4, on books drawn by tests/strategies.py."""

from __future__ import annotations

import random
from collections.abc import Callable

from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from strategies import SMALL_MAX_PRICE, ks, mechanisms, orders

from ledger.units import Wh
from market.clearing import ClearingResult, clear
from market.orders import MAX_PRICE_PER_WH, MAX_QUANTITY_WH, Order, OrderBook, Side
from market.reference_clearing import reference_clear


def examples(n: int) -> settings:
    """At least ``n`` examples; more under a bigger profile (``--hypothesis-profile=thorough``)."""
    return settings(max_examples=max(n, settings().max_examples), deadline=None)


MANY = examples(300)
SOME = examples(150)


def _by_id(book: list[Order]) -> dict[str, Order]:
    return {o.id: o for o in book}


@MANY
@given(book=orders(extreme=True), mechanism=mechanisms, k=ks())
def test_individual_rationality(book: list[Order], mechanism: str, k: tuple[int, int]) -> None:
    """No buyer pays above its limit and no seller receives below its limit, per trade and
    per order in total."""
    result = clear(book, mechanism, k)
    limit = _by_id(book)
    for trade in result.trades:
        assert trade.price_per_wh <= limit[trade.buy].price_per_wh
        assert trade.price_per_wh >= limit[trade.sell].price_per_wh
    for order_id, paid in result.payments_by_buyer_base_units().items():
        assert paid <= result.fills[order_id] * limit[order_id].price_per_wh
    for order_id, received in result.receipts_by_seller_base_units().items():
        assert received >= result.fills[order_id] * limit[order_id].price_per_wh


@MANY
@given(book=orders(extreme=True), mechanism=mechanisms)
def test_energy_is_conserved_per_order_and_in_total(book: list[Order], mechanism: str) -> None:
    result = clear(book, mechanism)
    limit = _by_id(book)
    traded: dict[str, int] = {}
    for trade in result.trades:
        assert trade.quantity_wh >= 1
        assert limit[trade.buy].side is Side.BUY
        assert limit[trade.sell].side is Side.SELL
        traded[trade.buy] = traded.get(trade.buy, 0) + trade.quantity_wh
        traded[trade.sell] = traded.get(trade.sell, 0) + trade.quantity_wh
    assert set(result.fills) == set(limit)
    for order in book:
        assert 0 <= result.fills[order.id] <= order.quantity_wh
        assert traded.get(order.id, 0) == result.fills[order.id]
    bought = sum(result.fills[o.id] for o in book if o.side is Side.BUY)
    sold = sum(result.fills[o.id] for o in book if o.side is Side.SELL)
    assert bought == sold == result.volume_wh == sum(t.quantity_wh for t in result.trades)


@MANY
@given(book=orders(extreme=True), mechanism=mechanisms, k=ks())
def test_budget_balance_payments_equal_receipts_exactly(
    book: list[Order], mechanism: str, k: tuple[int, int]
) -> None:
    result = clear(book, mechanism, k)
    limit = _by_id(book)
    # Buyers' side from the fills alone: a uniform price, or each bid's own limit.
    paid = sum(
        result.fills[o.id] * (o.price_per_wh if result.price is None else result.price)
        for o in book
        if o.side is Side.BUY
    )
    received = sum(result.receipts_by_seller_base_units().values())
    assert paid == received == result.total_payment_base_units
    assert sum(result.payments_by_buyer_base_units().values()) == paid
    assert all(limit[b].side is Side.BUY for b in result.payments_by_buyer_base_units())


@MANY
@given(book=orders(extreme=True), k=ks())
def test_market_clearing_condition_unfilled_orders_are_priced_out(
    book: list[Order], k: tuple[int, int]
) -> None:
    """Uniform: every order with unfilled quantity is priced at or beyond the price."""
    result = clear(book, "uniform", k)
    if result.price is None:
        # Nothing trades: then no bid may cross any ask at all.
        bids = [o.price_per_wh for o in book if o.side is Side.BUY]
        asks = [o.price_per_wh for o in book if o.side is Side.SELL]
        assert not bids or not asks or max(bids) < min(asks)
        return
    for order in book:
        if result.fills[order.id] < order.quantity_wh:
            if order.side is Side.BUY:
                assert order.price_per_wh <= result.price
            else:
                assert order.price_per_wh >= result.price


def uniform_price_volume_oracle(book: list[Order]) -> int:
    """The largest volume that can trade at one price acceptable to every trading order.

    Brute force over every integer price ``p`` that could matter (1 to the highest limit):
    at ``p`` only bids priced ``>= p`` and asks priced ``<= p`` may trade, each up to its
    quantity, and any of those bids may be paired with any of those asks, so ``D(p)`` and
    ``S(p)`` can trade exactly ``min(D(p), S(p))``.

    Why the walk reaches it: with ``V`` the walk's volume and ``p`` any price,
    ``min(D(p), S(p)) <= V``, for otherwise some bid priced ``>= p`` and some ask priced
    ``<= p`` would both keep unfilled quantity, and the walk (which fills bids from the top and
    asks from the bottom) would not have stopped. And at ``p`` = the marginal bid price every
    traded bid is priced ``>= p`` and every traded ask ``<= p``, so ``V <= min(D(p), S(p))``.
    """
    best = 0
    for price in range(1, SMALL_MAX_PRICE + 2):
        demand = sum(o.quantity_wh for o in book if o.side is Side.BUY and o.price_per_wh >= price)
        supply = sum(o.quantity_wh for o in book if o.side is Side.SELL and o.price_per_wh <= price)
        best = max(best, min(demand, supply))
    return best


@examples(400)
@given(book=orders(small=True, max_size=8), mechanism=mechanisms)
def test_cleared_volume_is_maximal_against_brute_force_oracle(
    book: list[Order], mechanism: str
) -> None:
    assert clear(book, mechanism).volume_wh == uniform_price_volume_oracle(book)


def max_gains_from_trade_brute_force(book: list[Order]) -> int:
    """The largest total ``(bid price - ask price) * Wh`` over all ways to pair units.

    Every order is split into 1 Wh units; each bid unit may take at most one ask unit priced
    at or below it. A dynamic programme over the subsets of the smaller side's units tries
    every pairing, so it assumes nothing about the walk.
    """
    bid_units = [o.price_per_wh for o in book if o.side is Side.BUY for _ in range(o.quantity_wh)]
    ask_units = [o.price_per_wh for o in book if o.side is Side.SELL for _ in range(o.quantity_wh)]
    many, few = (
        (bid_units, ask_units) if len(bid_units) >= len(ask_units) else (ask_units, bid_units)
    )
    bids_are_many = many is bid_units
    best = {0: 0}  # subset of `few` units used -> best gains so far
    for unit in many:
        step = dict(best)
        for used, gains in best.items():
            for j, other in enumerate(few):
                bid, ask = (unit, other) if bids_are_many else (other, unit)
                if not used >> j & 1 and bid >= ask:
                    key = used | 1 << j
                    step[key] = max(step.get(key, 0), gains + bid - ask)
        best = step
    return max(best.values())


@examples(200)
@given(book=orders(small=True, small_max_quantity=3, max_size=5), mechanism=mechanisms)
def test_allocation_maximises_gains_from_trade_against_brute_force(
    book: list[Order], mechanism: str
) -> None:
    result = clear(book, mechanism)
    limit = _by_id(book)
    gains = sum(
        t.quantity_wh * (limit[t.buy].price_per_wh - limit[t.sell].price_per_wh)
        for t in result.trades
    )
    assert gains == max_gains_from_trade_brute_force(book)


@MANY
@given(book=orders(extreme=True), k=ks())
def test_k_price_formula_with_independent_bounds(book: list[Order], k: tuple[int, int]) -> None:
    """price = L + floor(k_num (U - L) / k_den) with L and U found by the stepping reference."""
    result = clear(book, "uniform", k)
    reference = reference_clear(book, "uniform", k)
    assert result.price_bounds == reference.bounds
    if result.price_bounds is None:
        assert result.price is None and result.volume_wh == 0
        return
    lower, upper = result.price_bounds
    assert lower <= result.price <= upper  # type: ignore[operator]
    assert result.price == lower + k[0] * (upper - lower) // k[1]


@MANY
@given(book=orders(extreme=True), den=st.integers(1, 10**9))
def test_k_price_boundaries_k0_gives_L_and_k1_gives_U(book: list[Order], den: int) -> None:
    at_zero = clear(book, "uniform", (0, den))
    at_one = clear(book, "uniform", (den, den))
    if at_zero.price_bounds is None:
        assert at_zero.price is None and at_one.price is None
        return
    lower, upper = at_zero.price_bounds
    assert at_zero.price == lower
    assert at_one.price == upper


@SOME
@given(book=orders(extreme=True, min_size=2), k=ks())
def test_k_price_is_that_bound_when_L_equals_U(book: list[Order], k: tuple[int, int]) -> None:
    # Force L == U: add a bid whose surplus is only partly filled, priced at an ask's price;
    # then the marginal bid keeps unfilled quantity and L = U = its price.
    asks = [o for o in book if o.side is Side.SELL]
    if not asks:
        return
    price = min(o.price_per_wh for o in asks)
    supply = sum(o.quantity_wh for o in asks)
    bid = Order("Lequalsu", Side.BUY, Wh(min(supply + 1, 2**40 - 1)), price, 0)
    result = clear([o for o in book if o.side is Side.SELL] + [bid], "uniform", k)
    assert result.price_bounds == (price, price)
    assert result.price == price


@SOME
@given(book=orders(extreme=True), k1=ks(), k2=ks())
def test_uniform_price_is_monotone_in_k(
    book: list[Order], k1: tuple[int, int], k2: tuple[int, int]
) -> None:
    low, high = sorted((k1, k2), key=lambda k: k[0] / k[1])
    p_low, p_high = clear(book, "uniform", low).price, clear(book, "uniform", high).price
    assert (p_low is None) == (p_high is None)
    if p_low is not None and p_high is not None:
        assert p_low <= p_high


def _same(a: ClearingResult, b: ClearingResult) -> None:
    assert a.to_json_dict() == b.to_json_dict()
    assert a.price_bounds == b.price_bounds


@MANY
@given(book=orders(), mechanism=mechanisms, k=ks(), seed=st.integers(0, 2**32))
def test_determinism_same_book_and_shuffled_rows_give_same_result(
    book: list[Order], mechanism: str, k: tuple[int, int], seed: int
) -> None:
    first = clear(book, mechanism, k)
    _same(first, clear(book, mechanism, k))
    shuffled = list(book)
    random.Random(seed).shuffle(shuffled)
    again = clear(shuffled, mechanism, k)
    _same(first, again)
    assert first.trades == again.trades


@examples(400)
@given(book=orders(extreme=True, max_size=20), mechanism=mechanisms, k=ks())
def test_vectorised_clearing_agrees_with_stepping_reference(
    book: list[Order], mechanism: str, k: tuple[int, int]
) -> None:
    result = clear(book, mechanism, k)
    reference = reference_clear(book, mechanism, k)
    assert result.price == reference.price
    assert result.price_bounds == reference.bounds
    assert result.volume_wh == reference.volume_wh
    assert [(t.buy, t.sell, t.quantity_wh, t.price_per_wh) for t in result.trades] == (
        reference.trades
    )
    assert dict(result.fills) == reference.fills


@SOME
@given(book=orders(extreme=True), mechanism=mechanisms)
def test_order_list_and_columnar_book_clear_the_same(book: list[Order], mechanism: str) -> None:
    _same(clear(book, mechanism), clear(OrderBook.from_orders(book), mechanism))


HARD_CASES: dict[str, Callable[[list[Order]], object]] = {
    "empty book": lambda b: not b,
    "single order": lambda b: len(b) == 1,
    "one-sided book": lambda b: len(b) > 2 and len({o.side for o in b}) == 1,
    "bid priced exactly at an ask": lambda b: (
        {o.price_per_wh for o in b if o.side is Side.BUY}
        & {o.price_per_wh for o in b if o.side is Side.SELL}
    ),
    "tie on price and seq (id decides)": lambda b: (
        len({(o.side, o.price_per_wh, o.seq) for o in b}) < len(b)
    ),
    "maximum price": lambda b: any(o.price_per_wh == MAX_PRICE_PER_WH for o in b),
    "maximum quantity": lambda b: any(o.quantity_wh == MAX_QUANTITY_WH for o in b),
    "minimum price": lambda b: any(o.price_per_wh == 1 for o in b),
}


def test_strategies_produce_the_hard_cases() -> None:
    """Each hard case named in the issue shows up in an ordinary run of the strategy."""
    seen: dict[str, int] = dict.fromkeys(HARD_CASES, 0)

    @settings(max_examples=300, database=None, phases=[Phase.generate])
    @given(book=orders(extreme=True))
    def sample(book: list[Order]) -> None:
        for case, condition in HARD_CASES.items():
            seen[case] += bool(condition(book))

    sample()
    assert all(seen.values()), seen
