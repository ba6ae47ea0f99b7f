"""Pure checkers for the clearing properties of DESIGN §4, on any claimed clearing result.

Each checker takes the book (orders by id) and a list of trades, and returns the violations it
finds, each naming the property and carrying the numbers that show it. They never call the
clearing engine: they test a result against the definitions, so they can judge a result that
someone else computed (the audit judges what an operator committed on-chain) as well as
:func:`market.clearing.clear`'s own output (the clearing property tests).

Properties (DESIGN §4):

``individual_rationality``
    No buyer pays above its limit and no seller receives below its limit, per trade.
``conservation``
    Every trade moves at least 1 Wh from an ask to a bid of the book; no order is filled above
    its quantity; energy bought equals energy sold; when fills are claimed (the market
    publishes ``filledWh``), each equals what the trades give the order.
``budget_balance``
    Payments equal receipts exactly: what the bids owe under the mechanism's price rule
    (``fill * price`` for ``uniform``, ``fill * limit`` for ``pay-as-bid``), computed from
    the bids' fills, equals what the asks receive, summed over the trades.
``uniform_price`` (``uniform`` only)
    Every trade uses one price, and it is ``L + floor(k_num * (U - L) / k_den)`` with ``L``
    and ``U`` found from the fills in priority order (definitions in :func:`price_bounds`).
``market_clearing`` (``uniform`` only)
    Every order with unfilled quantity is priced at or beyond the clearing price: an unfilled
    bid at or below it, an unfilled ask at or above it. With no trades, no bid crosses an ask.
``pay_as_bid_price`` (``pay-as-bid`` only)
    Each trade's price is its bid's limit.
``maximal_volume``
    The traded volume is ``max_p min(D(p), S(p))``, the largest volume that can trade at one
    price acceptable to every trading order (``D``: bid quantity priced at or above ``p``;
    ``S``: ask quantity priced at or below ``p``). ``tests/test_clearing_properties.py``
    argues why the two-pointer walk reaches exactly this and checks it against brute force.

Determinism is not a property of one result; the audit covers it by re-clearing the book and
comparing trade for trade.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate

from market.clearing import ClearingResult, Trade, k_price, priority_order
from market.orders import Order, OrderBook, Side

INDIVIDUAL_RATIONALITY = "individual_rationality"
CONSERVATION = "conservation"
BUDGET_BALANCE = "budget_balance"
UNIFORM_PRICE = "uniform_price"
MARKET_CLEARING = "market_clearing"
PAY_AS_BID_PRICE = "pay_as_bid_price"
MAXIMAL_VOLUME = "maximal_volume"

PROPERTIES: tuple[str, ...] = (
    INDIVIDUAL_RATIONALITY,
    CONSERVATION,
    BUDGET_BALANCE,
    UNIFORM_PRICE,
    MARKET_CLEARING,
    PAY_AS_BID_PRICE,
    MAXIMAL_VOLUME,
)
"""Every property name a checker here can report."""


@dataclass(frozen=True, slots=True)
class PropertyViolation:
    """One broken property: its name and a sentence with the numbers that show it."""

    property: str
    message: str

    def __str__(self) -> str:
        return f"{self.property}: {self.message}"


def _short(order_id: str) -> str:
    """An order id shortened for messages (hashes are 66 characters)."""
    return order_id if len(order_id) <= 14 else f"{order_id[:10]}…"


def book_by_id(orders: Mapping[str, Order] | Iterable[Order] | OrderBook) -> dict[str, Order]:
    """The book as ``{id: Order}`` from a mapping, any iterable of orders or an OrderBook."""
    if isinstance(orders, Mapping):
        return dict(orders)
    return {o.id: o for o in orders}


def traded_wh(trades: Iterable[Trade]) -> dict[str, int]:
    """Energy traded per order id (bids and asks alike), summed over ``trades``."""
    totals: dict[str, int] = {}
    for t in trades:
        totals[t.buy] = totals.get(t.buy, 0) + t.quantity_wh
        totals[t.sell] = totals.get(t.sell, 0) + t.quantity_wh
    return totals


def _known(book: Mapping[str, Order], trades: Sequence[Trade]) -> list[Trade]:
    """The trades whose bid and ask are both in the book with the right sides."""
    return [
        t
        for t in trades
        if t.buy in book
        and t.sell in book
        and book[t.buy].side is Side.BUY
        and book[t.sell].side is Side.SELL
    ]


# ----------------------------------------------------------------------------- checkers


def check_individual_rationality(
    book: Mapping[str, Order], trades: Sequence[Trade]
) -> list[PropertyViolation]:
    """No trade prices a bid above its limit or an ask below its limit."""
    out = []
    for i, t in enumerate(trades):
        bid, ask = book.get(t.buy), book.get(t.sell)
        if bid is not None and t.price_per_wh > bid.price_per_wh:
            out.append(
                PropertyViolation(
                    INDIVIDUAL_RATIONALITY,
                    f"trade {i} price {t.price_per_wh} is above bid {_short(t.buy)}'s limit "
                    f"{bid.price_per_wh}",
                )
            )
        if ask is not None and t.price_per_wh < ask.price_per_wh:
            out.append(
                PropertyViolation(
                    INDIVIDUAL_RATIONALITY,
                    f"trade {i} price {t.price_per_wh} is below ask {_short(t.sell)}'s limit "
                    f"{ask.price_per_wh}",
                )
            )
    return out


def check_conservation(
    book: Mapping[str, Order],
    trades: Sequence[Trade],
    fills: Mapping[str, int] | None = None,
) -> list[PropertyViolation]:
    """Trades join a bid and an ask of the book; no order overfills; bought equals sold.

    ``fills`` (optional) are claimed fills per order id, e.g. the published ``filledWh``;
    each must equal the energy the trades give that order (0 for an order without trades).
    """
    out = []
    for i, t in enumerate(trades):
        if t.quantity_wh < 1:
            out.append(
                PropertyViolation(CONSERVATION, f"trade {i} has quantity {t.quantity_wh} Wh")
            )
        for role, order_id, side in (("buy", t.buy, Side.BUY), ("sell", t.sell, Side.SELL)):
            order = book.get(order_id)
            if order is None:
                out.append(
                    PropertyViolation(
                        CONSERVATION,
                        f"trade {i}'s {role} order {_short(order_id)} is not in the book",
                    )
                )
            elif order.side is not side:
                out.append(
                    PropertyViolation(
                        CONSERVATION,
                        f"trade {i}'s {role} order {_short(order_id)} is a "
                        f"{order.side.value} order",
                    )
                )
    traded = traded_wh(trades)
    for order_id, wh in traded.items():
        order = book.get(order_id)
        if order is not None and wh > order.quantity_wh:
            out.append(
                PropertyViolation(
                    CONSERVATION,
                    f"order {_short(order_id)} is filled {wh} Wh, above its quantity "
                    f"{order.quantity_wh} Wh",
                )
            )
    per_order = traded if fills is None else fills
    bought = sum(per_order.get(o.id, 0) for o in book.values() if o.side is Side.BUY)
    sold = sum(per_order.get(o.id, 0) for o in book.values() if o.side is Side.SELL)
    if bought != sold:
        out.append(
            PropertyViolation(
                CONSERVATION, f"energy bought {bought} Wh differs from energy sold {sold} Wh"
            )
        )
    if fills is not None:
        for order_id in sorted(set(fills) | set(book)):
            claimed = fills.get(order_id, 0)
            if claimed != traded.get(order_id, 0):
                out.append(
                    PropertyViolation(
                        CONSERVATION,
                        f"order {_short(order_id)}: claimed fill {claimed} Wh, the trades "
                        f"fill {traded.get(order_id, 0)} Wh",
                    )
                )
    return out


def check_budget_balance(
    book: Mapping[str, Order], trades: Sequence[Trade], mechanism: str
) -> list[PropertyViolation]:
    """What bids owe under the price rule, from their fills, equals what asks receive.

    ``uniform``: each bid owes ``fill * P`` with ``P`` the price of the first trade (a second
    price is reported by :func:`check_uniform_price`). ``pay-as-bid``: ``fill * limit``.
    """
    if not trades:
        return []
    known = _known(book, trades)
    traded = traded_wh(known)
    uniform_price = trades[0].price_per_wh
    owed = 0
    for order in book.values():
        if order.side is Side.BUY:
            price = uniform_price if mechanism == "uniform" else order.price_per_wh
            owed += traded.get(order.id, 0) * price
    received = sum(t.quantity_wh * t.price_per_wh for t in known)
    if owed != received:
        return [
            PropertyViolation(
                BUDGET_BALANCE,
                f"bids owe {owed} base units under {mechanism} pricing, asks receive "
                f"{received} base units",
            )
        ]
    return []


@dataclass(frozen=True, slots=True)
class PriceBounds:
    """``L`` and ``U`` of DESIGN §4, found from an allocation's fills (None when no trade)."""

    lower: int
    upper: int


