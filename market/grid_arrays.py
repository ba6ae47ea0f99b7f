"""The grid clearing of :mod:`market.grid_clearing` on numpy arrays, for large books.

Every node's list (docs/grid.md §3.2) is a handful of arrays (price, Wh, source) sorted with
one ``lexsort``; the top-down pass, own intervals (§4) and trade pairs (§5) work on them with
a few numpy calls per node, whatever the node's size. That cost per node is what makes small
books faster on :mod:`market.grid_lists`; the two give identical results.

Effective prices are ``int64`` when the book's largest limit plus ``F`` fits (``wide`` False),
else Python ints in object arrays (slower, same results).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from market.clearing import priority_order
from market.grid import Grid
from market.grid_lists import OwnInterval
from market.orders import I64, OrderBook

_EMPTY = np.zeros(0, dtype=np.int64)
_EMPTY.flags.writeable = False


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


def clear_on_arrays(
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
