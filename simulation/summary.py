"""``summary.json``: a run's headline figures as exact, deterministic JSON-ready data."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from simulation.aggregates import MIX_FIELDS, MONTH_NAMES, Season, month_totals
from simulation.checks import check_record
from simulation.grid_log import grid_summary
from simulation.positions import interval_average_prices, positions
from simulation.record import RunRecord


def summarize(record: RunRecord) -> dict[str, Any]:
    """The run's headline figures as a JSON-ready dict (the content of ``summary.json``).

    Energies are integer Wh; amounts of money are decimal *strings* of base units, since
    they can exceed the 2**53 that JSON readers in other languages hold exactly; prices are
    integer base units per Wh. Deterministic: no wall-clock time, keys in a fixed order.
    """
    pos = positions(record)
    kinds: dict[str, int] = defaultdict(int)
    for p in record.participants:
        kinds[p.kind] += 1
    prices = [p for p in interval_average_prices(record) if p is not None]
    season = record.season
    if season is None:
        orders, trades, settled_trades = (
            len(record.orders),
            len(record.trades),
            len(record.settlements),
        )
        traded_wh = sum(t.quantity_wh for t in record.trades)
        traded_value = sum(t.value_base_units for t in record.trades)
        settled_wh = sum(s.quantity_wh for s in record.settlements)
        delivered_wh = sum(s.delivered_wh for s in record.settlements)
        penalties = sum(s.penalty_base_units for s in record.settlements)
        paid = sum(s.paid_base_units for s in record.settlements)
    else:
        orders, trades, settled_trades = season.orders, season.trades, season.settlements
        traded_wh, traded_value = season.traded_wh, season.traded_value_base_units
        settled_wh, delivered_wh = season.contracted_wh, season.delivered_wh
        penalties, paid = season.penalties_base_units, season.paid_base_units
    checks = check_record(record)
    due = [j for j in record.jobs if not j.open]
    summary = {
        "scenario": record.scenario,
        "seed": record.seed,
        "chain": record.chain,
        "intervals": record.intervals,
        "interval_seconds": record.interval_seconds,
        "mechanism": record.mechanism,
        "k": f"{record.k[0]}/{record.k[1]}",
        "penalty_price_per_wh": record.penalty_price_per_wh,
        "tolerance_bps": record.tolerance_bps,
        "participants": {"total": len(record.participants), "by_kind": dict(sorted(kinds.items()))},
        "market": {
            "orders": orders,
            "trades": trades,
            "intervals_with_trades": sum(1 for r in record.interval_results if r.volume_wh),
            "traded_wh": traded_wh,
            "traded_value_base_units": str(traded_value),
            "average_price_per_wh": traded_value // traded_wh if traded_wh else None,
            "min_price_per_wh": min(prices) if prices else None,
            "max_price_per_wh": max(prices) if prices else None,
        },
        "settlement": {
            "committed_intervals": sum(1 for r in record.interval_results if r.committed),
            "settled_intervals": sum(1 for r in record.interval_results if r.settled),
            "settled_trades": settled_trades,
            "contracted_wh": settled_wh,
            "delivered_wh": delivered_wh,
            "shortfall_wh": settled_wh - delivered_wh,
            "paid_base_units": str(paid),
            "penalties_base_units": str(penalties),
        },
        "data_centers": {
            "jobs": len(record.jobs),
            "jobs_due_in_run": len(due),
            "deadlines_met": sum(1 for j in due if j.met),
            "open_at_end": sum(1 for j in record.jobs if j.open),
            "batch_wh": sum(s.batch_wh for s in record.load_shift),
            "flexible_wh": sum(s.flexible_wh for s in record.load_shift),
        },
        "positions": {
            name: {
                "kind": p.kind,
                "bought_wh": p.bought_wh,
                "sold_wh": p.sold_wh,
                "delivered_wh": p.delivered_wh,
                "shortfall_wh": p.shortfall_wh,
                "imported_wh": p.imported_wh,
                "exported_wh": p.exported_wh,
                "self_supplied_wh": p.self_supplied_wh,
                "net_base_units": str(p.net_base_units),
            }
            for name, p in pos.items()
        },
        "checks": {c.name: c.ok for c in checks},
    }
    if record.grid is not None:
        settled = sum(s.grid_base_units for s in record.settlements)
        if season is not None:
            settled = season.grid_revenue_base_units
        summary["grid"] = grid_summary(record.grid, settled)
    if season is not None:
        summary["season"] = season_summary(season)
    return summary


def season_summary(season: Season) -> dict[str, Any]:
    """The season of a run longer than a day, as in ``summary.json``: one entry per day
    (market, settlement and energy), the price heat map (per day, the volume-weighted price
    of each hour, null when nothing traded) and the energy mix per month."""
    return {
        "days": [
            {
                "day": d.day + 1,
                "date": None if d.date is None else d.date.isoformat(),
                "month": MONTH_NAMES[d.month],
                "intervals": d.intervals,
                "intervals_with_trades": d.intervals_with_trades,
                "orders": d.orders,
                "trades": d.trades,
                "traded_wh": d.traded_wh,
                "traded_value_base_units": str(d.traded_value_base_units),
                "average_price_per_wh": d.average_price_per_wh,
                "min_price_per_wh": d.min_price_per_wh,
                "max_price_per_wh": d.max_price_per_wh,
                "contracted_wh": d.contracted_wh,
                "delivered_wh": d.delivered_wh,
                "paid_base_units": str(d.paid_base_units),
                "penalties_base_units": str(d.penalties_base_units),
                **{name: getattr(d, name) for name in MIX_FIELDS},
            }
            for d in season.days
        ],
        "hourly_price_per_wh": [list(d.hourly_price_per_wh) for d in season.days],
        "months": [
            {
                "month": MONTH_NAMES[month],
                "traded_wh": totals["traded_wh"],
                "traded_value_base_units": str(totals["traded_value_base_units"]),
                **{name: totals[name] for name in MIX_FIELDS},
            }
            for month, totals in month_totals(season.days)
        ],
    }