def price_bounds(book: Mapping[str, Order], fills: Mapping[str, int]) -> PriceBounds | None:
    """``(L, U)`` of DESIGN §4 for an allocation given as fills, or None if nothing traded.

    In priority order (:func:`market.clearing.priority_order`): the marginal bid (ask) is the
    last bid (ask) with a positive fill; the best bid (ask) with unfilled quantity is the
    first whose fill is below its quantity. ``L = max(marginal ask price, best unfilled bid
    price)`` and ``U = min(marginal bid price, best unfilled ask price)``, ignoring terms that
    do not exist. A walk always gives ``L <= U``; an allocation that no walk produces may not.
    """
    orders = list(book.values())
    if not orders:
        return None
    columns = OrderBook.from_orders(orders)
    bids = [orders[r] for r in priority_order(columns, buy=True).tolist()]
    asks = [orders[r] for r in priority_order(columns, buy=False).tolist()]
    traded_bids = [o for o in bids if fills.get(o.id, 0) > 0]
    traded_asks = [o for o in asks if fills.get(o.id, 0) > 0]
    if not traded_bids or not traded_asks:
        return None
    unfilled_bid = next((o for o in bids if fills.get(o.id, 0) < o.quantity_wh), None)
    unfilled_ask = next((o for o in asks if fills.get(o.id, 0) < o.quantity_wh), None)
    lower = traded_asks[-1].price_per_wh
    if unfilled_bid is not None:
        lower = max(lower, unfilled_bid.price_per_wh)
    upper = traded_bids[-1].price_per_wh
    if unfilled_ask is not None:
        upper = min(upper, unfilled_ask.price_per_wh)
    return PriceBounds(int(lower), int(upper))


