"""The grid clearing of :mod:`market.grid_clearing` on plain Python lists, for small books.

The same algorithm (docs/grid.md §3, §4's own intervals, §5), step for step, with each list
a Python list of ``(price, tiebreak, Wh, source)`` tuples instead of numpy arrays. On a
feeder of a hundred nodes and a few dozen orders most lists hold a handful of steps, and
numpy's cost per call (a microsecond or more, some twenty calls per node) outweighs the work;
here a node whose subtree holds no order costs a few list look-ups. Large books stay on the
arrays (:func:`market.grid_clearing.clear_grid` chooses by the book's size), and a
differential test holds the two to identical results.

A step's ``source`` is an own order's book row (``>= 0``) or ``~c`` (``-(c + 1)``) for a step
of child ``c``'s outgoing list ``H_c``. ``(price, tiebreak)`` is the key of §3.1 and unique
within a list (two steps of one order at one node differ in price), so sorting the tuples
sorts by the key alone. Prices are Python ints, exact however wide.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence
from typing import NamedTuple

from market.grid import Grid

Step = tuple[int, int, int, int]
"""``(effective price, tie-break key, Wh, source)``."""

OwnInterval = tuple[int | None, int | None]
"""``(L_v, U_v)`` of §4; None for −∞ / +∞."""


def clear_on_lists(
    grid: Grid,
    located: Sequence[int],
    is_buy: Sequence[bool],
    quantity_wh: Sequence[int],
    price: Sequence[int],
    tiebreak: Sequence[int],
    rank: Sequence[int],
) -> tuple[list[int], list[int], list[OwnInterval], tuple[list[int], list[int], list[int]]]:
    """Fills by row, flows by node, own intervals by node and the trade pairs (buy rows,
    sell rows, Wh) of one book, all by row of the book's columns.

    ``located[r]`` is row ``r``'s node; ``tiebreak`` as :func:`market.grid_clearing._tiebreak`;
    ``rank`` each row's position in §4 priority among the orders of its side.
    """
    own: list[list[int]] = [[] for _ in range(len(grid))]
    for row, node in enumerate(located):
        own[node].append(row)
    bottom_up = _bottom_up(grid, own, is_buy, quantity_wh, price, tiebreak)
    fill, flows, own_intervals = _top_down(grid, own, bottom_up, is_buy, quantity_wh)
    pairs = _pairs(grid, own, is_buy, fill, rank)
    return fill, flows, own_intervals, pairs


class _BottomUp(NamedTuple):
    """What the bottom-up pass leaves for the top-down one, by node: ``List_v`` and where it
    starts and ends (``y0_v``, ``y1_v``), and where ``H_v`` starts and ends (``y0'_v``,
    ``y1'_v``)."""

    lists: list[list[Step]]
    starts: list[int]
    ends: list[int]
    out_starts: list[int]
    out_ends: list[int]


def _bottom_up(
    grid: Grid,
    own: Sequence[list[int]],
    is_buy: Sequence[bool],
    quantity_wh: Sequence[int],
    price: Sequence[int],
    tiebreak: Sequence[int],
) -> _BottomUp:
    """``List_v``, ``y0_v``, ``y1_v``, ``y0'_v`` and ``y1'_v`` of every node (§3.2)."""
    n = len(grid)
    children, terms, root = grid.children, grid.edge_terms, grid.root_index
    lists: list[list[Step]] = [[]] * n  # every node's is set below
    starts = [0] * n
    ends = [0] * n
    out_starts = [0] * n
    out_ends = [0] * n
    outgoing: list[list[Step] | None] = [None] * n
    for node in grid.post_order:
        y0 = y1 = 0
        steps: list[Step] = []
        for row in own[node]:
            q = quantity_wh[row]
            steps.append((price[row], tiebreak[row], q, row))
            if is_buy[row]:
                y0 -= q
            else:
                y1 += q
        longest: list[Step] = steps
        for child in children[node]:
            y0 += out_starts[child]
            y1 += out_ends[child]
            handed = outgoing[child]
            if handed:
                outgoing[child] = None  # merged into this node's list; free it
                if len(handed) > len(longest):
                    handed, longest = longest, handed
                if handed is not steps:
                    steps += handed
        if longest is not steps:
            # Merge the few other steps into the longest list (sorted, and handed over by
            # a child, so this node may keep it) rather than sort all of them again.
            if len(steps) <= _FEW_STEPS:
                for step in steps:
                    insort(longest, step)
                steps = longest
            else:
                steps += longest
                steps.sort()
        elif len(steps) > 1:
            steps.sort()
        lists[node] = steps
        starts[node] = y0
        ends[node] = y1
        if node == root:
            continue
        import_cap, export_cap, fee = terms[node]
        low = y0 if import_cap is None or y0 >= -import_cap else -import_cap
        high = y1 if export_cap is None or y1 <= export_cap else export_cap
        out_starts[node] = low
        out_ends[node] = high
        if not steps:
            continue
        if len(steps) == 1 and (not fee or high <= 0 or low >= 0):
            # One step (a house's one order, most leaves of a feeder), not split at 0: the
            # clip leaves [low, high] of it, the fee moves it one way.
            if high > low:
                p, t, _q, _source = steps[0]
                shifted = p if not fee else p - fee if high <= 0 else p + fee
                outgoing[node] = [(shifted, t, high - low, ~node)]
        elif len(steps) > _SHORT_LIST:
            if low != y0 or high != y1:
                steps = _clip(steps, y0, low, high)
            outgoing[node] = _shift(steps, low, high, fee, ~node)
        else:
            outgoing[node] = _clip_and_shift(steps, y0, low, high, fee, ~node)
    return _BottomUp(lists, starts, ends, out_starts, out_ends)


_FEW_STEPS = 8
"""Up to this many steps are inserted one by one into a node's longest incoming list."""

_SHORT_LIST = 6
"""Lists up to this many steps are clipped and shifted in one loop; longer ones by slices
and comprehensions, which cost more to set up and less per step."""


def _clip_and_shift(
    steps: list[Step], y0: int, low: int, high: int, fee: int, code: int
) -> list[Step]:
    """:func:`_clip` then :func:`_shift` in one pass (for short lists)."""
    out: list[Step] = []
    start = y0
    for p, t, q, _source in steps:
        end = start + q
        a = start if start > low else low
        b = end if end < high else high
        if b > a:
            if not fee:
                out.append((p, t, b - a, code))
            elif b <= 0:
                out.append((p - fee, t, b - a, code))
            elif a >= 0:
                out.append((p + fee, t, b - a, code))
            else:
                out.append((p - fee, t, -a, code))
                out.append((p + fee, t, b, code))
        start = end
    return out


def _clip(steps: list[Step], y0: int, low: int, high: int) -> list[Step]:
    """The steps' parts inside ``[low, high]``, the list laid from ``y0``; a step cut by a
    bound keeps its inside part (§3.2)."""
    kept: list[Step] = []
    start = y0
    for p, t, q, source in steps:
        end = start + q
        if end > low:
            if start >= high:
                break
            a = start if start > low else low
            b = end if end < high else high
            if b > a:  # not so when both caps are 0: nothing is kept
                kept.append((p, t, b - a, source))
        start = end
    return kept


def _shift(steps: list[Step], low: int, high: int, fee: int, code: int) -> list[Step]:
    """``H_v`` from the clipped list on ``[low, high]``: split at 0 and shifted by ``∓fee``
    (importing less earns the fee back, exporting more pays it); every step's source becomes
    ``code``, the child's mark in its parent's list."""
    if not fee:
        return [(p, t, q, code) for p, t, q, _ in steps]
    if high <= 0:
        return [(p - fee, t, q, code) for p, t, q, _ in steps]
    if low >= 0:
        return [(p + fee, t, q, code) for p, t, q, _ in steps]
    # The one step that ends above 0 first is the one that straddles 0, or starts at it.
    end = low
    i = 0
    for i, (_p, _t, q, _s) in enumerate(steps):  # noqa: B007 - i is used after the loop
        end += q
        if end > 0:
            break
    p, t, q, _ = steps[i]
    start = end - q
    out = [(p - fee, t, q, code) for p, t, q, _ in steps[:i]]
    if start < 0:
        out.append((p - fee, t, -start, code))
        out.append((p + fee, t, end, code))
    else:
        out.append((p + fee, t, q, code))
    out += [(p + fee, t, q, code) for p, t, q, _ in steps[i + 1 :]]
    return out


def _top_down(
    grid: Grid,
    own: Sequence[list[int]],
    bottom_up: _BottomUp,
    is_buy: Sequence[bool],
    quantity_wh: Sequence[int],
) -> tuple[list[int], list[int], list[OwnInterval]]:
    """Take the first ``T_v`` Wh of each node's list (§3.3), roots first: fills, flows and
    each node's own interval ``[L_v, U_v]`` (§4).

    Each list is walked from the end nearer its boundary: from the start over the taken
    steps when less than half its Wh are taken, else from the end over the untaken ones
    (near the root most Wh are taken).
    """
    n = len(grid)
    children = grid.children
    lists, starts, ends, out_starts, out_ends = bottom_up
    flows = [0] * n
    child_wh = [0] * n  # Wh of each child's steps walked over in its parent's list
    own_intervals: list[OwnInterval] = [(None, None)] * n
    # An untaken buy step is unfilled, so every buy starts filled and loses what is taken.
    fill = [q if buy else 0 for q, buy in zip(quantity_wh, is_buy, strict=True)]
    for node in grid.pre_order:
        steps = lists[node]
        if not steps:
            continue  # no orders below: no flow on any edge of the subtree
        y0 = starts[node]
        taken = flows[node] - y0
        total = ends[node] - y0
        kids = children[node]
        if 2 * taken <= total:
            own_intervals[node] = _take_from_start(steps, taken, is_buy, fill, child_wh)
            for child in kids:
                flows[child] = out_starts[child] + child_wh[child]
        else:
            for row in own[node]:  # wholly taken, unless walked over below
                fill[row] = 0 if is_buy[row] else quantity_wh[row]
            own_intervals[node] = _untake_from_end(steps, total - taken, is_buy, fill, child_wh)
            for child in kids:
                flows[child] = out_ends[child] - child_wh[child]
    return fill, flows, own_intervals


def _take_from_start(
    steps: list[Step],
    taken: int,
    is_buy: Sequence[bool],
    fill: list[int],
    child_wh: list[int],
) -> OwnInterval:
    """Walk the first ``taken`` Wh: fill own sells, unfill own buys, count each child's
    taken Wh; the own interval. Own orders not walked over keep their untaken fills."""
    if not taken:
        return None, steps[0][0]
    walk = iter(steps)
    end = 0
    for p, _t, q, source in walk:  # noqa: B007 - the wholly taken steps, then the last
        end += q
        if end >= taken:
            break
        if source >= 0:
            fill[source] = 0 if is_buy[source] else q
        else:
            child_wh[~source] += q
    part = taken - (end - q)  # of the step holding the last taken Wh
    if source >= 0:
        fill[source] = q - part if is_buy[source] else part
    else:
        child_wh[~source] += part
    # The first untaken Wh: in this step, else in the next one, else none.
    return p, p if end > taken else next((s[0] for s in walk), None)


def _untake_from_end(
    steps: list[Step],
    untaken: int,
    is_buy: Sequence[bool],
    fill: list[int],
    child_wh: list[int],
) -> OwnInterval:
    """Walk the last ``untaken`` Wh backwards: unfill own sells, fill own buys, count each
    child's untaken Wh; the own interval. Own orders not walked over must already hold their
    wholly taken fills."""
    if not untaken:
        return steps[-1][0], None
    walk = reversed(steps)
    start = 0  # counted back from the end
    for p, _t, q, source in walk:  # noqa: B007 - the wholly untaken steps, then the last
        start += q
        if start >= untaken:
            break
        if source >= 0:
            fill[source] = q if is_buy[source] else 0
        else:
            child_wh[~source] += q
    part = untaken - (start - q)  # of the step holding the first untaken Wh
    if source >= 0:
        fill[source] = part if is_buy[source] else q - part
    else:
        child_wh[~source] += part
    # The last taken Wh: in this step, else in the one before it (there is one: taken > 0).
    return (p if start > untaken else next(walk)[0]), p


def _pairs(
    grid: Grid,
    own: Sequence[list[int]],
    is_buy: Sequence[bool],
    fill: Sequence[int],
    rank: Sequence[int],
) -> tuple[list[int], list[int], list[int]]:
    """Trade pairs (§5): buy rows, sell rows and Wh, nodes in post-order, walk order within.

    Each node pairs its filled orders and its children's remainders, each side sorted by §4
    priority (the rank), by §4's two-pointer walk; the unpaired rest goes up.
    """
    remainders: list[tuple[bool, list[tuple[int, int, int]]] | None] = [None] * len(grid)
    children = grid.children
    buy_rows: list[int] = []
    sell_rows: list[int] = []
    quantities: list[int] = []
    for node in grid.post_order:
        sells: list[tuple[int, int, int]] = []
        buys: list[tuple[int, int, int]] = []
        for row in own[node]:
            filled = fill[row]
            if filled:
                if is_buy[row]:
                    buys.append((rank[row], row, filled))
                else:
                    sells.append((rank[row], row, filled))
        for child in children[node]:
            remainder = remainders[child]
            if remainder is not None:
                remainders[child] = None
                (sells if remainder[0] else buys).extend(remainder[1])
        if not buys or not sells:
            if sells or buys:
                rest = sells or buys
                rest.sort()
                remainders[node] = (bool(sells), rest)
            continue
        sells.sort()
        buys.sort()
        i = j = 0
        _rank, sell_row, sell_left = sells[0]
        _rank, buy_row, buy_left = buys[0]
        while True:
            q = sell_left if sell_left < buy_left else buy_left
            sell_rows.append(sell_row)
            buy_rows.append(buy_row)
            quantities.append(q)
            sell_left -= q
            buy_left -= q
            if not sell_left:
                i += 1
                if i < len(sells):
                    _rank, sell_row, sell_left = sells[i]
            if not buy_left:
                j += 1
                if j < len(buys):
                    _rank, buy_row, buy_left = buys[j]
            if i == len(sells) or j == len(buys):
                break
        if i < len(sells):
            remainders[node] = (True, [(sells[i][0], sell_row, sell_left), *sells[i + 1 :]])
        elif j < len(buys):
            remainders[node] = (False, [(buys[j][0], buy_row, buy_left), *buys[j + 1 :]])
    if remainders[grid.root_index] is not None:  # pragma: no cover - the Lemma of §5
        raise AssertionError("trade pairs: energy left unpaired at the root")
    return buy_rows, sell_rows, quantities
