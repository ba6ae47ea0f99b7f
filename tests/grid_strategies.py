"""Hypothesis strategies for grid documents and books placed on their nodes.

Trees are small (1 to ``max_nodes`` nodes) with ids unrelated to their shape, so the sibling
order (by id) differs from the order nodes were made in. Caps are often null, often 0 and
otherwise small, so edges at their caps are common; fees are often 0. Prices and quantities
come from small pools, so ties (equal effective prices across nodes, sells at a bid's price)
are common, and the numbers stay small enough for an LP solver to be exact in floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from ledger.units import PricePerWh, Wh
from market.grid import Grid, check_grid
from market.orders import Order, Side

NODE_ALPHABET = "abfsxyz019_.:-"


def grid_document(
    ids: list[str],
    parents: list[int | None],
    caps: list[tuple[int | None, int | None]],
    fees: list[int],
) -> dict[str, Any]:
    """A grid document (parsed JSON) from parallel lists; ``parents`` index into ``ids``."""
    return {
        "version": 1,
        "interval": 1,
        "nodes": [
            {
                "id": node_id,
                "parent": None if parent is None else ids[parent],
                "export_cap_wh": cap[0],
                "import_cap_wh": cap[1],
                "fee_per_wh": fee,
            }
            for node_id, parent, cap, fee in zip(ids, parents, caps, fees, strict=True)
        ],
    }


@st.composite
def grids(
    draw: st.DrawFn,
    *,
    max_nodes: int = 7,
    fees: bool = True,
    caps: bool = True,
    max_fee: int = 4,
) -> Grid:
    """A random tree: node ``i > 0`` hangs below a random earlier node."""
    ids = draw(
        st.lists(
            st.text(alphabet=NODE_ALPHABET, min_size=1, max_size=3),
            min_size=1,
            max_size=max_nodes,
            unique=True,
        )
    )
    parents: list[int | None] = [None] + [draw(st.integers(0, i - 1)) for i in range(1, len(ids))]
    cap = st.one_of(st.none(), st.just(0), st.integers(0, 12)) if caps else st.none()
    fee = st.one_of(st.just(0), st.integers(0, max_fee)) if fees else st.just(0)
    edge_caps: list[tuple[int | None, int | None]] = [(None, None)] + [
        (draw(cap), draw(cap)) for _ in ids[1:]
    ]
    edge_fees = [0] + [draw(fee) for _ in ids[1:]]
    return check_grid(grid_document(ids, parents, edge_caps, edge_fees))


@dataclass(frozen=True)
class GridBook:
    """A grid and a book whose order ``i`` sits at node ``nodes[i]``."""

    grid: Grid
    orders: list[Order]
    nodes: list[str]


@st.composite
def grid_books(
    draw: st.DrawFn,
    *,
    max_nodes: int = 7,
    max_orders: int = 14,
    fees: bool = True,
    caps: bool = True,
    max_price: int = 30,
    max_quantity: int = 9,
) -> GridBook:
    """A random grid and a small random book spread over its nodes."""
    grid = draw(grids(max_nodes=max_nodes, fees=fees, caps=caps))
    ids = draw(
        st.lists(
            st.text(alphabet="abcxyzAB019_.:-", min_size=1, max_size=4),
            max_size=max_orders,
            unique=True,
        )
    )
    prices = draw(st.lists(st.integers(1, max_price), min_size=1, max_size=5))
    quantities = draw(st.lists(st.integers(1, max_quantity), min_size=1, max_size=4))
    seq_tied = draw(st.booleans())
    node_ids = [n.id for n in grid.nodes]
    row = st.tuples(
        st.sampled_from((Side.BUY, Side.SELL)),
        st.sampled_from(quantities),
        st.sampled_from(prices),
        st.integers(0, 2),
        st.sampled_from(node_ids),
    )
    orders, nodes = [], []
    for i, order_id in enumerate(ids):
        side, quantity, price, seq, node = draw(row)
        orders.append(
            Order(order_id, side, Wh(quantity), PricePerWh(price), seq if seq_tied else i)
        )
        nodes.append(node)
    return GridBook(grid, orders, nodes)
