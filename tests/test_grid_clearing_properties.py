"""Properties P1-P8 of docs/grid.md §6 on random trees and books, with HiGHS as the oracle
for optimality, and the worked example of §5 as a test vector."""

from __future__ import annotations

import random
from typing import Any

import pytest
from grid_oracle import dual_bound, lp_optimum, pair_path, welfare
from grid_strategies import GridBook, grid_books
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import ks, mechanisms, orders

from ledger.units import PricePerWh, Wh
from market.clearing import clear
from market.grid import check_grid, single_node_grid
from market.grid_clearing import GridClearingResult, _clear, clear_grid, locate_orders
from market.orders import MAX_PRICE_PER_WH, Order, OrderBook, Side

SOME = settings(max_examples=150, deadline=None)
MANY = settings(max_examples=300, deadline=None)


def _cleared(
    case: GridBook, mechanism: str = "uniform", k: tuple[int, int] = (1, 2)
) -> GridClearingResult:
    return clear_grid(case.orders, case.grid, case.nodes, mechanism, k)


def _check_p1_to_p5(case: GridBook, result: GridClearingResult) -> None:
    grid, data = case.grid, result.to_json_dict()
    fills, flows, prices = data["fills"], data["flows"], data["node_prices"]
    node_of = dict(zip((o.id for o in case.orders), case.nodes, strict=True))
    limit = {o.id: o for o in case.orders}

    # P1 feasibility: fills within quantities, balance at every node, flows within caps.
    net = {n.id: 0 for n in grid.nodes}
    for order in case.orders:
        assert 0 <= fills[order.id] <= order.quantity_wh
        net[node_of[order.id]] += fills[order.id] * (1 if order.side is Side.SELL else -1)
    for v, node in enumerate(grid.nodes):
        inflow = sum(flows[c.id] for c in grid.nodes if c.parent == node.id)
        outflow = 0 if v == grid.root_index else flows[node.id]
        assert net[node.id] + inflow - outflow == 0, node.id
        if v != grid.root_index:
            assert node.export_cap_wh is None or flows[node.id] <= node.export_cap_wh
            assert node.import_cap_wh is None or -flows[node.id] <= node.import_cap_wh
    assert grid.root not in flows
    volume = sum(fills[o.id] for o in case.orders if o.side is Side.SELL)
    assert volume == data["volume_wh"]

    # P2 pairs: paired Wh = fill per order; per edge, up minus down = flow, none against it.
    paired: dict[str, int] = {}
    up = {n.id: 0 for n in grid.nodes}
    down = {n.id: 0 for n in grid.nodes}
    fee_of_pairs = 0
    for trade in data["trades"]:
        q = trade["quantity_wh"]
        assert q >= 1
        assert limit[trade["buy"]].side is Side.BUY and limit[trade["sell"]].side is Side.SELL
        paired[trade["buy"]] = paired.get(trade["buy"], 0) + q
        paired[trade["sell"]] = paired.get(trade["sell"], 0) + q
        ups, downs = pair_path(
            grid, grid.index[node_of[trade["sell"]]], grid.index[node_of[trade["buy"]]]
        )
        for v in ups:
            up[grid.nodes[v].id] += q
        for v in downs:
            down[grid.nodes[v].id] += q
        fee_of_pairs += q * sum(grid.nodes[v].fee_per_wh for v in ups + downs)
        # P3 per pair.
        bid, ask = limit[trade["buy"]].price_per_wh, limit[trade["sell"]].price_per_wh
        assert 1 <= ask <= trade["sell_price"] <= trade["price"] <= bid
    for order in case.orders:
        assert paired.get(order.id, 0) == fills[order.id]
    for node_id, flow in flows.items():
        assert up[node_id] - down[node_id] == flow
        assert (up[node_id] if flow < 0 else down[node_id] if flow > 0 else up[node_id]) == 0

    # P3 money: exact budget balance with the grid's revenue; fees; congestion rent.
    paid = sum(t["quantity_wh"] * t["price"] for t in data["trades"])
    received = sum(t["quantity_wh"] * t["sell_price"] for t in data["trades"])
    fee_revenue = sum(n.fee_per_wh * abs(flows.get(n.id, 0)) for n in grid.nodes)
    assert data["grid"]["fee_revenue"] == fee_revenue == fee_of_pairs
    assert paid == received + fee_revenue + data["grid"]["congestion_rent"]
    if result.mechanism == "uniform" and volume > 0:
        by_edge = 0
        for v, node in enumerate(grid.nodes):
            if v == grid.root_index:
                continue
            parent_price = prices[grid.nodes[grid.parent_index[v]].id]
            child_price, flow = prices[node.id], flows[node.id]
            if flow == 0:
                continue
            spread = abs(parent_price - child_price)
            by_edge += abs(flow) * spread
            if spread > node.fee_per_wh:  # rent only across an edge at its cap
                assert flow in (node.export_cap_wh, -(node.import_cap_wh or 0))
        assert paid - received == by_edge
        assert data["grid"]["congestion_rent"] >= 0

    # P4 node prices.
    if volume == 0:
        assert set(prices.values()) == {None}
        assert data["trades"] == [] and data["price"] is None
        return
    for order in case.orders:
        price = prices[node_of[order.id]]
        assert price is not None
        filled, unfilled = fills[order.id] > 0, fills[order.id] < order.quantity_wh
        if order.side is Side.BUY:
            assert not filled or order.price_per_wh >= price
            assert not unfilled or order.price_per_wh <= price
        else:
            assert not filled or order.price_per_wh <= price
            assert not unfilled or order.price_per_wh >= price
        if filled:
            assert price >= 1

    # P5 no profitable unused crossing: the edge table of §4.
    for v, node in enumerate(grid.nodes):
        if v == grid.root_index:
            continue
        child, parent = prices[node.id], prices[grid.nodes[grid.parent_index[v]].id]
        z, f = flows[node.id], node.fee_per_wh
        if child is None or parent is None:
            assert z == 0
            continue
        if node.export_cap_wh is None or z < node.export_cap_wh:
            assert child >= parent - f
        if z < 0:
            assert child >= parent + f
        if node.import_cap_wh is None or z > -node.import_cap_wh:
            assert child <= parent + f
        if z > 0:
            assert child <= parent - f


