"""A deliberately simple clearing, written line by line from DESIGN §4, to test against.

It sorts Python objects and steps the two-pointer walk one pair at a time: slow
(``O(n log n)`` Python operations), but short enough to check by reading. The tests assert that
:func:`market.clearing.clear` agrees with it exactly on random books (a differential test, as
Uniswap v4 checks ``LiquidityMath`` against ``LiquidityMathRef``). Nothing else uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from market.orders import Order, Side


@dataclass(frozen=True)
class ReferenceResult:
    """What the reference computes; trades are ``(buy id, sell id, quantity_wh, price)``."""

    price: int | None
    bounds: tuple[int, int] | None
    volume_wh: int
    trades: list[tuple[str, str, int, int]]
    fills: dict[str, int]


def reference_clear(
    orders: Sequence[Order], mechanism: str = "uniform", k: tuple[int, int] = (1, 2)
) -> ReferenceResult:
    """Clear ``orders`` by stepping the DESIGN §4 walk; see the module docstring."""
    bids = sorted(
        (o for o in orders if o.side is Side.BUY), key=lambda o: (-o.price_per_wh, o.seq, o.id)
    )
    asks = sorted(
        (o for o in orders if o.side is Side.SELL), key=lambda o: (o.price_per_wh, o.seq, o.id)
    )
    left: dict[str, int] = {o.id: o.quantity_wh for o in orders}  # unfilled quantity
    pairs: list[tuple[Order, Order, int]] = []
    i = j = 0
    while i < len(bids) and j < len(asks) and bids[i].price_per_wh >= asks[j].price_per_wh:
        quantity = min(left[bids[i].id], left[asks[j].id])
        pairs.append((bids[i], asks[j], quantity))
        left[bids[i].id] -= quantity
        left[asks[j].id] -= quantity
        if left[bids[i].id] == 0:
            i += 1
        if left[asks[j].id] == 0:
            j += 1
    fills = {o.id: o.quantity_wh - left[o.id] for o in orders}
    volume = sum(q for _, _, q in pairs)
    if not pairs:
        return ReferenceResult(None, None, 0, [], fills)

    marginal_bid, marginal_ask = pairs[-1][0], pairs[-1][1]
    unfilled_bids = [o.price_per_wh for o in bids if left[o.id] > 0]
    unfilled_asks = [o.price_per_wh for o in asks if left[o.id] > 0]
    # "Any term that does not exist is ignored."
    lower = max([marginal_ask.price_per_wh, *unfilled_bids[:1]])
    upper = min([marginal_bid.price_per_wh, *unfilled_asks[:1]])
    assert lower <= upper
    if mechanism == "uniform":
        price: int | None = lower + k[0] * (upper - lower) // k[1]
        trades = [(b.id, a.id, q, lower + k[0] * (upper - lower) // k[1]) for b, a, q in pairs]
    elif mechanism == "pay-as-bid":
        price = None
        trades = [(b.id, a.id, q, b.price_per_wh) for b, a, q in pairs]
    else:
        raise ValueError(mechanism)
    return ReferenceResult(price, (lower, upper), volume, trades, fills)
