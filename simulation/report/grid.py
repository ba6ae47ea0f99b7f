"""The report's grid section, for a run with ``[grid]`` (:mod:`simulation.grid_log`).

* Node prices over time: the price at the root (the substation's upstream side) and the
  lowest and highest price over the agents' nodes, per interval (the spread is what the
  edges' fees and congestion separate).
* Line loading and voltage band: the most loaded line and transformer (percent of rating)
  and the lowest and highest bus voltage (per unit) from the power flow of every meter.
* Congestion events, grid revenue (fees and congestion rent the clearing assigned, and what
  the grid operator received at settlement) and the energy curtailed.

A run folded day by day keeps no node prices (see :mod:`simulation.grid_log`); its section
shows loading and voltage per interval and says so.
"""

from __future__ import annotations

from html import escape

from simulation.grid_log import GridRecord
from simulation.record import RunRecord
from simulation.report.charts import LineSeries
from simulation.report.display import kwh_text, price_float, time_chart, tokens_text, when

_MAX_EVENTS = 40


def grid_section(record: RunRecord) -> str:
    """The Grid section (empty for a run without a grid)."""
    grid = record.grid
    if grid is None:
        return ""
    parts = [
        '<section id="grid"><h2>Grid</h2>',
        f'<p class="lede">Network {escape(grid.network)} ({len(grid.nodes)} nodes, root '
        f"{escape(grid.root)}), cleared on its tree with caps from the ratings; after each "
        "interval a pandapower power flow of every meter.</p>",
        _revenue(record, grid),
    ]
    if grid.node_prices_kept and record.intervals == len(grid.intervals):
        parts.append(_prices(record, grid))
    else:
        parts.append(
            "<p>Node prices per interval are kept for runs of at most a day; summary.json "
            "has the loading and voltage of every interval.</p>"
        )
    if record.intervals == len(grid.intervals):
        parts.append(_loading(record, grid))
    parts.append(_events(record, grid))
    parts.append("</section>")
    return "".join(parts)


def _revenue(record: RunRecord, grid: GridRecord) -> str:
    settled = (
        record.season.grid_revenue_base_units
        if record.season is not None
        else sum(s.grid_base_units for s in record.settlements)
    )
    curtailed = sum(r.curtailed_wh for r in grid.intervals)
    return (
        '<dl class="details">'
        f"<dt>Fee revenue (cleared)</dt><dd>{tokens_text(grid.fee_revenue_base_units)}</dd>"
        f"<dt>Congestion rent (cleared)</dt>"
        f"<dd>{tokens_text(grid.congestion_rent_base_units)}</dd>"
        f"<dt>Grid operator received (settled)</dt><dd>{tokens_text(settled)}</dd>"
        f"<dt>Curtailed export</dt><dd>{kwh_text(curtailed, 1)} kWh</dd>"
        "</dl>"
    )


def _prices(record: RunRecord, grid: GridRecord) -> str:
    used = set(grid.agent_nodes.values()) | {grid.root}
    root = grid.nodes.index(grid.root)
    lows: list[float | None] = []
    highs: list[float | None] = []
    roots: list[float | None] = []
    for r in grid.intervals:
        known = [p for n, p in zip(grid.nodes, r.node_prices, strict=False) if n in used]
        values = [p for p in known if p is not None]
        lows.append(price_float(min(values)) if values else None)
        highs.append(price_float(max(values)) if values else None)
        roots.append(price_float(r.node_prices[root]) if r.node_prices else None)
    chart = time_chart(
        record,
        y_label="price (currency/kWh)",
        lines=[
            LineSeries("root", roots, "line-price"),
            LineSeries("lowest node", lows, "line-price2"),
        ],
        height=230,
        title="Node prices per interval",
    )
    caption = "Root price and lowest node price"
    return f"<figure>{chart.render()}<figcaption>{caption}</figcaption></figure>"


def _loading(record: RunRecord, grid: GridRecord) -> str:
    def pct(v: int | None) -> float | None:
        return None if v is None else v / 100

    lines = [pct(r.flow.max_line_loading_centipct) for r in grid.intervals]
    trafos = [pct(r.flow.max_trafo_loading_centipct) for r in grid.intervals]
    loading = time_chart(
        record,
        y_label="loading (% of rating)",
        lines=[
            LineSeries("transformer", trafos, "line-price"),
            LineSeries("most loaded line", lines, "line-price2"),
        ],
        height=220,
        title="Loading per interval",
    )
    rows = "".join(
        f"<tr><td>{escape(when(record, r.interval))}</td><td>{_pu(r.flow.min_vm_pu_e4)}</td>"
        f"<td>{_pu(r.flow.max_vm_pu_e4)}</td>"
        f"<td>{_pct(r.flow.max_trafo_loading_centipct)}</td></tr>"
        for r in grid.intervals[:: max(1, len(grid.intervals) // 24)]
    )
    return (
        f"<figure>{loading.render()}<figcaption>Transformer and most loaded line"
        "</figcaption></figure>"
        "<h3>Voltage band</h3><table><thead><tr><th>interval</th><th>min V (p.u.)</th>"
        f"<th>max V (p.u.)</th><th>transformer %</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _events(record: RunRecord, grid: GridRecord) -> str:
    events = [r for r in grid.intervals if r.congested]
    if not events:
        return "<p>No congestion: no edge reached its cap, no line went above 100 %.</p>"
    items = "".join(
        f"<li>{escape(when(record, r.interval))}: "
        f"{escape(', '.join(r.at_cap) or 'no edge')} at the cap"
        + (
            f"; lines above 100 %: {escape(', '.join(map(str, r.flow.overloaded_lines)))}"
            if r.flow.overloaded_lines
            else ""
        )
        + "</li>"
        for r in events[:_MAX_EVENTS]
    )
    more = f"<p>… and {len(events) - _MAX_EVENTS} more.</p>" if len(events) > _MAX_EVENTS else ""
    return f"<h3>Congestion events ({len(events)})</h3><ul>{items}</ul>{more}"


def _pu(e4: int | None) -> str:
    return "" if e4 is None else f"{e4 / 10_000:.4f}"


def _pct(centipct: int | None) -> str:
    return "" if centipct is None else f"{centipct / 100:.2f}"
