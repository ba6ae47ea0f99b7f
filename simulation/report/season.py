"""The report's sections for a run longer than a day: the season, day by day.

A week or a year has too many intervals to draw one by one (a year of 15-minute intervals is
35,040 of them), so a folded run (:attr:`~simulation.record.RunRecord.season`) is shown by
its days, hours and months instead of the one-day report's per-interval charts:

* The season: energy traded and the average price per day; the clearing price by hour of
  the day and day (a heat map); contracted against delivered energy per day; the energy mix
  per month (where the load came from: own generation and storage, the market, the grid);
  a table of every month and, folded away, of every day.
* Data-center load per day (base, must-run and flexible batch work), with the jobs.

Every figure is an aggregate, so the page stays a few megabytes for a year.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape

from simulation.aggregates import (
    HOURS_PER_DAY,
    MONTH_DAYS,
    MONTH_NAMES,
    DayTotals,
    Season,
    month_totals,
)
from simulation.record import RunRecord
from simulation.report.charts import BarSeries, LineSeries, TimeChart, heatmap_chart
from simulation.report.display import (
    kwh_float,
    kwh_text,
    legend,
    price_float,
    price_text,
    tokens_text,
    when,
)


def day_label(day: int) -> str:
    """Run day ``day`` (0-based) as a date of the simulated year: ``Jan 1``."""
    rest = day % 365
    for month, days in enumerate(MONTH_DAYS):
        if rest < days:
            return f"{MONTH_NAMES[month]} {rest + 1}"
        rest -= days
    raise AssertionError("unreachable")  # pragma: no cover


def day_text(totals: DayTotals) -> str:
    """A day of the run as its calendar date (``Jun 1``), or counted from 1 January when it
    has none."""
    if totals.date is not None:
        return f"{MONTH_NAMES[totals.date.month - 1]} {totals.date.day}"
    return day_label(totals.day)


def _tick_every(days: int) -> int:
    return next((step for step in (1, 2, 7, 14, 30, 61) if days / step <= 10), 91)


def _daily_chart(days: tuple[DayTotals, ...], **kwargs: object) -> TimeChart:
    return TimeChart(
        intervals=len(days),
        x_label=lambda d: day_text(days[d]),
        tick_every=_tick_every(len(days)),
        **kwargs,  # type: ignore[arg-type]
    )


def season_section(record: RunRecord) -> str:
    """The Season section: days, the price heat map, delivery and the monthly mix."""
    season = record.season
    if season is None:
        return ""
    days = season.days
    traded = [kwh_float(d.traded_wh) for d in days]
    average = [price_float(d.average_price_per_wh) for d in days]

    def day_tip(i: int) -> str:
        d = days[i]
        return (
            f"{day_text(d)}: {kwh_text(d.traded_wh)} kWh in {d.trades:,} trades, average "
            f"{price_text(d.average_price_per_wh)} (range {price_text(d.min_price_per_wh)} – "
            f"{price_text(d.max_price_per_wh)}) currency/kWh"
        )

    market = _daily_chart(
        days,
        y_label="energy traded (kWh)",
        y2_label="price (currency/kWh)",
        bars=[BarSeries("traded", traded, "bar-volume", day_tip)],
        lines=[LineSeries("average price", average, "line-price2", secondary=True)],
        title="Energy traded and average price per day",
    )
    heat = heatmap_chart(
        [[price_float(p) for p in d.hourly_price_per_wh] for d in days],
        column_label=lambda c: day_text(days[c]),
        tick_every=_tick_every(len(days)),
        row_labels=[f"{h:02d}:00" for h in range(HOURS_PER_DAY)],
        tooltip=lambda c, r, v: f"{day_text(days[c])} {r:02d}h {v:.4f}",
        scale_label=lambda v: f"{v:.3f} currency/kWh",
        title="Clearing price by hour and day",
    )

    def delivery_tip(i: int) -> str:
        d = days[i]
        return (
            f"{day_text(d)}: contracted {kwh_text(d.contracted_wh)} kWh, delivered "
            f"{kwh_text(d.delivered_wh)} kWh, penalties {tokens_text(d.penalties_base_units)} "
            "tokens"
        )

    delivery = _daily_chart(
        days,
        y_label="energy (kWh)",
        bars=[
            BarSeries(
                "delivered",
                [kwh_float(d.delivered_wh) for d in days],
                "bar-delivered",
                delivery_tip,
            ),
            BarSeries(
                "shortfall",
                [kwh_float(d.contracted_wh - d.delivered_wh) for d in days],
                "bar-shortfall",
                delivery_tip,
            ),
        ],
        height=210,
        title="Contracted and delivered energy per day",
    )
    return (
        '<section id="season"><h2>The season</h2>'
        f'<p class="lede">{len(days)} days of {record.intervals:,} intervals, added up day by '
        "day (a run longer than a day keeps no row per interval and agent; the exact totals "
        "are in <code>summary.json</code> and <code>days.csv</code>).</p>"
        + legend([("bar-volume", "energy traded"), ("line-price2", "average price (right axis)")])
        + f"<figure>{market.render()}</figure>"
        + "<h3>Clearing price by hour and day</h3>"
        '<p class="lede">Each cell is one hour of one day: the volume-weighted price of its '
        "trades, from light (cheapest) to dark (dearest); blank where nothing traded.</p>"
        + f"<figure>{heat}</figure>"
        + "<h3>Contracted and delivered energy</h3>"
        + legend([("bar-delivered", "delivered"), ("bar-shortfall", "shortfall")])
        + f"<figure>{delivery.render()}</figure>"
        + _months(season)
        + _day_table(days)
        + "</section>"
    )


def _months(season: Season) -> str:
    months = month_totals(season.days)
    labels = [MONTH_NAMES[m] for m, _ in months]

    def tip(i: int) -> str:
        t = months[i][1]
        return (
            f"{labels[i]}: load {kwh_text(t['load_wh'], 0)} kWh: own generation and storage "
            f"{kwh_text(t['self_supplied_wh'], 0)}, market {kwh_text(t['bought_wh'], 0)}, "
            f"grid {kwh_text(t['grid_import_wh'], 0)} kWh"
        )

    chart = TimeChart(
        intervals=len(months),
        x_label=lambda i: labels[i],
        tick_every=1,
        y_label="energy (kWh)",
        bars=[
            BarSeries(
                "own", [kwh_float(t["self_supplied_wh"]) for _, t in months], "mix-self", tip
            ),
            BarSeries("market", [kwh_float(t["bought_wh"]) for _, t in months], "mix-bought", tip),
            BarSeries("grid", [kwh_float(t["grid_import_wh"]) for _, t in months], "mix-grid", tip),
        ],
        height=230,
        title="Energy mix per month",
    )
    columns = (
        ("load_wh", "load"),
        ("generation_wh", "generation"),
        ("self_supplied_wh", "own supply"),
        ("bought_wh", "bought"),
        ("sold_wh", "sold"),
        ("grid_import_wh", "grid import"),
        ("grid_export_wh", "grid export"),
    )
    rows = "".join(
        f'<tr><td class="l">{MONTH_NAMES[m]}</td>'
        + "".join(f"<td>{kwh_text(t[key], 0)}</td>" for key, _ in columns)
        + f"<td>{tokens_text(t['traded_value_base_units'])}</td></tr>"
        for m, t in months
    )
    return (
        "<h3>Energy mix per month</h3>"
        '<p class="lede">Where the participants\' load came from: their own generation and '
        "storage behind the meter, the market (energy bought), and the utility grid (import "
        "beyond what they bought).</p>"
        + legend(
            [
                ("mix-self", "own generation and storage"),
                ("mix-bought", "bought in the market"),
                ("mix-grid", "from the grid"),
            ]
        )
        + f"<figure>{chart.render()}</figure>"
        + '<table><thead><tr><th class="l">month</th>'
        + "".join(f"<th>{escape(name)} kWh</th>" for _, name in columns)
        + "<th>traded tokens</th></tr></thead><tbody>"
        + rows
        + "</tbody></table>"
    )


def _day_table(days: tuple[DayTotals, ...]) -> str:
    rows = "".join(
        f'<tr><td class="l">{day_text(d)}</td><td>{d.trades:,}</td>'
        f"<td>{kwh_text(d.traded_wh)}</td><td>{price_text(d.average_price_per_wh)}</td>"
        f"<td>{price_text(d.min_price_per_wh)}</td><td>{price_text(d.max_price_per_wh)}</td>"
        f"<td>{kwh_text(d.delivered_wh)}</td><td>{tokens_text(d.penalties_base_units)}</td></tr>"
        for d in days
    )
    return (
        f"<details><summary>Every day ({len(days)})</summary>"
        '<div class="scroll"><table><thead><tr><th class="l">day</th><th>trades</th>'
        "<th>traded kWh</th><th>average</th><th>low</th><th>high</th><th>delivered kWh</th>"
        f"<th>penalties</th></tr></thead><tbody>{rows}</tbody></table></div></details>"
    )


def datacenter_season_section(record: RunRecord) -> str:
    """Each data center's load per day (base, must-run, flexible) and its jobs."""
    if not record.load_shift and not record.jobs:
        return ""
    seconds = record.interval_seconds
    per_day = max(1, 86_400 // seconds)
    totals: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for s in record.load_shift:
        day = totals[s.participant][s.interval // per_day]
        day[0] += s.base_wh
        day[1] += s.must_run_wh
        day[2] += s.flexible_wh
    names = list(dict.fromkeys([*totals, *(j.participant for j in record.jobs)]))
    n_days = -(-record.intervals // per_day)
    parts = [
        '<section id="data-centers"><h2>Data-center load per day</h2>'
        '<p class="lede">Base load, must-run batch work and flexible batch work (moved to '
        "cheap intervals) of each data center, per day.</p>"
        + legend(
            [
                ("bar-base", "base load"),
                ("bar-must", "must-run batch work"),
                ("bar-flex", "flexible batch work"),
            ]
        )
    ]
    for name in names:
        by_day = totals.get(name, {})
        series = [
            [kwh_float(by_day[d][k]) if d in by_day else None for d in range(n_days)]
            for k in range(3)
        ]
        chart = TimeChart(
            intervals=n_days,
            x_label=day_label,
            tick_every=_tick_every(n_days),
            y_label="energy (kWh)",
            bars=[
                BarSeries("base", series[0], "bar-base"),
                BarSeries("must-run", series[1], "bar-must"),
                BarSeries("flexible", series[2], "bar-flex"),
            ],
            height=200,
            title=f"Load of {name} per day",
        )
        jobs = [j for j in record.jobs if j.participant == name]
        rows = "".join(
            f'<tr><td class="l">{escape(j.job)}</td><td>{kwh_text(j.energy_wh)}</td>'
            f"<td>{escape(when(record, j.deadline_interval))}</td>"
            f"<td>{kwh_text(j.consumed_wh)}</td><td>"
            + ("open at end of run" if j.open else "met" if j.met else "missed")
            + "</td></tr>"
            for j in jobs
        )
        parts.append(
            f"<h3>{escape(name)}</h3><figure>{chart.render()}</figure>"
            + (
                '<table><thead><tr><th class="l">job</th><th>energy kWh</th><th>deadline</th>'
                f"<th>consumed kWh</th><th>status</th></tr></thead><tbody>{rows}</tbody></table>"
                if rows
                else ""
            )
        )
    parts.append("</section>")
    return "".join(parts)


__all__ = ["datacenter_season_section", "day_label", "season_section"]
