"""The run report (``report.html``): one self-contained HTML page made from a run record.

:func:`render_report` is a pure function from a :class:`~simulation.record.RunRecord` to one
self-contained HTML page: inline CSS and inline SVG charts (:mod:`simulation.report.charts`),
system fonts, no scripts and no URLs, so it reads the same offline, from an e-mail attachment
or from a CI artifact. Tooltips are SVG ``<title>`` elements.

It shows: headline figures (:mod:`simulation.report.headline`); the run's checks (energy and
token conservation, settlement, deadlines); clearing price and volume per interval, supply
and demand curves of one interval, contracted against delivered energy and the penalties
(:mod:`simulation.report.market`); each participant's net position and energy mix, and each
data center's load shifting against the price (:mod:`simulation.report.participants`); and
the run's settings and wall time by stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from simulation.checks import CheckResult, check_record
from simulation.positions import Position, positions
from simulation.record import RunRecord
from simulation.report.charts import PALETTE
from simulation.report.display import price_text
from simulation.report.grid import grid_section
from simulation.report.headline import headline
from simulation.report.market import (
    book_section,
    busiest_interval,
    delivery_section,
    market_section,
)
from simulation.report.participants import datacenter_section, participants_section
from simulation.report.season import datacenter_season_section, season_section


def _checks_section(checks: Sequence[CheckResult]) -> str:
    items = []
    for c in checks:
        detail = (
            "<ul>" + "".join(f"<li>{escape(d)}</li>" for d in c.detail) + "</ul>"
            if c.detail
            else ""
        )
        mark = '<span class="ok">✓</span>' if c.ok else '<span class="bad">✗</span>'
        items.append(f"<li>{mark} {escape(c.name.replace('_', ' '))}{detail}</li>")
    return (
        '<section id="checks"><h2>Checks</h2><ul class="checks">'
        + "".join(items)
        + "</ul></section>"
    )


def _details_section(record: RunRecord) -> str:
    rows = [
        ("Scenario", record.scenario),
        ("Seed", str(record.seed)),
        ("Ledger", record.chain),
        ("Intervals", f"{record.intervals} × {record.interval_seconds} s"),
        (
            "Mechanism",
            record.mechanism
            + (f", k = {record.k[0]}/{record.k[1]}" if record.mechanism == "uniform" else ""),
        ),
        ("Penalty price", f"{price_text(record.penalty_price_per_wh)} currency/kWh"),
        ("Tolerance", f"{record.tolerance_bps} bps"),
    ]
    timing = ""
    if record.timing_seconds:
        total = sum(record.timing_seconds.values()) or 1.0
        timing = (
            '<h3>Wall time by stage</h3><table><thead><tr><th class="l">stage</th><th>seconds</th>'
            "<th>share</th></tr></thead><tbody>"
            + "".join(
                f'<tr><td class="l">{escape(stage)}</td><td>{seconds:,.2f}</td>'
                f"<td>{100 * seconds / total:.1f} %</td></tr>"
                for stage, seconds in record.timing_seconds.items()
            )
            + "</tbody></table>"
        )
    return (
        '<section id="details"><h2>Run</h2><dl class="details">'
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
        + "</dl>"
        + timing
        + '<p class="lede">Exact figures (integer Wh and token base units) are in '
        "<code>summary.json</code> and the CSV files next to this report.</p></section>"
    )


STYLE = """
:root { color-scheme: light; --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb;
  --panel: #f8fafc; --accent: #1d4ed8; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
  Arial, sans-serif; color: var(--ink); background: #fff; }
main { max-width: 980px; margin: 0 auto; padding: 32px 24px 64px; }
header h1 { font-size: 26px; margin: 0 0 4px; letter-spacing: -0.01em; }
header p { margin: 0; color: var(--muted); }
h2 { font-size: 19px; margin: 40px 0 6px; padding-top: 12px; border-top: 1px solid var(--line); }
h3 { font-size: 16px; margin: 24px 0 6px; }
.lede { color: var(--muted); margin: 0 0 12px; max-width: 72ch; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 24px 0 0; padding: 0;
  list-style: none; }
.cards li { flex: 1 1 200px; background: var(--panel); border: 1px solid var(--line);
  border-radius: 10px; padding: 12px 14px; }
.cards .label { font-size: 12px; text-transform: uppercase; letter-spacing: 0.06em;
  color: var(--muted); }
.cards .value { font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums;
  margin: 2px 0; }
.cards .note { font-size: 12.5px; color: var(--muted); }
figure { margin: 8px 0 16px; }
figcaption { font-size: 12.5px; color: var(--muted); text-align: center; }
svg.chart { width: 100%; height: auto; display: block; }
svg rect:hover, svg circle:hover { opacity: 0.75; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 18px; list-style: none; padding: 0;
  margin: 4px 0; font-size: 13px; color: var(--muted); }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 3px;
  margin-right: 6px; vertical-align: -1px; }
