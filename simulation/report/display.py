"""How the report writes numbers, times and names, and the pieces its sections share.

Numbers for reading are rounded from the exact figures: :mod:`ledger.units` converts Wh,
base units and base units per Wh to exact decimals first, then they are rounded for display
(:func:`kwh_text`, :func:`price_text`, :func:`tokens_text`) or turned into floats for a
chart's coordinates (:func:`kwh_float`, :func:`price_float`, :func:`tokens_float`), the one
place floats are fine (DESIGN §3). The exact integers stay in the CSVs and ``summary.json``.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from ledger.units import currency_from_base_units, currency_per_kwh_from_price_per_wh, kwh_from_wh
from simulation.profiles import SECONDS_PER_DAY
from simulation.record import RunRecord
from simulation.report.charts import TimeChart

KIND_LABELS = {
    "pv": "PV prosumers",
    "battery": "Batteries",
    "household": "Households",
    "data_center": "Data centers",
    "vpp": "VPP aggregators",
}
"""How each agent kind is named in the report (plural)."""
KIND_COUNTED = {
    "pv": ("PV prosumer", "PV prosumers"),
    "battery": ("battery", "batteries"),
    "household": ("household", "households"),
    "data_center": ("data center", "data centers"),
    "vpp": ("VPP aggregator", "VPP aggregators"),
}
"""One and several agents of each kind, in running text."""


def kind_count(kind: str, n: int) -> str:
    """``"3 households"``, ``"1 data center"``."""
    one, many = KIND_COUNTED.get(kind, (kind, kind))
    return f"{n} {one if n == 1 else many}"


# --------------------------------------------------------------------------- number display


def kwh_text(wh: int, places: int = 1) -> str:
    """``wh`` as kWh for reading: ``1_234_567`` -> ``"1,234.6"``."""
    return f"{kwh_from_wh(wh):,.{places}f}"


def price_text(price_per_wh: int | None) -> str:
    """A price in currency/kWh for reading (four decimals), or an em dash."""
    if price_per_wh is None:
        return "—"
    return f"{currency_per_kwh_from_price_per_wh(price_per_wh):,.4f}"


def tokens_text(base_units: int, places: int = 2) -> str:
    """An amount in tokens for reading: ``1_500_000_000_000_000_000`` -> ``"1.50"``."""
    return f"{currency_from_base_units(base_units):,.{places}f}"


def kwh_float(wh: int) -> float:
    """``wh`` in kWh as a float, for a chart's coordinates."""
    return float(kwh_from_wh(wh))


def price_float(price_per_wh: int | None) -> float | None:
    """A price in currency/kWh as a float, for a chart's coordinates (``None`` stays)."""
    return None if price_per_wh is None else float(currency_per_kwh_from_price_per_wh(price_per_wh))


def tokens_float(base_units: int) -> float:
    """An amount in tokens as a float, for a chart's coordinates."""
    return float(currency_from_base_units(base_units))


def clock(interval: int, interval_seconds: int, days: bool) -> str:
    """Start time of ``interval`` as ``HH:MM`` (``d2 HH:MM`` from the second day on)."""
    seconds = interval * interval_seconds
    day, rest = divmod(seconds, SECONDS_PER_DAY)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}"
    return f"d{day + 1} {text}" if days else text


def _tick_every(intervals: int, interval_seconds: int) -> int:
    hours = intervals * interval_seconds / 3600
    step_h = next((h for h in (1, 2, 3, 4, 6, 12, 24, 48, 96, 168) if hours / h <= 9), 336)
    return max(1, round(step_h * 3600 / interval_seconds))


# --------------------------------------------------------------------------- shared by the sections


def legend(items: Iterable[tuple[str, str]]) -> str:
    """A chart's legend: ``(css class, text)`` items, each with a swatch in its colour."""
    return (
        '<ul class="legend">'
        + "".join(
            f'<li><span class="swatch {css}"></span>{escape(text)}</li>' for css, text in items
        )
        + "</ul>"
    )


def time_chart(record: RunRecord, **kwargs: object) -> TimeChart:
    """A chart over the run's intervals, labelled with their start times."""
    days = record.intervals * record.interval_seconds > SECONDS_PER_DAY
    return TimeChart(
        intervals=record.intervals,
        x_label=lambda i: clock(i, record.interval_seconds, days),
        tick_every=_tick_every(record.intervals, record.interval_seconds),
        **kwargs,  # type: ignore[arg-type]
    )


def when(record: RunRecord, t: int) -> str:
    """Interval ``t`` for reading: ``"interval 4 (01:00)"``."""
    days = record.intervals * record.interval_seconds > SECONDS_PER_DAY
    return f"interval {t} ({clock(t, record.interval_seconds, days)})"