@MANY
@given(case=grid_books(), mechanism=mechanisms, k=ks())
def test_p1_to_p5_feasibility_pairs_money_prices_and_edges(
    case: GridBook, mechanism: str, k: tuple[int, int]
) -> None:
    _check_p1_to_p5(case, _cleared(case, mechanism, k))


@SOME
@given(case=grid_books(), k=ks())
def test_p6_welfare_and_volume_are_the_lp_optimum_and_prices_prove_it(
    case: GridBook, k: tuple[int, int]
) -> None:
    result = _cleared(case, "uniform", k)
    data = result.to_json_dict()
    achieved = welfare(case.grid, case.orders, data["fills"], data["flows"])
    optimum = lp_optimum(case.grid, case.orders, case.nodes)
    assert achieved == optimum.welfare
    assert result.volume_wh == optimum.volume_wh
    if result.volume_wh > 0:
        # The audit's exact certificate: the node prices' dual objective equals W.
        assert dual_bound(case.grid, case.orders, case.nodes, data["node_prices"]) == achieved


@SOME
@given(case=grid_books(max_nodes=4, max_orders=24, max_price=8, max_quantity=4))
def test_p6_on_crowded_books_with_many_ties(case: GridBook) -> None:
    data = _cleared(case).to_json_dict()
    optimum = lp_optimum(case.grid, case.orders, case.nodes)
    assert welfare(case.grid, case.orders, data["fills"], data["flows"]) == optimum.welfare
    assert data["volume_wh"] == optimum.volume_wh


