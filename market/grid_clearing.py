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
    (:mod:`market.grid_lists`), larger ones here on numpy arrays, each list a handful of
    arrays (price, Wh, source) sorted with one ``lexsort``. numpy costs some twenty calls, a
    few dozen µs, per node whatever its size: on a feeder of a hundred nodes and a few dozen
    orders that is ten times the lists' cost, while 100k orders need the arrays. Both run
    the same steps and give identical results (tests/test_grid_engines.py forces each).

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
from market.grid_lists import OwnInterval, clear_on_lists
from market.orders import I64, Order, OrderBook

INT64_MAX = 2**63 - 1
_EMPTY = np.zeros(0, dtype=np.int64)
_EMPTY.flags.writeable = False


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
        return BaseUnits(
            sum(n.fee_per_wh * abs(z) for n, z in zip(self.grid.nodes, self.flows_wh, strict=True))
        )

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


@dataclass(frozen=True, slots=True)
class _NodeList:
    """A node's list (§3.2) in key order: price, Wh and source of each step.

    ``source >= 0`` is an own order's book row; ``-(c + 1)`` a step of child node ``c``'s
    outgoing list. ``ends`` is the cumulative Wh. ``y0`` is where the list starts on the net
    export axis, ``y0_out`` where the clipped outgoing list ``H`` starts.
    """

    price: NDArray[Any]
    quantity_wh: I64
    source: I64
    ends: I64
    y0: int
    y0_out: int


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """``H_v``: the list a node hands its parent (price, Wh, tie-break key), in key order."""

    price: NDArray[Any]
    quantity_wh: I64
    tiebreak: I64
    y0: int


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
        fill, flows, own_intervals, (buy_rows, sell_rows, quantity) = _clear_on_arrays(
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


def _clear_on_arrays(
    book: OrderBook, grid: Grid, located: I64, tiebreak: I64, *, wide: bool
) -> tuple[I64, list[int], list[OwnInterval], tuple[I64, I64, I64]]:
    """The algorithm on numpy arrays: fills, flows, own intervals (§4) and trade pairs."""
    n_nodes = len(grid)
    by_node = np.argsort(located, kind="stable")
    bounds = np.searchsorted(located[by_node], np.arange(n_nodes + 1))
    own_rows = [by_node[bounds[v] : bounds[v + 1]] for v in range(n_nodes)]
    price = book.price_per_wh.astype(object) if wide else book.price_per_wh

    own_buy = np.zeros(n_nodes, dtype=np.int64)
    np.add.at(own_buy, located[book.is_buy], book.quantity_wh[book.is_buy])
    own_buy_wh = own_buy.tolist()

    lists: list[_NodeList | None] = [None] * n_nodes
    outgoing: list[_Outgoing | None] = [None] * n_nodes
    children: list[list[int]] = [[] for _ in range(n_nodes)]
    for node in grid.post_order:
        parent = grid.parent_index[node]
        if parent >= 0:
            children[parent].append(node)
        node_list, out = _bottom_up(
            grid,
            node,
            own_rows[node],
            own_buy_wh[node],
            children[node],
            outgoing,
            book,
            price,
            tiebreak,
        )
        lists[node] = node_list
        outgoing[node] = out
        for child in children[node]:
            outgoing[child] = None  # merged into this node's list; free it

    flows = [0] * n_nodes
    fill = np.zeros(len(book), dtype=np.int64)
    taken_at: list[int] = [0] * n_nodes
    child_slot = np.zeros(n_nodes, dtype=np.int64)
    for kids in children:
        child_slot[kids] = np.arange(len(kids), dtype=np.int64)
    for node in grid.pre_order:
        here = lists[node]
        assert here is not None
        taken = flows[node] - here.y0
        taken_at[node] = taken
        _top_down(here, taken, children[node], child_slot, lists, flows, book, fill)

    own_intervals: list[OwnInterval] = []
    if fill[~book.is_buy].any():  # no prices at zero volume (§4): skip the searches
        for node, here in enumerate(lists):
            assert here is not None
            own_intervals.append(_own_interval(here, taken_at[node]))
    pairs = _pairs(grid, own_rows, children, book, fill)
    return fill, flows, own_intervals, pairs


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


def _key_order(price: NDArray[Any], tiebreak: I64) -> I64:
    """Positions sorted by the key ``(price, tiebreak)``, which is total (§3.1)."""
    if price.dtype != object:
        return np.lexsort((tiebreak, price))
    pairs = list(zip(price.tolist(), tiebreak.tolist(), strict=True))
    return np.array(sorted(range(len(pairs)), key=pairs.__getitem__), dtype=np.int64)


def _bottom_up(
    grid: Grid,
    node: int,
    rows: I64,
    own_buy_wh: int,
    kids: list[int],
    outgoing: list[_Outgoing | None],
    book: OrderBook,
    price: NDArray[Any],
    tiebreak: I64,
) -> tuple[_NodeList, _Outgoing | None]:
    """Build ``List_v`` and, below the root, ``H_v`` (§3.2 steps 1-3)."""
    y0 = -own_buy_wh
    if not kids:
        # A leaf: its own orders alone (most nodes of a feeder).
        step_price = price[rows]
        step_quantity = book.quantity_wh[rows]
        step_tiebreak = tiebreak[rows]
        step_source = rows
    else:
        parts_price = [price[rows]]
        parts_quantity = [book.quantity_wh[rows]]
        parts_tiebreak = [tiebreak[rows]]
        codes = [-1]
        lengths = [len(rows)]
        for child in kids:
            out = outgoing[child]
            assert out is not None
            y0 += out.y0
            parts_price.append(out.price)
            parts_quantity.append(out.quantity_wh)
            parts_tiebreak.append(out.tiebreak)
            codes.append(-(child + 1))
            lengths.append(len(out.quantity_wh))
        step_price = np.concatenate(parts_price)
        step_quantity = np.concatenate(parts_quantity)
        step_tiebreak = np.concatenate(parts_tiebreak)
        step_source = np.repeat(np.array(codes, dtype=np.int64), lengths)
        step_source[: len(rows)] = rows
    if len(step_quantity) > 1:
        order = _key_order(step_price, step_tiebreak)
        step_price = step_price[order]
        step_quantity = step_quantity[order]
        step_tiebreak = step_tiebreak[order]
        step_source = step_source[order]
    ends = np.cumsum(step_quantity)
    total = int(ends[-1]) if len(ends) else 0
    y1 = y0 + total
    y0_out = y0
    out_list: _Outgoing | None = None
    if node != grid.root_index:
        edge = grid.nodes[node]
        low = y0 if edge.import_cap_wh is None else max(y0, -edge.import_cap_wh)
        high = y1 if edge.export_cap_wh is None else min(y1, edge.export_cap_wh)
        y0_out = low
        out_list = _clip_and_shift(
            step_price, step_quantity, step_tiebreak, ends, y0, low, high, edge.fee_per_wh
        )
    node_list = _NodeList(
        price=step_price,
        quantity_wh=step_quantity,
        source=step_source,
        ends=ends,
        y0=y0,
        y0_out=y0_out,
    )
    return node_list, out_list


def _clip_and_shift(
    step_price: NDArray[Any],
    step_quantity: I64,
    step_tiebreak: I64,
    ends: I64,
    y0: int,
    low: int,
    high: int,
    fee: int,
) -> _Outgoing:
    """``H_v``: the list clipped to ``[low, high]``, split at 0 and shifted by ``∓fee``.

    Every step holds at least 1 Wh (orders by ``MIN_QUANTITY_WH``, a child's steps by this
    clipping), so ``start < end`` on each and both ascend.
    """
    out_end = ends + y0
    if len(out_end) == 0 or (low <= y0 and int(out_end[-1]) <= high):
        # Nothing to clip (the common case: the list fits the edge's caps).
        out_start = out_end - step_quantity
        out_price = step_price
        out_tiebreak = step_tiebreak
    else:
        start = out_end - step_quantity
        clipped_start = np.maximum(start, low)
        clipped_end = np.minimum(out_end, high)
        keep = clipped_end > clipped_start
        out_price = step_price[keep]
        out_start = clipped_start[keep]
        out_end = clipped_end[keep]
        out_tiebreak = step_tiebreak[keep]
    if fee > 0:
        # The one step that straddles 0, if any, is the first to end above 0.
        i = int(np.searchsorted(out_end, 0, side="right"))
        if i < len(out_end) and out_start[i] < 0:
            out_price = np.concatenate((out_price[: i + 1], out_price[i:]))
            out_tiebreak = np.concatenate((out_tiebreak[: i + 1], out_tiebreak[i:]))
            out_start = np.concatenate((out_start[: i + 1], _ZERO, out_start[i + 1 :]))
            out_end = np.concatenate((out_end[:i], _ZERO, out_end[i:]))
        # Importing less earns the fee back; exporting more pays it.
        out_price = np.where(out_end <= 0, out_price - fee, out_price + fee)
    return _Outgoing(out_price, out_end - out_start, out_tiebreak, low)


_ZERO = np.zeros(1, dtype=np.int64)
_ZERO.flags.writeable = False


def _top_down(
    node_list: _NodeList,
    taken_wh: int,
    kids: list[int],
    child_slot: I64,
    lists: Sequence[_NodeList | None],
    flows: list[int],
    book: OrderBook,
    fill: I64,
) -> None:
    """Take the first ``taken_wh`` Wh of a node's list (§3.3): own fills, children's flows."""
    quantity = node_list.quantity_wh
    taken = np.minimum(np.maximum(taken_wh - (node_list.ends - quantity), 0), quantity)
    source = node_list.source
    own = source >= 0
    rows = source[own]
    own_taken = taken[own]
    # A taken sell step is filled; a taken buy step is left unfilled.
    fill[rows] = np.where(book.is_buy[rows], book.quantity_wh[rows] - own_taken, own_taken)
    if kids:
        per_child = np.zeros(len(kids), dtype=np.int64)
        np.add.at(per_child, child_slot[-source[~own] - 1], taken[~own])
        for child, child_taken in zip(kids, per_child.tolist(), strict=True):
            child_list = lists[child]
            assert child_list is not None
            flows[child] = child_list.y0_out + child_taken


def _own_interval(node_list: _NodeList, taken_wh: int) -> tuple[int | None, int | None]:
    """``[L_v, U_v]`` (§4): price of the last taken Wh and of the first untaken one."""
    ends = node_list.ends
    total = int(ends[-1]) if len(ends) else 0
    lower = upper = None
    if taken_wh > 0:
        lower = int(node_list.price[int(np.searchsorted(ends, taken_wh, side="left"))])
    if taken_wh < total:
        upper = int(node_list.price[int(np.searchsorted(ends, taken_wh, side="right"))])
    return lower, upper


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
    nodes, parent_index = grid.nodes, grid.parent_index
    for node in grid.pre_order:
        lower, upper = own_intervals[node]
        parent = parent_index[node]
        parent_price = prices[parent] if parent >= 0 else None
        if parent_price is not None:
            edge = nodes[node]
            flow, fee = flows[node], edge.fee_per_wh
            export_cap, import_cap = edge.export_cap_wh, edge.import_cap_wh
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


def _pairs(
    grid: Grid,
    own_rows: Sequence[I64],
    children: Sequence[list[int]],
    book: OrderBook,
    fill: I64,
) -> tuple[I64, I64, I64]:
    """Trade pairs (§5): buy rows, sell rows and Wh, nodes in post-order, walk order within.

    At each node the filled own orders and the children's remainders are paired by §4's walk
    in §4 priority; the unpaired rest (sells worth the node's export, or buys worth its
    import) is the node's remainder, handed to the parent.
    """
    ask_rank = np.empty(len(book), dtype=np.int64)
    bid_rank = np.empty(len(book), dtype=np.int64)
    asks = priority_order(book, buy=False)
    bids = priority_order(book, buy=True)
    ask_rank[asks] = np.arange(len(asks), dtype=np.int64)
    bid_rank[bids] = np.arange(len(bids), dtype=np.int64)

    remainders: list[tuple[I64, I64, bool] | None] = [None] * len(grid)
    out_buy: list[I64] = []
    out_sell: list[I64] = []
    out_quantity: list[I64] = []
    for node in grid.post_order:
        rows = own_rows[node]
        filled = fill[rows]
        has_fill = filled > 0
        if not children[node]:
            # A leaf: nothing to pair but its own orders; one filled order (or none) is
            # its remainder as it stands.
            if not has_fill.any():
                continue
            if int(has_fill.sum()) == 1:
                row = rows[has_fill]
                remainders[node] = (row, filled[has_fill], not bool(book.is_buy[row[0]]))
                continue
        rows = rows[has_fill]
        is_buy = book.is_buy[rows]
        sells, buys = [rows[~is_buy]], [rows[is_buy]]
        sell_wh, buy_wh = [fill[sells[0]]], [fill[buys[0]]]
        for child in children[node]:
            remainder = remainders[child]
            remainders[child] = None
            if remainder is not None:
                rem_rows, rem_wh, rem_sells = remainder
                (sells if rem_sells else buys).append(rem_rows)
                (sell_wh if rem_sells else buy_wh).append(rem_wh)
        sell_rows, sell_q = _in_priority(sells, sell_wh, ask_rank)
        buy_rows, buy_q = _in_priority(buys, buy_wh, bid_rank)
        trade_sell, trade_buy, quantity, unpaired = _walk_filled(sell_q, buy_q)
        out_sell.append(sell_rows[trade_sell])
        out_buy.append(buy_rows[trade_buy])
        out_quantity.append(quantity)
        if unpaired is not None:
            first, first_wh, rem_sells = unpaired
            rem_rows = (sell_rows if rem_sells else buy_rows)[first:]
            rem_wh = (sell_q if rem_sells else buy_q)[first:].copy()
            rem_wh[0] = first_wh
            remainders[node] = (rem_rows, rem_wh, rem_sells)
    if remainders[grid.root_index] is not None:  # pragma: no cover - the Lemma of §5
        raise AssertionError("trade pairs: energy left unpaired at the root")
    return (
        np.concatenate(out_buy) if out_buy else _EMPTY.copy(),
        np.concatenate(out_sell) if out_sell else _EMPTY.copy(),
        np.concatenate(out_quantity) if out_quantity else _EMPTY.copy(),
    )


def _in_priority(rows: list[I64], wh: list[I64], rank: I64) -> tuple[I64, I64]:
    """Concatenate the parts and sort them by ``rank`` (§4 priority)."""
    all_rows = np.concatenate(rows)
    order = np.argsort(rank[all_rows], kind="stable")
    return all_rows[order], np.concatenate(wh)[order]


def _walk_filled(sell_q: I64, buy_q: I64) -> tuple[I64, I64, I64, tuple[int, int, bool] | None]:
    """§4's two-pointer walk over filled orders (no price test), computed like
    :func:`market.clearing._walk`: the segments between the merged cumulative ends.

    Returns the sell and buy positions and Wh of each pair, and the remainder as
    ``(first position, its unpaired Wh, True if sells)`` or None.
    """
    sell_ends = np.cumsum(sell_q)
    buy_ends = np.cumsum(buy_q)
    sell_total = int(sell_ends[-1]) if len(sell_ends) else 0
    buy_total = int(buy_ends[-1]) if len(buy_ends) else 0
    volume = min(sell_total, buy_total)
    remainder: tuple[int, int, bool] | None = None
    if sell_total != buy_total:
        ends, rem_sells = (sell_ends, True) if sell_total > buy_total else (buy_ends, False)
        first = int(np.searchsorted(ends, volume, side="right"))
        remainder = (first, int(ends[first]) - volume, rem_sells)
    if volume == 0:
        return _EMPTY, _EMPTY, _EMPTY, remainder
    sell_cut = sell_ends[: int(np.searchsorted(sell_ends, volume, side="left")) + 1]
    buy_cut = buy_ends[: int(np.searchsorted(buy_ends, volume, side="left")) + 1]
    sell_cut[-1] = volume  # a view of a fresh cumsum: safe to write
    buy_cut[-1] = volume
    ends = np.union1d(sell_cut, buy_cut)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1]
    trade_sell = np.searchsorted(sell_cut, starts, side="right").astype(np.int64)
    trade_buy = np.searchsorted(buy_cut, starts, side="right").astype(np.int64)
    return trade_sell, trade_buy, ends - starts, remainder


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
