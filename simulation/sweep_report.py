"""``sweep.html``: each headline figure against each swept parameter, with the spread over seeds.

:func:`render_sweep` is pure: the plan and the runs' outcomes in, one self-contained HTML
page out (inline CSS and SVG, system fonts, no scripts and no URLs), so it reads the same
offline. For every figure and every swept parameter one chart: the parameter's values
along the x axis in the order they were given, one line per combination of the other
swept parameters, each point the mean over the seeds with a bar from the lowest to the
highest seed. Then every run in a table, the failed ones with their error.

Values are plotted as floats in display units (kWh, currency/kWh, tokens, %); the exact
integers are in ``sweep.csv``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from simulation.report.charts import FONT, Scale, format_tick, nice_ticks
from simulation.report.display import kwh_float, price_float, tokens_float
from simulation.report.page import STYLE
from simulation.sweep import (
    FAILED,
    OK,
    SEED_KEY,
    RunOutcome,
    RunSpec,
    SweepPlan,
    headline_of,
    sweep_columns,
    sweep_rows,
)

Figure = Callable[[dict[str, int | None]], float | None]


def _share(part: str, whole: str) -> Figure:
    def figure(h: dict[str, int | None]) -> float | None:
        numerator, denominator = h[part], h[whole]
        if numerator is None or not denominator:
            return None
        return 100 * numerator / denominator

    return figure


def _scaled(column: str, unit: Callable[[int], float]) -> Figure:
    def figure(h: dict[str, int | None]) -> float | None:
        value = h[column]
        return None if value is None else unit(value)

    return figure


FIGURES: tuple[tuple[str, str, Figure], ...] = (
    ("Energy traded", "kWh", _scaled("traded_wh", kwh_float)),
    ("Average price", "currency/kWh", lambda h: price_float(h["average_price_per_wh"])),
    ("Value traded", "tokens", _scaled("traded_value_base_units", tokens_float)),
    ("Trades", "trades", _scaled("trades", float)),
    ("Delivered", "% of contracted", _share("delivered_wh", "contracted_wh")),
    ("Shortfall", "kWh", _scaled("shortfall_wh", kwh_float)),
    ("Penalties", "tokens", _scaled("penalties_base_units", tokens_float)),
    ("Deadlines met", "% of jobs due", _share("deadlines_met", "jobs_due")),
)
"""The charted figures: title, unit, and how to get the value from a run's headline."""

COLOURS = ("#1d4ed8", "#b45309", "#047857", "#be185d", "#6d28d9", "#0f766e", "#b91c1c", "#4b5563")
WIDTH, HEIGHT = 440, 250
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 16, 46


