"""Grid-aware clearing on a radial network: fills, flows, node prices and trade pairs
(docs/grid.md §2-§5, §7).

``clear_grid(book, grid, order_nodes, mechanism="uniform", k=(1, 2))`` is pure and exact, as
:func:`market.clearing.clear` is, and on a one-node grid gives exactly its result (P7).

Objective (§2)
    Fills ``x`` and edge flows ``z`` maximise the welfare ``W = Σ bids lim·x − Σ asks lim·x −
    Σ_edges fee·|z|`` under the node balances and edge caps; among maximisers the volume; the
    key of §3.1 then makes the result unique.

Algorithm (§3): one pass up the tree, one pass down
    Each node's **list** is its own orders and its children's lists as *steps* ``(p, q)``,
    sorted by the key ``(p, sells before buys, sells by (seq, id) ascending, buys by
    (seq, id) descending)``; taking a sell step fills it, taking a buy step leaves it
    unfilled. Going up an edge the list is clipped to the caps, split at zero net export and
    shifted by ``∓fee``: that is the welfare of the subtree as a concave function of its net
    export, so at the root the optimum takes the cheapest ``buy Wh`` of the root's list.
    Going down, the number of Wh taken in a node's list gives each child's flow and each own
    order's fill. Time ``O(N·h·log N)``, memory ``O(N·h)`` for ``N`` orders and tree height
    ``h``.

Two engines, one result
    Books of up to :data:`LIST_ENGINE_MAX_ORDERS` orders clear on Python lists of tuples
    (:mod:`market.grid_lists`), larger ones on numpy arrays (:mod:`market.grid_arrays`),
    each list a handful of arrays (price, Wh, source) sorted with one ``lexsort``. numpy
    costs some twenty calls, a few dozen µs, per node whatever its size: on a feeder of a
    hundred nodes and a few dozen orders that is ten times the lists' cost, while 100k
    orders need the arrays. Both run the same steps and give identical results
    (tests/test_grid_engines.py forces each).

Node prices (§4)
    ``[L, U]`` of the node's own list (last taken, first untaken Wh) intersected with what the
    parent's price and the edge imply (the table of §4); the k-price of that interval. Roots
    first. ``None`` when nothing trades.

Trade pairs (§5)
    Up the tree again: at each node, its filled orders and its children's unpaired remainders
    are paired by §4's two-pointer walk in §4 priority, and what stays unpaired (exactly the
    node's flow) goes up. A pair so forms at the lowest common ancestor of its two nodes.

Integers: quantities and flows are ``int64`` (bounded by the book's total, see
:mod:`market.orders`). Effective prices lie in ``[1 − F, max limit + F]`` (``F`` the largest
fee sum to the root); on the arrays they are ``int64`` when that fits, else Python ints in
object arrays (slower, same results); the lists always hold Python ints. Money is summed with
Python ints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ledger.errors import InputError
from ledger.units import BaseUnits, PricePerWh, Wh
from market.clearing import (
    DEFAULT_K,
    MECHANISMS,
    Mechanism,
    _break_ties_by_id,
    _check_k,
    k_price,
    priority_order,
)
from market.grid import Grid, GridError
from market.grid_arrays import clear_on_arrays
from market.grid_lists import OwnInterval, clear_on_lists
from market.orders import I64, Order, OrderBook

INT64_MAX = 2**63 - 1


def _frozen(array: NDArray[Any]) -> NDArray[Any]:
    array.flags.writeable = False
    return array


@dataclass(frozen=True, slots=True)
class GridTrade:
    """One trade pair: ``quantity_wh`` from ask ``sell`` to bid ``buy``; the buyer pays
    ``price_per_wh``, the seller receives ``sell_price_per_wh``, the grid operator the rest."""

    buy: str
    sell: str
    quantity_wh: Wh
    price_per_wh: PricePerWh
    sell_price_per_wh: PricePerWh


@dataclass(frozen=True, eq=False)
class GridClearingResult:
    """The outcome of clearing one book on a grid; frozen, arrays read-only.

    Arrays by book row: ``order_node`` (node index), ``fill_wh``. By trade, in §5 order:
    ``trade_buy_rows``, ``trade_sell_rows``, ``trade_quantity_wh``, ``trade_price_per_wh``
    (what the buyer pays per Wh) and ``trade_sell_price_per_wh`` (what the seller receives).
    By node index of :attr:`grid`: ``node_prices`` (None where no price exists) and
    ``flows_wh`` (net Wh across the node's edge, + = export towards the root; 0 at the root).
    Compare results with :meth:`to_json_dict`.
    """

    book: OrderBook
    grid: Grid
    order_node: I64
    mechanism: Mechanism
    k: tuple[int, int]
    volume_wh: Wh
    node_prices: tuple[int | None, ...]
    flows_wh: tuple[int, ...]
    fill_wh: I64
    trade_buy_rows: I64
    trade_sell_rows: I64
    trade_quantity_wh: I64
    trade_price_per_wh: I64
    trade_sell_price_per_wh: I64

    @property
    def price(self) -> PricePerWh | None:
        """The root's price for ``uniform`` (None when nothing trades); None for pay-as-bid."""
        if self.mechanism != "uniform":
            return None
        root_price = self.node_prices[self.grid.root_index]
        return None if root_price is None else PricePerWh(root_price)

    @cached_property
    def trades(self) -> tuple[GridTrade, ...]:
        """The trade pairs as :class:`GridTrade` objects, in §5 order."""
        ids = self.book.ids
        return tuple(
            GridTrade(ids[b], ids[s], Wh(q), PricePerWh(p), PricePerWh(sp))
            for b, s, q, p, sp in zip(
                self.trade_buy_rows.tolist(),
                self.trade_sell_rows.tolist(),
                self.trade_quantity_wh.tolist(),
                self.trade_price_per_wh.tolist(),
                self.trade_sell_price_per_wh.tolist(),
                strict=True,
            )
        )

    @cached_property
    def fills(self) -> Mapping[str, Wh]:
        """Energy filled per order id (every order of the book, 0 if unfilled)."""
        return MappingProxyType(dict(zip(self.book.ids, self.fill_wh.tolist(), strict=True)))

    @cached_property
    def fee_revenue_base_units(self) -> BaseUnits:
        """``Σ_edges fee · |flow|``: what the edges' fees earn the grid operator."""
        terms = self.grid.edge_terms
        return BaseUnits(sum(terms[i][2] * abs(z) for i, z in enumerate(self.flows_wh) if z))

    @cached_property
    def grid_revenue_base_units(self) -> BaseUnits:
        """``Σ_trades q · (buyer price − seller price)``: all the grid operator receives."""
        spreads = (self.trade_price_per_wh - self.trade_sell_price_per_wh).tolist()
        return BaseUnits(
            sum(q * d for q, d in zip(self.trade_quantity_wh.tolist(), spreads, strict=True))
        )

    @property
    def congestion_rent_base_units(self) -> BaseUnits:
        """Grid revenue beyond the fees: the price of the edges at their caps."""
        return BaseUnits(self.grid_revenue_base_units - self.fee_revenue_base_units)

    def to_json_dict(self) -> dict[str, Any]:
        """The result in the JSON shape of docs/grid.md §7: DESIGN §4's keys (each trade with
        ``sell_price`` added), then ``node_prices``, ``flows`` and ``grid``."""
        ids = self.book.ids
        fill = self.fill_wh.tolist()
        rows = sorted(range(len(ids)), key=ids.__getitem__)
        nodes = self.grid.nodes
        return {
            "price": self.price,
            "volume_wh": self.volume_wh,
            "trades": [
                {
                    "buy": t.buy,
                    "sell": t.sell,
                    "quantity_wh": t.quantity_wh,
                    "price": t.price_per_wh,
                    "sell_price": t.sell_price_per_wh,
                }
                for t in self.trades
            ],
            "fills": {ids[row]: fill[row] for row in rows},
            "node_prices": {n.id: p for n, p in zip(nodes, self.node_prices, strict=True)},
            "flows": {
                n.id: z
                for i, (n, z) in enumerate(zip(nodes, self.flows_wh, strict=True))
                if i != self.grid.root_index
            },
            "grid": {
                "root": self.grid.grid_root_hex,
                "fee_revenue": self.fee_revenue_base_units,
                "congestion_rent": self.congestion_rent_base_units,
            },
        }


def locate_orders(
    book: OrderBook, grid: Grid, order_nodes: Sequence[str] | None, source: str = "orders"
) -> I64:
    """Node index of each row of ``book``; ``None`` puts every order at the root.

    Raises :class:`GridError` ``order.unknown_node`` naming the first row whose node the grid
    lacks.
    """
    if order_nodes is None:
        return _frozen(np.full(len(book), grid.root_index, dtype=np.int64))
    if isinstance(order_nodes, str) or len(order_nodes) != len(book):
        raise InputError(f"order_nodes: expected one node id per order ({len(book)})")
    index = grid.index
    try:
        located = np.fromiter((index[n] for n in order_nodes), dtype=np.int64, count=len(book))
    except (KeyError, TypeError):
        row = next(r for r, n in enumerate(order_nodes) if not isinstance(n, str) or n not in index)
        raise GridError(
            "order.unknown_node",
            f"{source}, row {row} (id {book.ids[row]!r}), field 'node': "
            f"{order_nodes[row]!r} is not a node of the grid",
        ) from None
    return _frozen(located)


def clear_grid(
    orders: OrderBook | Sequence[Order],
    grid: Grid,
    order_nodes: Sequence[str] | None = None,
    mechanism: str = "uniform",
    k: tuple[int, int] = DEFAULT_K,
) -> GridClearingResult:
    """Clear one interval's book on ``grid`` (docs/grid.md) and return the frozen result.

    ``order_nodes[r]`` is the node id of row ``r`` (None: all at the root). ``mechanism`` and
    ``k`` as in :func:`market.clearing.clear`; ``k`` sets the node prices under both
    mechanisms. Raises InputError for a bad mechanism or ``k``, :class:`GridError` for an
    unknown node.
    """
    book = orders if isinstance(orders, OrderBook) else OrderBook.from_orders(orders)
    if mechanism not in MECHANISMS:
        raise InputError(f"mechanism: {mechanism!r} is not one of {', '.join(MECHANISMS)}")
    mech: Mechanism = mechanism
    k_checked = _check_k(k)
    located = locate_orders(book, grid, order_nodes)
    wide = len(book) > 0 and int(book.price_per_wh.max()) + grid.largest_fee_path > INT64_MAX
    return _clear(book, grid, located, mech, k_checked, wide=wide)


LIST_ENGINE_MAX_ORDERS = 2_000
"""Books of at most this many orders clear on Python lists (:mod:`market.grid_lists`), larger
ones on numpy arrays; the two give identical results. Measured: the lists take a tenth of the
arrays' time at 100 orders on 116 nodes (0.3 against 4 ms), a third at 2,000 (2 against
6 ms), and the arrays win from about 3,000 orders on a 50-node tree; on deep paths the lists
win far beyond (the arrays pay per node)."""

Engine = Literal["lists", "arrays"]
"""``"lists"`` or ``"arrays"``: which implementation of the algorithm clears a book."""


def _clear(
    book: OrderBook,
    grid: Grid,
    located: I64,
    mechanism: Mechanism,
    k: tuple[int, int],
    *,
    wide: bool,
    engine: Engine | None = None,
) -> GridClearingResult:
    """:func:`clear_grid` after the checks; ``wide`` keeps the arrays' prices as Python ints;
    ``engine`` None chooses by the book's size (:data:`LIST_ENGINE_MAX_ORDERS`)."""
    if engine is None:
        engine = "lists" if len(book) <= LIST_ENGINE_MAX_ORDERS else "arrays"
    tiebreak = _tiebreak(book)
    if engine == "lists":
        is_buy = book.is_buy.tolist()
        fill_list, flows, own_intervals, pairs = clear_on_lists(
            grid,
            located.tolist(),
            is_buy,
            book.quantity_wh.tolist(),
            book.price_per_wh.tolist(),
            tiebreak.tolist(),
            _priority_ranks(book),
        )
        fill = np.array(fill_list, dtype=np.int64)
        buy_rows, sell_rows, quantity = (np.array(x, dtype=np.int64) for x in pairs)
        volume = sum(f for f, buy in zip(fill_list, is_buy, strict=True) if not buy)
    elif engine == "arrays":
        fill, flows, own_intervals, (buy_rows, sell_rows, quantity) = clear_on_arrays(
            book, grid, located, tiebreak, wide=wide
        )
        volume = int(fill[~book.is_buy].sum())
    else:
        raise ValueError(f"unknown engine {engine!r}")  # pragma: no cover - a programming error
    node_prices = _node_prices(grid, own_intervals, flows, volume, k)
    trade_price, sell_price = _trade_prices(
        book, located, node_prices, buy_rows, sell_rows, mechanism
    )
    return GridClearingResult(
        book=book,
        grid=grid,
        order_node=located,
        mechanism=mechanism,
        k=k,
        volume_wh=Wh(volume),
        node_prices=tuple(node_prices),
        flows_wh=tuple(flows),
        fill_wh=_frozen(fill),
        trade_buy_rows=_frozen(buy_rows),
        trade_sell_rows=_frozen(sell_rows),
        trade_quantity_wh=_frozen(quantity),
        trade_price_per_wh=_frozen(trade_price),
        trade_sell_price_per_wh=_frozen(sell_price),
    )


def _priority_ranks(book: OrderBook) -> list[int]:
    """Each row's position in §4 priority among its own side: bids by bid priority, asks by
    ask priority."""
    rank = np.zeros(len(book), dtype=np.int64)
    for buy in (False, True):
        rows = priority_order(book, buy=buy)
        rank[rows] = np.arange(len(rows), dtype=np.int64)
    return rank.tolist()


def _tiebreak(book: OrderBook) -> I64:
    """The key's last part (§3.1) as one int per row: equal-price steps sort by it.

    With ``r`` the rank of ``(seq, id)`` among all orders, a sell gets ``r`` and a buy
    ``2N − r``: sells before buys, sells by ``(seq, id)`` ascending, buys descending.
    """
    n = len(book)
    order = np.argsort(book.seq, kind="stable")
    seq_sorted = book.seq[order]
    tied = seq_sorted[1:] == seq_sorted[:-1]
    if tied.any():
        _break_ties_by_id(order, tied, book.ids)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)
    return np.where(book.is_buy, 2 * n - rank, rank)