@MANY
@given(book=orders(extreme=True), mechanism=mechanisms, k=ks())
def test_p7_one_node_grid_is_exactly_the_single_zone_clearing(
    book: list[Order], mechanism: str, k: tuple[int, int]
) -> None:
    single = clear(book, mechanism, k)
    grid = clear_grid(book, single_node_grid(), None, mechanism, k)
    expected = single.to_json_dict()
    got = grid.to_json_dict()
    assert got["price"] == expected["price"]
    assert got["volume_wh"] == expected["volume_wh"]
    assert got["fills"] == expected["fills"]
    assert [
        {key: t[key] for key in ("buy", "sell", "quantity_wh", "price")} for t in got["trades"]
    ] == expected["trades"]
    assert all(t["sell_price"] == t["price"] for t in got["trades"])
    if mechanism == "uniform":
        assert got["node_prices"] == {"root": expected["price"]}


@SOME
@given(case=grid_books(fees=False, caps=False), k=ks())
def test_p7_no_fees_and_no_caps_give_single_zone_fills_and_price_everywhere(
    case: GridBook, k: tuple[int, int]
) -> None:
    single = clear(case.orders, "uniform", k)
    result = _cleared(case, "uniform", k)
    assert dict(result.fills) == dict(single.fills)
    assert set(result.node_prices) == {single.price}


@SOME
@given(case=grid_books(), mechanism=mechanisms, seed=st.integers(0, 2**32))
def test_p8_determinism_shuffled_orders_and_nodes_change_nothing(
    case: GridBook, mechanism: str, seed: int
) -> None:
    first = _cleared(case, mechanism).to_json_dict()
    assert _cleared(case, mechanism).to_json_dict() == first
    rng = random.Random(seed)
    rows = list(range(len(case.orders)))
    rng.shuffle(rows)
    document = {
        "version": 1,
        "interval": case.grid.interval,
        "nodes": [
            {
                "id": n.id,
                "parent": n.parent,
                "export_cap_wh": n.export_cap_wh,
                "import_cap_wh": n.import_cap_wh,
                "fee_per_wh": n.fee_per_wh,
            }
            for n in rng.sample(case.grid.nodes, len(case.grid.nodes))
        ],
    }
    shuffled = GridBook(
        check_grid(document), [case.orders[r] for r in rows], [case.nodes[r] for r in rows]
    )
    again = _cleared(shuffled, mechanism).to_json_dict()
    assert again == first
    assert list(again["fills"]) == list(first["fills"])


@SOME
@given(case=grid_books(), mechanism=mechanisms, k=ks())
def test_python_int_prices_agree_with_int64_prices(
    case: GridBook, mechanism: str, k: tuple[int, int]
) -> None:
    book = OrderBook.from_orders(case.orders)
    located = locate_orders(book, case.grid, case.nodes)
    narrow = _clear(book, case.grid, located, mechanism, k, wide=False)  # type: ignore[arg-type]
    wide = _clear(book, case.grid, located, mechanism, k, wide=True)  # type: ignore[arg-type]
    assert narrow.to_json_dict() == wide.to_json_dict()


@SOME
@given(case=grid_books(), mechanism=mechanisms)
def test_prices_near_the_int64_limit_with_fees_clear_exactly(
    case: GridBook, mechanism: str
) -> None:
    """Limits near 2**63 - 1 plus fee paths overflow int64: the Python-int path takes over,
    and P1-P5 still hold, with effective prices above 2**63 - 1."""
    shift = MAX_PRICE_PER_WH - 40
    lifted = [
        Order(o.id, o.side, o.quantity_wh, PricePerWh(o.price_per_wh + shift), o.seq)
        for o in case.orders
    ]
    shifted = GridBook(case.grid, lifted, case.nodes)
    result = _cleared(shifted, mechanism)
    _check_p1_to_p5(shifted, result)
    base = _cleared(case, mechanism)
    assert dict(result.fills) == dict(base.fills)
    assert result.flows_wh == base.flows_wh