@dataclass(frozen=True)
class Point:
    """One x position of one series: the figure over the seeds that finished."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)


def _swept(plan: SweepPlan) -> list[tuple[str, tuple[str, ...]]]:
    """The swept keys and their values; a sweep of seeds only has one pseudo-parameter."""
    params = [(p.key, p.texts) for p in plan.params]
    return params or [("scenario", (plan.scenario,))]


def _value_of(run: RunSpec, key: str, plan: SweepPlan) -> str:
    return dict(run.values).get(key, plan.scenario)


def _series(
    plan: SweepPlan,
    outcomes: Mapping[str, RunOutcome],
    key: str,
    figure: Figure,
) -> dict[str, dict[str, Point]]:
    """For parameter ``key``: series label (the other parameters' values) -> x value ->
    the point over seeds. The series are in the grid's order."""
    others = [(k, texts) for k, texts in _swept(plan) if k not in (key, SEED_KEY)]
    labels = [
        ", ".join(f"{k}={t}" for (k, _), t in zip(others, combo, strict=True)) or "all runs"
        for combo in itertools.product(*(texts for _, texts in others))
    ]
    collected: dict[str, dict[str, list[float]]] = {label: {} for label in labels}
    for run in plan.runs:
        outcome = outcomes.get(run.run)
        if outcome is None or outcome.summary is None:
            continue
        value = figure(headline_of(outcome.summary))
        if value is None:
            continue
        label = ", ".join(f"{k}={_value_of(run, k, plan)}" for k, _ in others) or "all runs"
        collected[label].setdefault(_value_of(run, key, plan), []).append(value)
    return {
        label: {x: Point(tuple(v)) for x, v in points.items()}
        for label, points in collected.items()
    }


def _num(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def chart(
    key: str,
    xs: Sequence[str],
    series: Mapping[str, Mapping[str, Point]],
    *,
    unit: str,
    title: str,
) -> str:
    """One chart: ``xs`` along the bottom, each series a line through its means with a
    bar from its lowest to its highest seed."""
    everything = [v for points in series.values() for p in points.values() for v in p.values]
    if not everything:
        return f'<p class="lede">{escape(title)}: no finished run has this figure.</p>'
    low, high = min(0.0, min(everything)), max(everything)
    ticks = nice_ticks(low, high)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    y = Scale(ticks[0], ticks[-1], TOP + plot_h, TOP)
    slot = plot_w / max(1, len(xs))

    def x_of(i: int) -> float:
        return LEFT + slot * (i + 0.5)

    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" font-family="{escape(FONT)}" font-size="11">'
    ]
    for tick in ticks:
        ty = y(tick)
        out.append(
            f'<line x1="{LEFT}" x2="{_num(LEFT + plot_w)}" y1="{_num(ty)}" y2="{_num(ty)}" '
            'stroke="#e5e7eb"/>'
            f'<text x="{LEFT - 6}" y="{_num(ty + 4)}" text-anchor="end" fill="#6b7280">'
            f"{escape(format_tick(tick))}</text>"
        )
    out.append(
        f'<line x1="{LEFT}" x2="{_num(LEFT + plot_w)}" y1="{_num(TOP + plot_h)}" '
        f'y2="{_num(TOP + plot_h)}" stroke="#9ca3af"/>'
    )
    for i, x_text in enumerate(xs):
        out.append(
            f'<text x="{_num(x_of(i))}" y="{_num(TOP + plot_h + 16)}" text-anchor="middle" '
            f'fill="#6b7280">{escape(x_text)}</text>'
        )
    out.append(
        f'<text x="{_num(LEFT + plot_w / 2)}" y="{HEIGHT - 8}" text-anchor="middle" '
        f'fill="#1f2937">{escape(key)}</text>'
        f'<text transform="translate(13 {_num(TOP + plot_h / 2)}) rotate(-90)" '
        f'text-anchor="middle" fill="#1f2937">{escape(unit)}</text>'
    )
    for s, (label, points) in enumerate(series.items()):
        colour = COLOURS[s % len(COLOURS)]
        nudge = (s - (len(series) - 1) / 2) * min(6.0, slot / (2 * max(1, len(series))))
        path: list[str] = []
        for i, x_text in enumerate(xs):
            point = points.get(x_text)
            if point is None:
                continue
            px = x_of(i) + nudge
            path.append(f"{'M' if not path else 'L'}{_num(px)} {_num(y(point.mean))}")
            tip = (
                f"{label}; {key}={x_text}: {format_tick(point.mean)} {unit} mean of "
                f"{len(point.values)} seed(s), range {format_tick(min(point.values))} – "
                f"{format_tick(max(point.values))}"
            )
            out.append(
                f'<line x1="{_num(px)}" x2="{_num(px)}" y1="{_num(y(min(point.values)))}" '
                f'y2="{_num(y(max(point.values)))}" stroke="{colour}" stroke-width="2" '
                'stroke-opacity="0.45"/>'
                f'<circle cx="{_num(px)}" cy="{_num(y(point.mean))}" r="3.5" fill="{colour}">'
                f"<title>{escape(tip)}</title></circle>"
            )
        if len(path) > 1:
            out.append(
                f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="1.6"/>'
            )
    out.append("</svg>")
    return "".join(out)


def _legend(labels: Sequence[str]) -> str:
    if len(labels) <= 1:
        return ""
    items = "".join(
        f'<li><span class="swatch" style="background:{COLOURS[i % len(COLOURS)]}"></span>'
        f"{escape(label)}</li>"
        for i, label in enumerate(labels)
    )
    return f'<ul class="legend">{items}</ul>'


def _figures_section(plan: SweepPlan, outcomes: Mapping[str, RunOutcome]) -> str:
    parts = []
    for title, unit, figure in FIGURES:
        cells = []
        for key, texts in _swept(plan):
            if key == SEED_KEY:
                continue
            series = _series(plan, outcomes, key, figure)
            cells.append(
                "<figure>"
                + chart(key, texts, series, unit=unit, title=f"{title} against {key}")
                + _legend(list(series))
                + "</figure>"
            )
        parts.append(
            f"<h3>{escape(title)} <small>({escape(unit)})</small></h3>"
            f'<div class="grid">{"".join(cells)}</div>'
        )
    return (
        '<section id="figures"><h2>Headline figures against the swept parameters</h2>'
        '<p class="lede">Each point is the mean over the seeds that finished; its bar runs '
        "from the lowest to the highest seed. One line per combination of the other swept "
        "parameters.</p>" + "".join(parts) + "</section>"
    )


def _runs_table(plan: SweepPlan, outcomes: Mapping[str, RunOutcome]) -> str:
    columns = sweep_columns(plan)
    head = "".join(f'<th class="l">{escape(c)}</th>' for c in columns)
    body = []
    for row in sweep_rows(plan, outcomes):
        cells = []
        for column in columns:
            value = row.get(column)
            text = "" if value is None else str(value)
            css = ""
            if column == "status":
                css = ' class="l ok"' if text == OK else ' class="l bad"' if text == FAILED else ""
            elif column in ("run", "checks", "error") or not text.lstrip("-").isdigit():
                css = ' class="l"'
            cells.append(f"<td{css}>{escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        '<section id="runs"><h2>Every run</h2><p class="lede">The rows of '
        "<code>sweep.csv</code>: exact integers in Wh, token base units and base units per "
        "Wh. Each run's own report is <code>runs/RUN/report.html</code>.</p>"
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div></section>"
    )


SWEEP_STYLE = """
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr));
  gap: 8px 20px; }
h3 small { color: var(--muted); font-weight: 400; }
"""


def render_sweep(plan: SweepPlan, outcomes: Mapping[str, RunOutcome]) -> str:
    """The whole ``sweep.html`` (pure: the same plan and outcomes give the same text)."""
    finished = sum(1 for r in plan.runs if _status(outcomes, r) == OK)
    failed = sum(1 for r in plan.runs if _status(outcomes, r) == FAILED)
    swept = "; ".join(f"{p.key} = {', '.join(p.texts)}" for p in plan.params) or "nothing"
    seeds = f"{len(plan.seeds)} seed(s) from {plan.seeds[0]}" if plan.seeds else "seeds as swept"
    subtitle = (
        f"Scenario <strong>{escape(plan.scenario)}</strong> · {plan.intervals} intervals · "
        f"{escape(plan.ledger)} ledger · swept: {escape(swept)} · {escape(seeds)} · "
        f"{len(plan.runs)} runs: {finished} finished, {failed} failed"
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>wattledger sweep · {escape(plan.scenario)}</title>"
        f"<style>{STYLE}{SWEEP_STYLE}</style></head><body><main>"
        f"<header><h1>wattledger sweep</h1><p>{subtitle}</p></header>"
        + _figures_section(plan, outcomes)
        + _runs_table(plan, outcomes)
        + "</main></body></html>\n"
    )


def _status(outcomes: Mapping[str, RunOutcome], run: RunSpec) -> str:
    outcome: Any = outcomes.get(run.run)
    return outcome.status if outcome is not None else "pending"


__all__ = ["FIGURES", "chart", "render_sweep"]
