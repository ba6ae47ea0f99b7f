"""Adding up a long run day by day: :class:`DayFolder`, the season of a run.

A year of 200 agents is some seven million orders and as many meter readings; kept as rows
they would take gigabytes, and the report could not draw them anyway. So a run longer than
a day is folded: once every interval of a day has settled, the
:class:`~simulation.record.RunRecorder` hands the day's rows to :meth:`DayFolder.add_day` and
drops them. The folder runs the same pure functions a day's record is summarised with
(:func:`~simulation.positions.positions`, :func:`~simulation.checks.row_checks`,
:func:`~simulation.positions.interval_average_prices`) on the day and adds their results up:
positions and totals are sums of days, and every check of the rows is a check of each
interval, order, trade and seller on its own (the one exception, that net positions sum to
zero, holds for the run when it holds for each day). So a folded run reports what the same
run kept whole would report (``tests/test_simulate_season.py`` holds them equal).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import defaultdict

from simulation.aggregates import HOURS_PER_DAY, DayTotals, Position, Season
from simulation.checks import ROW_CHECKS, row_checks
from simulation.positions import interval_average_prices, positions
from simulation.profiles import intervals_per_day
from simulation.record import RunRecord

MAX_DETAIL = 5
"""Violations kept per check (the first found), as :func:`check_record` keeps."""

_POSITION_SUMS = tuple(
    f.name for f in dataclasses.fields(Position) if f.name not in ("name", "kind")
)


class DayFolder:
    """Adds up a run day by day into a :class:`~simulation.aggregates.Season`."""

    def __init__(self, interval_seconds: int, start: datetime.date | None = None) -> None:
        self.interval_seconds = interval_seconds
        self.start = start
        """The calendar day of run day 0 (the scenario's start date), for months and labels."""
        self.per_day = intervals_per_day(interval_seconds)
        self.days: list[DayTotals] = []
        self.positions: dict[str, Position] = {}
        self.violations: dict[str, list[str]] = {name: [] for name in ROW_CHECKS}
        self.prices: list[int | None] = []
        self.totals: dict[str, int] = defaultdict(int)

    def add_day(self, day: int, chunk: RunRecord) -> None:
        """Add day ``day`` (its rows in ``chunk``, see :class:`simulation.record.DayFold`)."""
        by_name = positions(chunk)
        for name, p in by_name.items():
            total = self.positions.setdefault(name, Position(name, p.kind))
            for field in _POSITION_SUMS:
                setattr(total, field, getattr(total, field) + getattr(p, field))
        for check in row_checks(chunk, by_name):
            if check.name in self.violations and not check.ok:
                kept = self.violations[check.name]
                kept += list(check.detail or (f"day {day + 1}",))[: MAX_DETAIL - len(kept)]
        prices = interval_average_prices(chunk)
        self.prices += prices
        value: list[int] = [0] * HOURS_PER_DAY
        volume: list[int] = [0] * HOURS_PER_DAY
        for trade in chunk.trades:
            hour = (trade.interval % self.per_day) * self.interval_seconds // 3600
            value[hour] += trade.value_base_units
            volume[hour] += trade.quantity_wh
        pos = by_name.values()
        known = [p for p in prices if p is not None]
        totals = DayTotals(
            date=None if self.start is None else self.start + datetime.timedelta(days=day),
            day=day,
            intervals=len(chunk.interval_results),
            intervals_with_trades=sum(1 for r in chunk.interval_results if r.volume_wh),
            orders=len(chunk.orders),
            trades=len(chunk.trades),
            traded_wh=sum(t.quantity_wh for t in chunk.trades),
            traded_value_base_units=sum(t.value_base_units for t in chunk.trades),
            min_price_per_wh=min(known) if known else None,
            max_price_per_wh=max(known) if known else None,
            hourly_price_per_wh=tuple(
                value[h] // volume[h] if volume[h] else None for h in range(HOURS_PER_DAY)
            ),
            contracted_wh=sum(s.quantity_wh for s in chunk.settlements),
            delivered_wh=sum(s.delivered_wh for s in chunk.settlements),
            paid_base_units=sum(s.paid_base_units for s in chunk.settlements),
            penalties_base_units=sum(s.penalty_base_units for s in chunk.settlements),
            load_wh=sum(p.load_wh for p in pos),
            generation_wh=sum(p.generation_wh for p in pos),
            self_supplied_wh=sum(p.self_supplied_wh for p in pos),
            bought_wh=sum(p.bought_wh for p in pos),
            sold_wh=sum(p.sold_wh for p in pos),
            grid_import_wh=sum(p.grid_import_wh for p in pos),
            grid_export_wh=sum(p.grid_export_wh for p in pos),
        )
        self.days.append(totals)
        self.totals["settlements"] += len(chunk.settlements)
        self.totals["grid_revenue"] += sum(s.grid_base_units for s in chunk.settlements)
        self.totals["meters"] += len(chunk.meters)

    def season(self) -> Season:
        """The season of the days added so far."""
        days = tuple(self.days)
        return Season(
            days=days,
            positions={name: dataclasses.replace(p) for name, p in self.positions.items()},
            violations={name: tuple(v) for name, v in self.violations.items()},
            interval_prices=tuple(self.prices),
            orders=sum(d.orders for d in days),
            trades=sum(d.trades for d in days),
            settlements=self.totals["settlements"],
            traded_wh=sum(d.traded_wh for d in days),
            traded_value_base_units=sum(d.traded_value_base_units for d in days),
            contracted_wh=sum(d.contracted_wh for d in days),
            delivered_wh=sum(d.delivered_wh for d in days),
            paid_base_units=sum(d.paid_base_units for d in days),
            penalties_base_units=sum(d.penalties_base_units for d in days),
            meters=self.totals["meters"],
            grid_revenue_base_units=self.totals["grid_revenue"],
        )


__all__ = ["DayFolder"]
