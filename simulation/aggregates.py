"""Totals of a run that outlive its rows: participants' positions and the season.

A run longer than a day (a week, a year) does not keep one row per order, trade, settlement
and meter reading: :mod:`simulation.fold` adds up each day once every interval of it has
settled and drops its rows, into the :class:`Season` of the run's
:class:`~simulation.record.RunRecord`. The report, ``summary.json`` and the checks read a
season's totals where they would read a day's rows. Pure data; everything is an exact
integer (Wh, base units, base units per Wh).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

HOURS_PER_DAY = 24

MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
"""Days of each month of a common year: the months of run days counted from 1 January, for
totals that carry no calendar date."""

MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def month_of_day(day: int) -> int:
    """The month (0 = January) of run day ``day`` (0-based; years repeat after 365 days)."""
    rest = day % 365
    for month, days in enumerate(MONTH_DAYS):
        if rest < days:
            return month
        rest -= days
    raise AssertionError("unreachable")  # pragma: no cover - the days sum to 365


@dataclass
class Position:
    """One participant's totals over the run (energy in Wh, money in base units)."""

    name: str
    kind: str
    bought_wh: int = 0
    sold_wh: int = 0
    received_wh: int = 0
    """Energy delivered to it on its purchases (the sellers' delivered share)."""
    delivered_wh: int = 0
    """Energy it delivered on its sales."""
    shortfall_wh: int = 0
    paid_base_units: int = 0
    earned_base_units: int = 0
    penalties_paid_base_units: int = 0
    penalties_received_base_units: int = 0
    imported_wh: int = 0
    exported_wh: int = 0
    load_wh: int = 0
    generation_wh: int = 0
    self_supplied_wh: int = 0
    grid_import_wh: int = 0
    """Import beyond what it bought in the market, interval by interval (from the utility)."""
    grid_export_wh: int = 0
    """Export beyond what it sold, interval by interval (spilled to the utility)."""

    @property
    def net_base_units(self) -> int:
        """Money in minus money out through the ledger's settlements."""
        return (
            self.earned_base_units
            - self.paid_base_units
            + self.penalties_received_base_units
            - self.penalties_paid_base_units
        )


@dataclass(frozen=True)
class DayTotals:
    """One day of a run: market, settlement and where the energy came from and went.

    Prices are per interval (``min``/``max`` over the intervals' prices, the average weighted
    by volume); ``hourly_price_per_wh`` holds, per hour of the day, the volume-weighted
    price of the trades of that hour (``None``: nothing traded), the row of the price heat
    map. Energy: ``load`` and ``generation`` behind the meters, ``self_supplied`` the load
    met on site, ``bought``/``sold`` in the market, ``grid_import``/``grid_export`` beyond
    it (from or to the utility).
    """

    day: int
    intervals: int
    intervals_with_trades: int
    orders: int
    trades: int
    traded_wh: int
    traded_value_base_units: int
    min_price_per_wh: int | None
    max_price_per_wh: int | None
    hourly_price_per_wh: tuple[int | None, ...]
    contracted_wh: int
    delivered_wh: int
    paid_base_units: int
    penalties_base_units: int
    load_wh: int
    generation_wh: int
    self_supplied_wh: int
    bought_wh: int
    sold_wh: int
    grid_import_wh: int
    grid_export_wh: int

    date: datetime.date | None = None
    """The calendar day (the scenario's start date plus ``day``), when the run has one."""

    @property
    def month(self) -> int:
        """The day's month (0 = January): of its calendar date, else counted from 1 January."""
        return self.date.month - 1 if self.date is not None else month_of_day(self.day)

    @property
    def average_price_per_wh(self) -> int | None:
        """Value over volume, rounded down (``None`` when nothing traded)."""
        return self.traded_value_base_units // self.traded_wh if self.traded_wh else None


MIX_FIELDS = (
    "load_wh",
    "generation_wh",
    "self_supplied_wh",
    "bought_wh",
    "sold_wh",
    "grid_import_wh",
    "grid_export_wh",
)
"""The energy-mix fields of :class:`DayTotals` that add up over a month."""


@dataclass(frozen=True)
class Season:
    """What a run longer than a day added up to, day by day (see the module).

    ``violations`` holds, per check of :func:`~simulation.checks.check_record` made on the
    rows (the checks of the record's data-center jobs and the driver's extra checks are
    made on the record itself), the first violations found; an empty tuple when it held.
    """

    days: tuple[DayTotals, ...]
    positions: Mapping[str, Position]
    violations: Mapping[str, tuple[str, ...]]
    interval_prices: tuple[int | None, ...]
    orders: int
    trades: int
    settlements: int
    traded_wh: int
    traded_value_base_units: int
    contracted_wh: int
    delivered_wh: int
    paid_base_units: int
    penalties_base_units: int
    meters: int = 0
    grid_revenue_base_units: int = 0
    """What the grid operator received at settlement (a run on a grid)."""


def month_totals(days: tuple[DayTotals, ...]) -> list[tuple[int, dict[str, int]]]:
    """The energy mix (:data:`MIX_FIELDS`) and traded value summed per month, in order of
    first appearance: ``(month, totals)``."""
    out: dict[int, dict[str, int]] = {}
    for d in days:
        totals = out.setdefault(
            d.month, dict.fromkeys((*MIX_FIELDS, "traded_wh", "traded_value_base_units"), 0)
        )
        for name in (*MIX_FIELDS, "traded_wh", "traded_value_base_units"):
            totals[name] += getattr(d, name)
    return list(out.items())


__all__ = [
    "HOURS_PER_DAY",
    "MIX_FIELDS",
    "MONTH_DAYS",
    "MONTH_NAMES",
    "DayTotals",
    "Position",
    "Season",
    "month_of_day",
    "month_totals",
]
