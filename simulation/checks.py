"""The properties every simulation run must have, checked on its record.

:func:`check_record` is a pure function of a :class:`~simulation.record.RunRecord`: energy
and tokens are conserved, every trade is individually rational, every committed interval
settled exactly once, every data-center job met its deadline. Each result is True or False
with the first violations spelled out; the checks only the driver can make against the
chain come with the record (:attr:`~simulation.record.RunRecord.extra_checks`) and are
listed after these.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from simulation.positions import Position, positions
from simulation.record import RunRecord, TradeRecord


@dataclass(frozen=True)
class CheckResult:
    """One property of the run: whether it holds and, if not, the first violations."""

    name: str
    ok: bool
    detail: tuple[str, ...] = ()


_MAX_DETAIL = 5


def check_record(record: RunRecord) -> list[CheckResult]:
    """Check the run's properties. Each check names what it pins:

    * ``energy_conserved``: per interval, trades add up to the cleared volume and to the
      fills of both sides; no order filled above its quantity; no trade delivered above its
      quantity; each seller's delivered energy is ``min(sold, exported)`` (DESIGN §5).
    * ``tokens_conserved``: per settled trade, payment plus refund equals what the buyer
      locked and the penalty is at most ``shortfall * penalty price``; settlement net
      positions sum to zero.
    * ``individually_rational``: no trade above its bid's limit or below its ask's.
    * ``committed_intervals_settled``: every committed interval settled, every trade of a
      settled interval settled exactly once.
    * ``deadlines_met``: every data-center job due within the run finished by its deadline.

    For a run folded day by day (:attr:`RunRecord.season`) the first four were made on each
    day's rows as it was folded and are read from the season.
    """
    if record.season is not None:
        results = [
            CheckResult(name, not detail, tuple(detail))
            for name, detail in record.season.violations.items()
        ]
    else:
        results = row_checks(record)
    missed = [
        f"{j.participant} {j.job}: {j.consumed_wh} of {j.energy_wh} Wh by interval "
        f"{j.deadline_interval}"
        for j in record.jobs
        if not j.open and not j.met
    ]
    results.append(CheckResult("deadlines_met", not missed, tuple(missed[:_MAX_DETAIL])))

    for name, ok in sorted(record.extra_checks.items()):
        results.append(CheckResult(name, bool(ok)))
    return results


ROW_CHECKS = (
    "energy_conserved",
    "tokens_conserved",
    "individually_rational",
    "committed_intervals_settled",
)
"""The checks :func:`check_record` makes on the record's rows (orders, trades, settlements,
meter readings), in order."""


def row_checks(record: RunRecord, pos: Mapping[str, Position] | None = None) -> list[CheckResult]:
    """The checks of :data:`ROW_CHECKS` on ``record``'s rows; ``pos``: its
    :func:`~simulation.positions.positions`, when the caller has them already."""
    results: list[CheckResult] = []
    orders = {o.order_id: o for o in record.orders}

    energy: list[str] = []
    by_interval: dict[int, list[TradeRecord]] = defaultdict(list)
    traded_per_order: dict[str, int] = defaultdict(int)
    for trade in record.trades:
        by_interval[trade.interval].append(trade)
        traded_per_order[trade.buy_order_id] += trade.quantity_wh
        traded_per_order[trade.sell_order_id] += trade.quantity_wh
    side_fill: dict[tuple[int, str], int] = defaultdict(int)
    for o in record.orders:
        side_fill[o.interval, o.side] += o.filled_wh
    for result in record.interval_results:
        t = result.interval
        total = sum(trade.quantity_wh for trade in by_interval.get(t, []))
        bids, asks = side_fill[t, "buy"], side_fill[t, "sell"]
        if total != result.volume_wh or bids != total or asks != total:
            energy.append(
                f"interval {t}: trades {total} Wh, volume {result.volume_wh} Wh, "
                f"bids filled {bids} Wh, asks filled {asks} Wh"
            )
    for order in record.orders:
        if order.filled_wh > order.quantity_wh or traded_per_order[order.order_id] != (
            order.filled_wh
        ):
            energy.append(
                f"order {order.order_id}: filled {order.filled_wh} of {order.quantity_wh} Wh"
            )
    exported = {(m.participant, m.interval): m.exported_wh for m in record.meters}
    sold: dict[tuple[str, int], int] = defaultdict(int)
    delivered: dict[tuple[str, int], int] = defaultdict(int)
    for s in record.settlements:
        if not 0 <= s.delivered_wh <= s.quantity_wh:
            energy.append(
                f"trade {s.buy_order_id}/{s.sell_order_id}: delivered {s.delivered_wh} Wh"
            )
        sold[s.seller, s.interval] += s.quantity_wh
        delivered[s.seller, s.interval] += s.delivered_wh
    for key, quantity in sold.items():
        if key in exported and delivered[key] != min(quantity, exported[key]):
            energy.append(
                f"{key[0]} interval {key[1]}: delivered {delivered[key]} Wh, but sold "
                f"{quantity} Wh and exported {exported[key]} Wh"
            )
    results.append(CheckResult("energy_conserved", not energy, tuple(energy[:_MAX_DETAIL])))

    tokens: list[str] = []
    for s in record.settlements:
        locked = s.quantity_wh * s.price_per_wh
        if s.paid_base_units + s.refunded_base_units != locked or s.paid_base_units != (
            s.delivered_wh * s.price_per_wh
        ):
            tokens.append(
                f"trade {s.buy_order_id}/{s.sell_order_id}: paid {s.paid_base_units} + refunded "
                f"{s.refunded_base_units} != locked {locked}"
            )
        if not 0 <= s.penalty_base_units <= s.shortfall_wh * record.penalty_price_per_wh:
            tokens.append(
                f"trade {s.buy_order_id}/{s.sell_order_id}: penalty {s.penalty_base_units} for "
                f"{s.shortfall_wh} Wh short"
            )
    net_sum = sum(p.net_base_units for p in (pos or positions(record)).values())
    grid_revenue = sum(s.grid_base_units for s in record.settlements)
    if net_sum + grid_revenue:
        tokens.append(
            f"net positions sum to {net_sum} base units, not minus the grid operator's "
            f"{grid_revenue}"
        )
    results.append(CheckResult("tokens_conserved", not tokens, tuple(tokens[:_MAX_DETAIL])))

    rational: list[str] = []
    for trade in record.trades:
        buy, sell = orders.get(trade.buy_order_id), orders.get(trade.sell_order_id)
        if buy is None or sell is None or buy.side != "buy" or sell.side != "sell":
            rational.append(f"trade {trade.buy_order_id}/{trade.sell_order_id}: unknown orders")
        elif not (
            sell.price_per_wh
            <= (trade.price_per_wh if trade.sell_price_per_wh is None else trade.sell_price_per_wh)
            <= trade.price_per_wh
            <= buy.price_per_wh
        ):
            rational.append(
                f"trade {trade.buy_order_id}/{trade.sell_order_id} at {trade.price_per_wh} "
                f"(seller {trade.sell_price_per_wh}): bid {buy.price_per_wh}, ask "
                f"{sell.price_per_wh}"
            )
    results.append(
        CheckResult("individually_rational", not rational, tuple(rational[:_MAX_DETAIL]))
    )

    settled: list[str] = []
    settled_count: dict[tuple[int, str, str], int] = defaultdict(int)
    for s in record.settlements:
        settled_count[s.interval, s.buy_order_id, s.sell_order_id] += 1
    for result in record.interval_results:
        if result.committed and not result.settled:
            settled.append(f"interval {result.interval} committed but not settled")
        if result.settled:
            for trade in by_interval.get(result.interval, []):
                n = settled_count[trade.interval, trade.buy_order_id, trade.sell_order_id]
                if n != 1:
                    settled.append(
                        f"trade {trade.buy_order_id}/{trade.sell_order_id} settled {n} times"
                    )
    results.append(
        CheckResult("committed_intervals_settled", not settled, tuple(settled[:_MAX_DETAIL]))
    )
    return results