def _node_prices(
    grid: Grid,
    own_intervals: Sequence[OwnInterval],
    flows: Sequence[int],
    volume_wh: int,
    k: tuple[int, int],
) -> list[int | None]:
    """Each node's price (§4): own interval ∩ edge interval, then the k-price; root first."""
    prices: list[int | None] = [None] * len(grid)
    if volume_wh == 0:
        return prices
    nodes, parent_index, terms = grid.nodes, grid.parent_index, grid.edge_terms
    for node in grid.pre_order:
        lower, upper = own_intervals[node]
        parent = parent_index[node]
        parent_price = prices[parent] if parent >= 0 else None
        if parent_price is not None:
            import_cap, export_cap, fee = terms[node]
            flow = flows[node]
            if export_cap is None or flow < export_cap:  # more export must not pay
                bound = parent_price - fee
                lower = bound if lower is None or bound > lower else lower
            if flow < 0:  # the import pays
                bound = parent_price + fee
                lower = bound if lower is None or bound > lower else lower
            if import_cap is None or flow > -import_cap:  # more import must not pay
                bound = parent_price + fee
                upper = bound if upper is None or bound < upper else upper
            if flow > 0:  # the export pays
                bound = parent_price - fee
                upper = bound if upper is None or bound < upper else upper
        if lower is not None and upper is not None:
            if lower > upper:  # pragma: no cover - §4 proves the interval is never empty
                raise AssertionError(f"node {nodes[node].id}: empty price interval")
            prices[node] = k_price(lower, upper, k)
        else:
            prices[node] = lower if lower is not None else upper
    return prices


def _trade_prices(
    book: OrderBook,
    located: I64,
    node_prices: Sequence[int | None],
    buy_rows: I64,
    sell_rows: I64,
    mechanism: Mechanism,
) -> tuple[I64, I64]:
    """Buyer and seller price of each pair (§4 Mechanisms).

    ``uniform``: each side pays or gets its node's price. ``pay-as-bid``: the buyer pays its
    limit, the seller gets the limit less the price difference of the two nodes. A node with a
    filled order has a price in ``[1, max limit]`` (P4), so the arrays are ``int64``.
    """
    node_price = np.array(
        [p if p is not None and 1 <= p <= INT64_MAX else 0 for p in node_prices], dtype=np.int64
    )
    buyer_node_price = node_price[located[buy_rows]]
    seller_node_price = node_price[located[sell_rows]]
    if len(buy_rows) and (buyer_node_price.min() < 1 or seller_node_price.min() < 1):
        raise AssertionError("a node with a filled order has no price")  # pragma: no cover
    if mechanism == "uniform":
        return buyer_node_price, seller_node_price
    bid_limit = book.price_per_wh[buy_rows]
    return bid_limit.copy(), bid_limit - (buyer_node_price - seller_node_price)
