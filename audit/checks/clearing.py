"""The ``reclear`` and ``properties`` checks: the committed trades are what clearing gives.

``reclear`` runs :func:`market.clearing.clear` on the published set (without its expired orders
and the orders of the defaulters the ``defaulters`` check accepted) with the market's declared
mechanism and compares its trades with the committed ones, in commit order (order ids, parties,
quantity, price) and the published fills. ``properties`` checks every DESIGN §4 property
(:mod:`market.properties`) on the *committed* result over the published book. Committed trades
name their orders by 32-byte id; the published set by ``0x`` hex, which is how they compare.
"""

from __future__ import annotations

from collections.abc import Sequence

from audit.checks.book import PublishedSet
from audit.checks.violations import PROPERTIES, RECLEAR, CheckLog, hex_of, short
from audit.evidence import ClearingRules
from ledger.records import Trade
from ledger.units import PricePerWh, Wh
from market import clearing
from market.properties import check_clearing_properties


def check_reclear(
    parsed: PublishedSet, trades: Sequence[Trade], rules: ClearingRules, checks: CheckLog
) -> None:
    """The ``reclear`` check: clearing the published set gives exactly the committed trades.

    Orders whose expiry is before the published ``closedAt`` do not enter the clearing, and
    the publication must mark exactly those ``expired``."""
    result = clearing.clear(parsed.live_orders(), rules.mechanism, rules.k)
    expected = result.trades
    problems: list[str] = []
    for oid in sorted(parsed.marked_expired - parsed.expired):
        problems.append(f"order {short(oid)}: published expired, its expiry is not before closedAt")
    for oid in sorted(parsed.expired - parsed.marked_expired):
        problems.append(f"order {short(oid)}: expiry before closedAt, not published expired")
    if len(expected) != len(trades):
        problems.append(
            f"trade count expected {len(expected)} found {len(trades)} (volume expected "
            f"{result.volume_wh} Wh found {sum(t.quantity_wh for t in trades)} Wh)"
        )
    owner = {oid: o.participant for oid, o in parsed.orders.items()}
    for i, (want, got) in enumerate(zip(expected, trades, strict=False)):
        fields = (
            ("buy order", want.buy, hex_of(got.buy_order_id)),
            ("sell order", want.sell, hex_of(got.sell_order_id)),
            ("quantity", want.quantity_wh, got.quantity_wh),
            ("price", want.price_per_wh, got.price_per_wh),
            ("buyer", owner.get(want.buy), got.buyer),
            ("seller", owner.get(want.sell), got.seller),
        )
        for name, a, b in fields:
            if a != b:
                problems.append(f"trade {i}: {name} expected {a} found {b}")
    for i, got in enumerate(trades):
        for role, raw in (("buy", got.buy_order_id), ("sell", got.sell_order_id)):
            oid = hex_of(raw)
            if oid not in parsed.orders:
                problems.append(f"trade {i}: {role} order {oid} is not in the published set")
    if parsed.fills is not None:
        for oid, fill in sorted(result.fills.items()):
            published = parsed.fills.get(oid, 0)
            if published != fill:
                problems.append(f"order {short(oid)}: filledWh expected {fill} found {published}")
    checks.fail_all(RECLEAR, problems)


def check_properties(
    parsed: PublishedSet, trades: Sequence[Trade], rules: ClearingRules, checks: CheckLog
) -> None:
    """The ``properties`` check: DESIGN §4 on the committed trades over the published book."""
    claimed = [
        clearing.Trade(
            hex_of(t.buy_order_id),
            hex_of(t.sell_order_id),
            Wh(t.quantity_wh),
            PricePerWh(t.price_per_wh),
        )
        for t in trades
    ]
    live = {o.id: o for o in parsed.live_orders()}
    found = check_clearing_properties(live, claimed, rules.mechanism, rules.k)
    checks.fail_all(PROPERTIES, [str(v) for v in found])


__all__ = [
    "check_properties",
    "check_reclear",
]
