"""The grid clearing's two engines, Python lists (small books) and numpy arrays (large ones),
against each other: forced onto each, every book must clear to the same result, field by
field (docs/grid.md; market/grid_lists.py)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from grid_strategies import GridBook, grid_books, grid_document
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import ks, mechanisms

import market.grid_clearing as grid_clearing
from ledger.units import PricePerWh, Wh
from market.grid import Grid, check_grid
from market.grid_arrays import clear_on_arrays
from market.grid_clearing import (
    LIST_ENGINE_MAX_ORDERS,
    GridClearingResult,
    _clear,
    clear_grid,
    locate_orders,
)
from market.grid_lists import clear_on_lists
from market.orders import MAX_PRICE_PER_WH, Order, OrderBook, Side

ARRAY_FIELDS = (
    "order_node",
    "fill_wh",
    "trade_buy_rows",
    "trade_sell_rows",
    "trade_quantity_wh",
    "trade_price_per_wh",
    "trade_sell_price_per_wh",
)


def _both(
    orders: list[Order], grid: Grid, nodes: list[str], mechanism: str, k: tuple[int, int]
) -> tuple[GridClearingResult, GridClearingResult]:
    book = OrderBook.from_orders(orders)
    located = locate_orders(book, grid, nodes)
    wide = bool(len(book)) and int(book.price_per_wh.max()) + grid.largest_fee_path >= 2**63
    on_lists = _clear(book, grid, located, mechanism, k, wide=wide, engine="lists")  # type: ignore[arg-type]
    on_arrays = _clear(book, grid, located, mechanism, k, wide=wide, engine="arrays")  # type: ignore[arg-type]
    return on_lists, on_arrays


def _assert_identical(a: GridClearingResult, b: GridClearingResult) -> None:
    assert a.to_json_dict() == b.to_json_dict()
    assert a.volume_wh == b.volume_wh and type(a.volume_wh) is int is type(b.volume_wh)
    assert a.node_prices == b.node_prices
    assert [type(p) for p in a.node_prices] == [type(p) for p in b.node_prices]
    assert a.flows_wh == b.flows_wh
    assert all(type(z) is int for z in a.flows_wh + b.flows_wh)
    for name in ARRAY_FIELDS:
        left, right = getattr(a, name), getattr(b, name)
        assert left.dtype == right.dtype == np.int64, name
        assert np.array_equal(left, right), name
        assert not left.flags.writeable and not right.flags.writeable, name


@settings(max_examples=300, deadline=None)
@given(case=grid_books(max_nodes=12, max_orders=30), mechanism=mechanisms, k=ks())
def test_lists_and_arrays_clear_every_small_book_alike(
    case: GridBook, mechanism: str, k: tuple[int, int]
) -> None:
    _assert_identical(*_both(case.orders, case.grid, case.nodes, mechanism, k))


@settings(max_examples=100, deadline=None)
@given(
    case=grid_books(max_nodes=30, max_orders=80, max_quantity=40),
    mechanism=mechanisms,
    k=ks(),
)
def test_lists_and_arrays_clear_larger_trees_alike(
    case: GridBook, mechanism: str, k: tuple[int, int]
) -> None:
    _assert_identical(*_both(case.orders, case.grid, case.nodes, mechanism, k))


@settings(max_examples=100, deadline=None)
@given(case=grid_books(max_nodes=8, max_orders=20), mechanism=mechanisms)
def test_lists_and_arrays_agree_on_prices_beyond_int64(case: GridBook, mechanism: str) -> None:
    """Limits near 2**63 - 1 plus fee paths: the arrays hold Python ints, the lists always do."""
    shift = MAX_PRICE_PER_WH - 40
    lifted = [
        Order(o.id, o.side, o.quantity_wh, PricePerWh(o.price_per_wh + shift), o.seq)
        for o in case.orders
    ]
    _assert_identical(*_both(lifted, case.grid, case.nodes, mechanism, (1, 2)))


def _feeder(seed: int, n_nodes: int, n_orders: int) -> tuple[Grid, list[Order], list[str]]:
    """A feeder-like tree (long lines of buses, a house on most) and a book on it: the
    size the simulated day clears each interval."""
    rng = random.Random(seed)
    ids = [f"bus-{i}" for i in range(n_nodes)]
    parents: list[int | None] = [None]
    for i in range(1, n_nodes):
        # Mostly continue a line, sometimes branch off an earlier bus.
        parents.append(i - 1 if rng.random() < 0.6 else rng.randrange(i))
    caps: list[tuple[int | None, int | None]] = [(None, None)]
    fees = [0]
    for _ in range(1, n_nodes):
        cap = rng.choice([None, rng.randrange(0, 60), rng.randrange(100, 400)])
        caps.append((cap, cap))
        fees.append(rng.choice([0, 1, 3, 10]))
    grid = check_grid(grid_document(ids, parents, caps, fees))
    orders, nodes = [], []
    for row in range(n_orders):
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        price = rng.randrange(5, 60) if side is Side.BUY else rng.randrange(1, 50)
        orders.append(Order(f"o{row}", side, Wh(rng.randrange(1, 90)), PricePerWh(price), row))
        nodes.append(rng.choice(ids))
    return grid, orders, nodes


@pytest.mark.parametrize("seed", range(12))
def test_lists_and_arrays_clear_a_feeder_sized_book_alike(seed: int) -> None:
    grid, orders, nodes = _feeder(seed, n_nodes=116, n_orders=80)
    on_lists, on_arrays = _both(orders, grid, nodes, "uniform", (1, 2))
    assert on_lists.volume_wh > 0  # the case is not trivial
    _assert_identical(on_lists, on_arrays)


@pytest.mark.parametrize(
    ("n_orders", "engine"),
    [(1, "lists"), (LIST_ENGINE_MAX_ORDERS, "lists"), (LIST_ENGINE_MAX_ORDERS + 1, "arrays")],
)
def test_clear_grid_chooses_the_engine_by_the_books_size(
    n_orders: int, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid, orders, nodes = _feeder(7, n_nodes=20, n_orders=n_orders)
    used: list[str] = []

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            used.append(name)
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(grid_clearing, "clear_on_lists", spy("lists", clear_on_lists))
    monkeypatch.setattr(grid_clearing, "clear_on_arrays", spy("arrays", clear_on_arrays))
    clear_grid(orders, grid, nodes)
    assert used == [engine]


@given(st.data())
@settings(max_examples=30, deadline=None)
def test_an_empty_book_clears_alike_on_both_engines(data: st.DataObject) -> None:
    case = data.draw(grid_books(max_orders=0))
    _assert_identical(*_both([], case.grid, [], "uniform", (1, 2)))


@pytest.mark.parametrize("more_sells", [0, 8])  # a short list, and a long one (> 6 steps)
def test_an_edge_with_both_caps_zero_hands_its_parent_no_step(more_sells: int) -> None:
    """At ``a`` the sell straddles zero net export; both caps 0 leave ``H_a`` empty, not a
    step of 0 Wh, so ``p`` (no orders, nothing taken) has no own interval and takes the
    root's price across its free edge."""
    grid = check_grid(
        grid_document(
            ["a", "p", "r"], [1, 2, None], [(0, 0), (None, None), (None, None)], [1, 0, 0]
        )
    )
    orders = [
        Order("s-a", Side.SELL, Wh(8), PricePerWh(4), 0),
        Order("b-a", Side.BUY, Wh(5), PricePerWh(6), 1),
        Order("s-r", Side.SELL, Wh(2), PricePerWh(10), 2),
        Order("b-r", Side.BUY, Wh(2), PricePerWh(20), 3),
    ] + [Order(f"x{i}", Side.SELL, Wh(1), PricePerWh(7 + i), 4 + i) for i in range(more_sells)]
    nodes = ["a", "a", "r", "r"] + ["a"] * more_sells
    on_lists, on_arrays = _both(orders, grid, nodes, "uniform", (1, 2))
    _assert_identical(on_lists, on_arrays)
    prices = on_lists.to_json_dict()["node_prices"]
    assert prices == {"a": 4, "p": 15, "r": 15}  # a: 3 Wh of the sell left untaken at 4
    assert on_lists.to_json_dict()["flows"] == {"a": 0, "p": 0}
