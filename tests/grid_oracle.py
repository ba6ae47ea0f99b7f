"""Oracles for grid clearing tests: the LP of docs/grid.md §2 solved by HiGHS, tree paths,
welfare and the dual bound ``D(P)`` of P6, all from the definitions, not from the engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import lil_matrix

from market.grid import Grid
from market.orders import Order, Side


@dataclass(frozen=True)
class LpOptimum:
    """The LP's optimal welfare and, at that welfare, the largest volume (rounded)."""

    welfare: int
    volume_wh: int


def lp_optimum(grid: Grid, orders: list[Order], nodes: list[str]) -> LpOptimum:
    """Solve §2 as an LP: fills ``x``, and each edge's flow as ``z+ − z−``.

    Maximise welfare; then, with welfare held at its optimum, maximise the volume. The data
    are small integers and the constraint matrix is a network's (totally unimodular), so the
    optima are integers and rounding the float answers is exact.
    """
    n_orders, n_nodes = len(orders), len(grid)
    edges = [v for v in range(n_nodes) if v != grid.root_index]
    n_vars = n_orders + 2 * len(edges)
    welfare = np.zeros(n_vars)
    volume = np.zeros(n_vars)
    bounds: list[tuple[float, float | None]] = []
    balance = lil_matrix((n_nodes, n_vars))
    for i, (order, node) in enumerate(zip(orders, nodes, strict=True)):
        sign = 1.0 if order.side is Side.BUY else -1.0
        welfare[i] = sign * order.price_per_wh
        volume[i] = 0.0 if order.side is Side.BUY else 1.0
        bounds.append((0, order.quantity_wh))
        balance[grid.index[node], i] = -sign  # sells add to the node, buys take from it
    for j, v in enumerate(edges):
        up, down = n_orders + 2 * j, n_orders + 2 * j + 1
        edge = grid.nodes[v]
        welfare[up] = welfare[down] = -edge.fee_per_wh
        bounds.append((0, edge.export_cap_wh))
        bounds.append((0, edge.import_cap_wh))
        parent = grid.parent_index[v]
        balance[v, up], balance[v, down] = -1.0, 1.0
        balance[parent, up], balance[parent, down] = 1.0, -1.0
    rhs = np.zeros(n_nodes)
    if n_vars == 0:
        return LpOptimum(0, 0)
    first = linprog(-welfare, A_eq=balance.tocsr(), b_eq=rhs, bounds=bounds, method="highs")
    assert first.status == 0, first.message
    best = -first.fun
    second = linprog(
        -volume,
        A_ub=-welfare.reshape(1, -1),
        b_ub=[-best + 1e-7],
        A_eq=balance.tocsr(),
        b_eq=rhs,
        bounds=bounds,
        method="highs",
    )
    assert second.status == 0, second.message
    return LpOptimum(round(best), round(-second.fun))


def path_to_root(grid: Grid, node: int) -> list[int]:
    """The nodes whose edges lie between ``node`` and the root, from ``node`` up."""
    path = []
    while node != grid.root_index:
        path.append(node)
        node = grid.parent_index[node]
    return path


def pair_path(grid: Grid, sell_node: int, buy_node: int) -> tuple[list[int], list[int]]:
    """Edges a pair crosses: upwards from the seller to the common ancestor, then downwards
    to the buyer (each edge named by its child node)."""
    up, down = path_to_root(grid, sell_node), path_to_root(grid, buy_node)
    shared = set(up) & set(down)
    return [v for v in up if v not in shared], [v for v in down if v not in shared]


def welfare(grid: Grid, orders: list[Order], fills: dict[str, int], flows: dict[str, int]) -> int:
    """``W`` of §2 for a schedule, exactly."""
    trade = sum(
        (o.price_per_wh if o.side is Side.BUY else -o.price_per_wh) * fills[o.id] for o in orders
    )
    fees = sum(n.fee_per_wh * abs(flows.get(n.id, 0)) for n in grid.nodes)
    return trade - fees


def dual_bound(
    grid: Grid, orders: list[Order], nodes: list[str], prices: dict[str, int | None]
) -> int:
    """``D(P)`` of P6: what node prices ``P`` bound every schedule's welfare by."""
    total = 0
    for order, node in zip(orders, nodes, strict=True):
        price = prices[node]
        assert price is not None
        gap = order.price_per_wh - price if order.side is Side.BUY else price - order.price_per_wh
        total += order.quantity_wh * max(0, gap)
    for v, edge in enumerate(grid.nodes):
        if v == grid.root_index:
            continue
        child, parent = prices[edge.id], prices[grid.nodes[grid.parent_index[v]].id]
        if child is None or parent is None:
            continue
        if edge.export_cap_wh is not None:
            total += edge.export_cap_wh * max(0, parent - child - edge.fee_per_wh)
        if edge.import_cap_wh is not None:
            total += edge.import_cap_wh * max(0, child - parent - edge.fee_per_wh)
    return total