def check_uniform_price(
    book: Mapping[str, Order], trades: Sequence[Trade], k: tuple[int, int]
) -> list[PropertyViolation]:
    """``uniform``: one price for every trade, equal to the k-price of (L, U)."""
    if not trades:
        return []
    out = []
    prices = sorted({t.price_per_wh for t in trades})
    if len(prices) > 1:
        out.append(
            PropertyViolation(
                UNIFORM_PRICE,
                f"trades use {len(prices)} prices ({prices[0]} to {prices[-1]}); uniform "
                "pricing has one",
            )
        )
    bounds = price_bounds(book, traded_wh(_known(book, trades)))
    if bounds is None:
        return out
    if bounds.lower > bounds.upper:
        out.append(
            PropertyViolation(
                UNIFORM_PRICE,
                f"the fills give L = {bounds.lower} above U = {bounds.upper}; no walk "
                "produces this allocation",
            )
        )
        return out
    expected = k_price(bounds.lower, bounds.upper, k)
    price = trades[0].price_per_wh
    if price != expected:
        out.append(
            PropertyViolation(
                UNIFORM_PRICE,
                f"price {price} differs from L + floor({k[0]} * (U - L) / {k[1]}) = "
                f"{expected} with L = {bounds.lower}, U = {bounds.upper}",
            )
        )
    return out


def check_market_clearing(
    book: Mapping[str, Order], trades: Sequence[Trade]
) -> list[PropertyViolation]:
    """``uniform``: every order with unfilled quantity is priced at or beyond the price."""
    out = []
    if not trades:
        bids = [o.price_per_wh for o in book.values() if o.side is Side.BUY]
        asks = [o.price_per_wh for o in book.values() if o.side is Side.SELL]
        if bids and asks and max(bids) >= min(asks):
            out.append(
                PropertyViolation(
                    MARKET_CLEARING,
                    f"nothing traded although the best bid {max(bids)} crosses the best ask "
                    f"{min(asks)}",
                )
            )
        return out
    price = trades[0].price_per_wh
    traded = traded_wh(trades)
    for order in book.values():
        unfilled = order.quantity_wh - traded.get(order.id, 0)
        if unfilled <= 0:
            continue
        if order.side is Side.BUY and order.price_per_wh > price:
            out.append(
                PropertyViolation(
                    MARKET_CLEARING,
                    f"bid {_short(order.id)} at {order.price_per_wh} keeps {unfilled} Wh "
                    f"unfilled above the price {price}",
                )
            )
        elif order.side is Side.SELL and order.price_per_wh < price:
            out.append(
                PropertyViolation(
                    MARKET_CLEARING,
                    f"ask {_short(order.id)} at {order.price_per_wh} keeps {unfilled} Wh "
                    f"unfilled below the price {price}",
                )
            )
    return out