WORKED_GRID: dict[str, Any] = {
    "version": 1,
    "interval": 1,
    "nodes": [
        {"id": "f", "parent": "sub", "export_cap_wh": 6, "import_cap_wh": None, "fee_per_wh": 2},
        {
            "id": "sub",
            "parent": None,
            "export_cap_wh": None,
            "import_cap_wh": None,
            "fee_per_wh": 0,
        },
    ],
}
WORKED_ORDERS = [
    Order("pv", Side.SELL, Wh(10), PricePerWh(3), 0),
    Order("h", Side.BUY, Wh(3), PricePerWh(9), 1),
    Order("dc", Side.BUY, Wh(20), PricePerWh(20), 2),
    Order("ret", Side.SELL, Wh(50), PricePerWh(25), 3),
]
WORKED_NODES = ["f", "f", "sub", "sub"]


def test_worked_example_of_section_5_gives_its_exact_numbers() -> None:
    grid = check_grid(WORKED_GRID)
    result = clear_grid(WORKED_ORDERS, grid, WORKED_NODES)
    data = result.to_json_dict()
    assert data["price"] == 20
    assert data["volume_wh"] == 9
    assert data["fills"] == {"dc": 6, "h": 3, "pv": 9, "ret": 0}
    assert data["flows"] == {"f": 6}
    assert data["node_prices"] == {"f": 3, "sub": 20}
    assert data["trades"] == [
        {"buy": "h", "sell": "pv", "quantity_wh": 3, "price": 3, "sell_price": 3},
        {"buy": "dc", "sell": "pv", "quantity_wh": 6, "price": 20, "sell_price": 3},
    ]
    assert data["grid"]["fee_revenue"] == 12
    assert data["grid"]["congestion_rent"] == 90
    assert welfare(grid, WORKED_ORDERS, data["fills"], data["flows"]) == 108
    assert lp_optimum(grid, WORKED_ORDERS, WORKED_NODES).welfare == 108


def test_worked_example_pay_as_bid_keeps_fills_and_the_node_price_spread() -> None:
    result = clear_grid(WORKED_ORDERS, check_grid(WORKED_GRID), WORKED_NODES, "pay-as-bid")
    data = result.to_json_dict()
    assert data["price"] is None
    assert data["fills"] == {"dc": 6, "h": 3, "pv": 9, "ret": 0}
    # Buyer pays its limit; the seller gets the limit less P_buyer - P_seller.
    assert [(t["price"], t["sell_price"]) for t in data["trades"]] == [(9, 9), (20, 3)]


@pytest.mark.parametrize(
    ("export_cap", "fills", "flow", "prices"),
    [
        (9, {"dc": 9, "h": 1, "pv": 10, "ret": 0}, 9, {"f": 9, "sub": 20}),
        (0, {"dc": 0, "h": 3, "pv": 3, "ret": 0}, 0, {"f": 3, "sub": 22}),
    ],
    ids=["cap-binds-past-h", "export-cap-zero"],
)
def test_worked_example_at_other_caps(
    export_cap: int, fills: dict[str, int], flow: int, prices: dict[str, int | None]
) -> None:
    """Cap 9: the feeder sells all 10 Wh and exports 9 of them, so h keeps 1 (dc's 20 less the
    fee 2 beats h's 9). Cap 0: the feeder is an island; the substation's own book does not
    cross, yet it has a price (midway between dc's 20 and ret's 25), since something trades
    in the grid and its own interval is finite."""
    nodes = [{**WORKED_GRID["nodes"][0], "export_cap_wh": export_cap}, WORKED_GRID["nodes"][1]]
    document = {**WORKED_GRID, "nodes": nodes}
    data = clear_grid(WORKED_ORDERS, check_grid(document), WORKED_NODES).to_json_dict()
    assert data["fills"] == fills
    assert data["flows"] == {"f": flow}
    assert data["node_prices"] == prices