table { border-collapse: collapse; width: 100%; font-size: 13px;
  font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: 5px 7px; border-bottom: 1px solid var(--line);
  white-space: nowrap; }
th.l, td.l { text-align: left; }
thead th { color: var(--muted); font-weight: 600; background: var(--panel); position: sticky;
  top: 0; }
.scroll { max-height: 480px; overflow: auto; border: 1px solid var(--line); border-radius: 8px; }
details { margin: 16px 0; } summary { cursor: pointer; color: var(--accent); }
.ok { color: #047857; font-weight: 600; } .bad { color: #b91c1c; font-weight: 600; }
.open { color: var(--muted); } .pos-text { color: #047857; } .neg-text { color: #b91c1c; }
ul.checks { list-style: none; padding: 0; columns: 2; } ul.checks li { margin: 2px 0; }
dl.details { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; }
dl.details dt { color: var(--muted); } dl.details dd { margin: 0; }
code { font-size: 13px; background: var(--panel); padding: 1px 4px; border-radius: 4px; }
footer { margin-top: 48px; color: var(--muted); font-size: 12.5px; }
@media print { h2 { break-before: auto; } figure, table { break-inside: avoid; } }
"""


def _swatch_style() -> str:
    """Legend swatches in the charts' own colours (lines as a short bar)."""
    rules = []
    for css, style in PALETTE.items():
        if "fill" in style and style["fill"] != "none":
            rules.append(f".swatch.{css} {{ background: {style['fill']}; }}")
        elif "stroke" in style:
            rules.append(f".swatch.{css} {{ background: {style['stroke']}; height: 3px; }}")
    return "\n".join(rules) + "\n"


def _sections(record: RunRecord, pos: dict[str, Position], t: int) -> str:
    """The market, delivery, participant and data-center sections: per interval for a run
    of a day at most, per day, hour and month for a longer one (:mod:`.season`)."""
    if record.season is not None:
        return (
            season_section(record)
            + book_section(record, t)
            + participants_section(record, pos)
            + datacenter_season_section(record)
            + grid_section(record)
        )
    return (
        market_section(record)
        + book_section(record, t)
        + delivery_section(record)
        + participants_section(record, pos)
        + datacenter_section(record)
        + grid_section(record)
    )


def render_report(record: RunRecord, *, book_interval: int | None = None) -> str:
    """The whole report as one self-contained HTML string (pure: same record, same text).

    ``book_interval`` picks the interval whose supply and demand curves are drawn; by
    default the one with the largest traded volume (the only one a run folded by day keeps
    the orders of). A run longer than a day shows its season (:mod:`.season`) instead of
    per-interval charts.
    """
    pos = positions(record)
    checks = check_record(record)
    cards = "".join(
        f'<li><div class="label">{escape(label)}</div><div class="value">{escape(value)}</div>'
        f'<div class="note">{escape(note)}</div></li>'
        for label, value, note in headline(record)
    )
    t = busiest_interval(record) if book_interval is None else book_interval
    subtitle = (
        f"Scenario <strong>{escape(record.scenario)}</strong> · seed {record.seed} · "
        f"{record.intervals} intervals of {record.interval_seconds // 60} min · "
        f"{escape(record.mechanism)} · {escape(record.chain)}"
    )
    description = f"<p>{escape(record.description)}</p>" if record.description else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>wattledger simulation · {escape(record.scenario)}</title>"
        f"<style>{STYLE}{_swatch_style()}</style></head><body><main>"
        f"<header><h1>wattledger simulation report</h1><p>{subtitle}</p>{description}</header>"
        f'<ul class="cards">{cards}</ul>'
        + _checks_section(checks)
        + _sections(record, pos, t)
        + _details_section(record)
        + "<footer>Generated by wattledger from the run record. Self-contained: no scripts, "
        "no external resources.</footer></main></body></html>\n"
    )