def check_pay_as_bid_price(
    book: Mapping[str, Order], trades: Sequence[Trade]
) -> list[PropertyViolation]:
    """``pay-as-bid``: each trade's price is its bid's limit."""
    out = []
    for i, t in enumerate(trades):
        bid = book.get(t.buy)
        if bid is not None and t.price_per_wh != bid.price_per_wh:
            out.append(
                PropertyViolation(
                    PAY_AS_BID_PRICE,
                    f"trade {i} price {t.price_per_wh} differs from bid {_short(t.buy)}'s "
                    f"limit {bid.price_per_wh}",
                )
            )
    return out


def max_single_price_volume(book: Mapping[str, Order]) -> int:
    """``max_p min(D(p), S(p))`` over the limit prices of the book (``O(n log n)``).

    ``min(D(p), S(p))`` changes only at limit prices: ``D`` steps down just above a bid's
    limit and ``S`` steps up at an ask's limit, so the maximum is attained at one of them.
    """
    bids = sorted((o.price_per_wh, o.quantity_wh) for o in book.values() if o.side is Side.BUY)
    asks = sorted((o.price_per_wh, o.quantity_wh) for o in book.values() if o.side is Side.SELL)
    if not bids or not asks:
        return 0
    bid_prices = [p for p, _ in bids]
    ask_prices = [p for p, _ in asks]
    bid_cum = [0, *accumulate(q for _, q in bids)]  # bid_cum[i]: quantity of the i cheapest
    ask_cum = [0, *accumulate(q for _, q in asks)]
    bid_total = bid_cum[-1]
    best = 0
    for price in set(bid_prices) | set(ask_prices):
        demand = bid_total - bid_cum[bisect.bisect_left(bid_prices, price)]
        supply = ask_cum[bisect.bisect_right(ask_prices, price)]
        best = max(best, min(demand, supply))
    return best


def check_maximal_volume(
    book: Mapping[str, Order], trades: Sequence[Trade]
) -> list[PropertyViolation]:
    """The traded volume equals the largest volume tradable at one acceptable price."""
    volume = sum(t.quantity_wh for t in trades)
    best = max_single_price_volume(book)
    if volume != best:
        return [
            PropertyViolation(
                MAXIMAL_VOLUME,
                f"traded volume {volume} Wh differs from the maximum {best} Wh that can trade "
                "at one price acceptable to every trading order",
            )
        ]
    return []


def check_clearing_properties(
    orders: Mapping[str, Order] | Iterable[Order] | OrderBook,
    trades: Sequence[Trade],
    mechanism: str = "uniform",
    k: tuple[int, int] = (1, 2),
    fills: Mapping[str, int] | None = None,
) -> list[PropertyViolation]:
    """Every DESIGN §4 property that applies to ``mechanism``, on a claimed result.

    ``orders`` is the book; ``trades`` the claimed trades in any order; ``fills`` optional
    claimed fills per order id. Returns all violations found (empty when the result holds).
    """
    book = book_by_id(orders)
    out = check_individual_rationality(book, trades)
    out += check_conservation(book, trades, fills)
    out += check_budget_balance(book, trades, mechanism)
    if mechanism == "uniform":
        out += check_uniform_price(book, trades, k)
        out += check_market_clearing(book, trades)
    else:
        out += check_pay_as_bid_price(book, trades)
    out += check_maximal_volume(book, trades)
    return out


def check_result(result: ClearingResult) -> list[PropertyViolation]:
    """:func:`check_clearing_properties` on a :class:`ClearingResult` (with its own fills)."""
    return check_clearing_properties(
        result.book,
        result.trades,
        result.mechanism,
        result.k or (1, 2),
        fills=result.fills,
    )


__all__ = [
    "BUDGET_BALANCE",
    "CONSERVATION",
    "INDIVIDUAL_RATIONALITY",
    "MARKET_CLEARING",
    "MAXIMAL_VOLUME",
    "PAY_AS_BID_PRICE",
    "PROPERTIES",
    "UNIFORM_PRICE",
    "PriceBounds",
    "PropertyViolation",
    "book_by_id",
    "check_budget_balance",
    "check_clearing_properties",
    "check_conservation",
    "check_individual_rationality",
    "check_market_clearing",
    "check_maximal_volume",
    "check_pay_as_bid_price",
    "check_result",
    "check_uniform_price",
    "max_single_price_volume",
    "price_bounds",
]
