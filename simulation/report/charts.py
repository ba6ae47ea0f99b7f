"""Inline SVG charts for the run report: no scripts, no external resources.

Each function returns one ``<svg>`` element as a string, sized by its ``viewBox`` so it
scales with the page. Every mark carries a ``<title>`` child, which browsers show as a
tooltip. Colours and fonts come from the report's stylesheet (classes ``axis``, ``grid``,
``label``...), so the charts follow its typography.

Values arrive as floats already in display units (kWh, currency/kWh, tokens); plotting is
the one place floats are fine (DESIGN §3). The exact integers stay in the CSVs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

WIDTH = 760
"""Width of every chart's coordinate system (it scales to the page)."""

FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'
"""System fonts only: nothing to download."""

PALETTE: dict[str, dict[str, str]] = {
    "chart": {"font-family": FONT, "font-size": "11"},
    "label": {"fill": "#6b7280"},
    "label-2": {"fill": "#b45309"},
    "axis-title": {"fill": "#1f2937", "font-size": "11.5"},
    "axis": {"stroke": "#9ca3af", "stroke-width": "1"},
    "tick": {"stroke": "#9ca3af", "stroke-width": "1"},
    "grid": {"stroke": "#e5e7eb", "stroke-width": "1"},
    "hit": {"fill": "#000", "fill-opacity": "0"},
    "bar-volume": {"fill": "#93c5fd"},
    "line-price": {"fill": "none", "stroke": "#1d4ed8", "stroke-width": "2"},
    "line-price2": {"fill": "none", "stroke": "#b45309", "stroke-width": "1.8"},
    "bar-delivered": {"fill": "#34d399"},
    "bar-shortfall": {"fill": "#f87171"},
    "bar-pending": {"fill": "#cbd5e1"},
    "bar-penalty": {"fill": "#fb923c"},
    "bar-base": {"fill": "#94a3b8"},
    "bar-must": {"fill": "#f59e0b"},
    "bar-flex": {"fill": "#10b981"},
    "demand": {"fill": "none", "stroke": "#2563eb", "stroke-width": "2"},
    "supply": {"fill": "none", "stroke": "#d97706", "stroke-width": "2"},
    "clearing": {"stroke": "#111827", "stroke-width": "1", "stroke-dasharray": "4 3"},
    "clearing-dot": {"fill": "#111827"},
    "pos": {"fill": "#34d399"},
    "neg": {"fill": "#f87171"},
    "mix-sold": {"fill": "#34d399"},
    "mix-spill": {"fill": "#a7f3d0"},
    "mix-bought": {"fill": "#60a5fa"},
    "mix-grid": {"fill": "#cbd5e1"},
    "mix-self": {"fill": "#fbbf24"},
}
"""Presentation attributes per CSS class. They are written onto the SVG elements, so a chart
looks the same wherever it is drawn (a browser, a PDF printer, an image viewer); the class
stays for the page's hover styles."""

_CLASS = re.compile(r'class="([^"]+)"')


def paint(svg: str) -> str:
    """Add the :data:`PALETTE` attributes of each element's classes after its ``class``."""

    def attributes(match: re.Match[str]) -> str:
        merged: dict[str, str] = {}
        for name in match.group(1).split():
            merged.update(PALETTE.get(name, {}))
        extra = "".join(f' {key}="{escape(value)}"' for key, value in merged.items())
        return match.group(0) + extra

    return _CLASS.sub(attributes, svg)


Tooltip = Callable[[int], str]


def _num(value: float) -> str:
    """A compact coordinate for SVG (two decimals at most)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering ``[low, high]`` (1, 2, 2.5 or 5 x 10^n)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step + 1e-9)
    ticks = [round(first * step, 12)]
    while ticks[-1] < high - step * 1e-9 and len(ticks) <= 50:
        ticks.append(round((first + len(ticks)) * step, 12))
    return ticks


def format_tick(value: float) -> str:
    """A tick label: thousands separators, no needless decimals."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{value:.3f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Scale:
    """A linear map from data values to pixels."""

    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        span = self.high - self.low or 1.0
        return self.start + (value - self.low) / span * (self.end - self.start)


@dataclass
class BarSeries:
    """One series of bars, one value per interval (``None``: no bar)."""

    name: str
    values: Sequence[float | None]
    css: str
    tooltip: Tooltip | None = None


@dataclass
class LineSeries:
    """A step line over intervals (``None`` breaks it); on the right axis if ``secondary``."""

    name: str
    values: Sequence[float | None]
    css: str
    secondary: bool = False
    tooltip: Tooltip | None = None
    dots: bool = False


@dataclass
class TimeChart:
    """Bars (stacked or overlaid) and step lines over the run's intervals."""

    intervals: int
    x_label: Callable[[int], str]
    tick_every: int
    y_label: str
    y2_label: str | None = None
    bars: list[BarSeries] = field(default_factory=list)
    lines: list[LineSeries] = field(default_factory=list)
    stacked: bool = True
    height: int = 250
    title: str = ""

    def render(self) -> str:
        left, right, top, bottom = 64, (68 if self.y2_label else 20), 14, 40
        plot_w = WIDTH - left - right
        plot_h = self.height - top - bottom
        slot = plot_w / max(1, self.intervals)
        y_high = self._primary_max()
        y_ticks = nice_ticks(0.0, y_high)
        y = Scale(0.0, y_ticks[-1], top + plot_h, top)
        out = [_svg_open(self.height, self.title)]
        out += _y_axis(y_ticks, y, left, plot_w, self.y_label, top, plot_h, side="left")
        y2: Scale | None = None
        if self.y2_label:
            values = [
                v for line in self.lines if line.secondary for v in line.values if v is not None
            ]
            y2_ticks = nice_ticks(0.0, max(values, default=1.0))
            y2 = Scale(0.0, y2_ticks[-1], top + plot_h, top)
            out += _y_axis(
                y2_ticks, y2, left + plot_w, plot_w, self.y2_label, top, plot_h, side="right"
            )
        for i in range(0, self.intervals, self.tick_every):
            x = left + i * slot
            out.append(
                f'<line class="tick" x1="{_num(x)}" x2="{_num(x)}" y1="{top + plot_h}" '
                f'y2="{top + plot_h + 4}"/>'
                f'<text class="label" x="{_num(x)}" y="{top + plot_h + 17}" '
                f'text-anchor="middle">{escape(self.x_label(i))}</text>'
            )
        out.append(
            f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" '
            f'y2="{top + plot_h}"/>'
        )
        out += self._bars(left, slot, y)
        for line in self.lines:
            scale = y2 if (line.secondary and y2 is not None) else y
            out += _step_line(line, left, slot, scale)
        out.append("</svg>")
        return paint("".join(out))

    def _primary_max(self) -> float:
        if self.stacked:
            totals = [
                sum((series.values[i] or 0.0) for series in self.bars)
                for i in range(self.intervals)
            ]
        else:
            totals = [v or 0.0 for series in self.bars for v in series.values]
        totals += [v for line in self.lines if not line.secondary for v in line.values if v]
        return max(totals, default=0.0) or 1.0

    def _bars(self, left: float, slot: float, y: Scale) -> list[str]:
        out: list[str] = []
        gap = min(1.0, slot * 0.15)
        base = [0.0] * self.intervals
        for n, series in enumerate(self.bars):
            inset = 0.0 if self.stacked else n * slot * 0.18
            for i, value in enumerate(series.values):
                if not value or value <= 0:
                    continue
                bottom = base[i] if self.stacked else 0.0
                y0, y1 = y(bottom), y(bottom + value)
                x = left + i * slot + gap / 2 + inset
                width = max(0.5, slot - gap - 2 * inset)
                tip = series.tooltip(i) if series.tooltip else f"{series.name}: {value:,.3f}"
                out.append(
                    f'<rect class="{series.css}" x="{_num(x)}" y="{_num(y1)}" '
                    f'width="{_num(width)}" height="{_num(max(0.0, y0 - y1))}">'
                    f"<title>{escape(tip)}</title></rect>"
                )
                if self.stacked:
                    base[i] += value
        return out


def _svg_open(height: int, title: str) -> str:
    label = f' aria-label="{escape(title)}"' if title else ""
    # No xmlns: inline SVG in HTML does not need it, and the report then holds no URL at all.
    return f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img"{label}>'


def _y_axis(
    ticks: list[float],
    scale: Scale,
    x: float,
    plot_w: float,
    label: str,
    top: float,
    plot_h: float,
    *,
    side: str,
) -> list[str]:
    out = []
    for tick in ticks:
        y = scale(tick)
        if side == "left":
            out.append(
                f'<line class="grid" x1="{_num(x)}" x2="{_num(x + plot_w)}" y1="{_num(y)}" '
                f'y2="{_num(y)}"/>'
            )
            out.append(
                f'<text class="label" x="{_num(x - 6)}" y="{_num(y + 4)}" '
                f'text-anchor="end">{escape(format_tick(tick))}</text>'
            )
        else:
            out.append(
                f'<text class="label label-2" x="{_num(x + 6)}" y="{_num(y + 4)}">'
                f"{escape(format_tick(tick))}</text>"
            )
    middle = top + plot_h / 2
    if side == "left":
        out.append(
            f'<text class="axis-title" transform="translate(14 {_num(middle)}) rotate(-90)" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    else:
        out.append(
            f'<text class="axis-title label-2" transform="translate({_num(x + 58)} '
            f'{_num(middle)}) rotate(90)" text-anchor="middle">{escape(label)}</text>'
        )
    return out


def _step_line(line: LineSeries, left: float, slot: float, y: Scale) -> list[str]:
    out: list[str] = []
    path: list[str] = []
    for i, value in enumerate(line.values):
        if value is None:
            if path:
                out.append(f'<path class="{line.css}" d="{" ".join(path)}"/>')
                path = []
            continue
        x0, x1, yy = left + i * slot, left + (i + 1) * slot, y(value)
        path.append(f"{'M' if not path else 'L'}{_num(x0)} {_num(yy)} L{_num(x1)} {_num(yy)}")
    if path:
        out.append(f'<path class="{line.css}" d="{" ".join(path)}"/>')
    # invisible hit areas carry the tooltips of the line
    for i, value in enumerate(line.values):
        if value is None:
            continue
        tip = line.tooltip(i) if line.tooltip else f"{line.name}: {value:,.4f}"
        cx, cy = left + (i + 0.5) * slot, y(value)
        css = f"{line.css}-dot" if line.dots else "hit"
        out.append(
            f'<circle class="{css}" cx="{_num(cx)}" cy="{_num(cy)}" r="{_num(max(2.5, slot / 2))}">'
            f"<title>{escape(tip)}</title></circle>"
        )
    return out


def supply_demand_chart(
    demand: Sequence[tuple[float, float, str]],
    supply: Sequence[tuple[float, float, str]],
    clearing: tuple[float, float] | None,
    *,
    x_label: str,
    y_label: str,
    title: str = "",
    height: int = 300,
) -> str:
    """Step curves of one interval's book: ``(quantity, price, tooltip)`` per order.

    Demand is drawn highest price first, supply lowest first, each as cumulative quantity
    against limit price; ``clearing`` marks ``(volume, price)``.
    """
    left, right, top, bottom = 64, 20, 14, 42
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    total_q = max(sum(q for q, _, _ in demand), sum(q for q, _, _ in supply), 1e-9)
    prices = [p for _, p, _ in demand] + [p for _, p, _ in supply]
    x_ticks = nice_ticks(0.0, total_q)
    y_ticks = nice_ticks(0.0, max(prices, default=1.0))
    x = Scale(0.0, x_ticks[-1], left, left + plot_w)
    y = Scale(0.0, y_ticks[-1], top + plot_h, top)
    out = [_svg_open(height, title)]
    out += _y_axis(y_ticks, y, left, plot_w, y_label, top, plot_h, side="left")
    for tick in x_ticks:
        xx = x(tick)
        out.append(
            f'<line class="tick" x1="{_num(xx)}" x2="{_num(xx)}" y1="{top + plot_h}" '
            f'y2="{top + plot_h + 4}"/><text class="label" x="{_num(xx)}" '
            f'y="{top + plot_h + 17}" text-anchor="middle">{escape(format_tick(tick))}</text>'
        )
    out.append(
        f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" '
        f'y2="{top + plot_h}"/><text class="axis-title" x="{left + plot_w / 2}" '
        f'y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>'
    )
    for steps, css in ((demand, "demand"), (supply, "supply")):
        cumulative = 0.0
        path: list[str] = []
        for quantity, price, tip in steps:
            x0, x1, yy = x(cumulative), x(cumulative + quantity), y(price)
            path.append(f"{'M' if not path else 'L'}{_num(x0)} {_num(yy)} L{_num(x1)} {_num(yy)}")
            out.append(
                f'<rect class="hit" x="{_num(x0)}" y="{_num(yy - 5)}" '
                f'width="{_num(max(1.0, x1 - x0))}" height="10"><title>{escape(tip)}</title></rect>'
            )
            cumulative += quantity
        if path:
            out.insert(-len(steps), f'<path class="{css}" d="{" ".join(path)}"/>')
    if clearing is not None:
        volume, price = clearing
        cx, cy = x(volume), y(price)
        out.append(
            f'<line class="clearing" x1="{_num(cx)}" x2="{_num(cx)}" y1="{top + plot_h}" '
            f'y2="{_num(cy)}"/><line class="clearing" x1="{left}" x2="{_num(cx)}" '
            f'y1="{_num(cy)}" y2="{_num(cy)}"/><circle class="clearing-dot" cx="{_num(cx)}" '
            f'cy="{_num(cy)}" r="5"><title>cleared {volume:,.3f} at {price:.4f}</title></circle>'
        )
    out.append("</svg>")
    return paint("".join(out))


@dataclass
class HBar:
    """One row of a horizontal bar chart: label and stacked segments ``(value, css, tip)``."""

    label: str
    segments: list[tuple[float, str, str]]


def hbar_chart(rows: Sequence[HBar], *, x_label: str, title: str = "") -> str:
    """Horizontal bars, one row each; segments stack away from zero on either side."""
    label_w, right, top, bottom, row_h = 170, 24, 8, 40, 22
    height = top + bottom + row_h * max(1, len(rows))
    plot_w = WIDTH - label_w - right
    pos = [sum(v for v, _, _ in r.segments if v > 0) for r in rows]
    neg = [sum(v for v, _, _ in r.segments if v < 0) for r in rows]
    low, high = min(neg, default=0.0), max(pos, default=0.0)
    if low == high == 0.0:
        high = 1.0
    ticks = nice_ticks(low, high, 6)
    x = Scale(ticks[0], ticks[-1], label_w, label_w + plot_w)
    out = [_svg_open(height, title)]
    for tick in ticks:
        xx = x(tick)
        out.append(
            f'<line class="grid" x1="{_num(xx)}" x2="{_num(xx)}" y1="{top}" '
            f'y2="{height - bottom}"/><text class="label" x="{_num(xx)}" '
            f'y="{height - bottom + 16}" text-anchor="middle">{escape(format_tick(tick))}</text>'
        )
    out.append(
        f'<text class="axis-title" x="{label_w + plot_w / 2}" y="{height - 6}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    zero = x(0.0)
    for n, row in enumerate(rows):
        yy = top + n * row_h
        out.append(
            f'<text class="label" x="{label_w - 8}" y="{yy + row_h / 2 + 4}" '
            f'text-anchor="end">{escape(row.label)}</text>'
        )
        up = down = 0.0
        for value, css, tip in row.segments:
            if value == 0:
                continue
            if value > 0:
                x0, x1 = x(up), x(up + value)
                up += value
            else:
                x0, x1 = x(down + value), x(down)
                down += value
            out.append(
                f'<rect class="{css}" x="{_num(x0)}" y="{yy + 3}" '
                f'width="{_num(max(0.5, x1 - x0))}" height="{row_h - 6}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    out.append(
        f'<line class="axis" x1="{_num(zero)}" x2="{_num(zero)}" y1="{top}" '
        f'y2="{height - bottom}"/>'
    )
    out.append("</svg>")
    return paint("".join(out))


HEAT_RAMP = ((255, 247, 188), (254, 196, 79), (236, 112, 20), (153, 52, 4), (76, 29, 149))
"""Colours of the heat map from the lowest value to the highest (light to dark)."""


def heat_colour(fraction: float) -> str:
    """The :data:`HEAT_RAMP` colour ``fraction`` (0 to 1) of the way up, as ``#rrggbb``."""
    f = min(1.0, max(0.0, fraction)) * (len(HEAT_RAMP) - 1)
    k = min(int(f), len(HEAT_RAMP) - 2)
    a, b = HEAT_RAMP[k], HEAT_RAMP[k + 1]
    mix = f - k
    return "#" + "".join(f"{round(x + (y - x) * mix):02x}" for x, y in zip(a, b, strict=True))


def heatmap_chart(
    columns: Sequence[Sequence[float | None]],
    *,
    column_label: Callable[[int], str],
    tick_every: int,
    row_labels: Sequence[str],
    tooltip: Callable[[int, int, float], str],
    scale_label: Callable[[float], str],
    title: str = "",
) -> str:
    """A heat map: ``columns[c][r]`` is the value of column ``c`` (a day) and row ``r`` (an
    hour), coloured from the lowest value to the highest; ``None`` is left blank (grey).
    One rectangle per cell with a short tooltip, so a year (365 x 24 cells) stays under a
    megabyte; the colour scale is drawn below the map."""
    rows = len(row_labels)
    left, right, top = 64, 20, 14
    row_h = 9.0
    plot_w = WIDTH - left - right
    plot_h = rows * row_h
    height = int(top + plot_h + 62)
    slot = plot_w / max(1, len(columns))
    values = [v for column in columns for v in column if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    span = (high - low) or 1.0
    out = [_svg_open(height, title)]
    out.append(
        f'<rect x="{left}" y="{top}" width="{_num(plot_w)}" height="{_num(plot_h)}" '
        'fill="#f1f5f9"/>'
    )
    for c, column in enumerate(columns):
        cx = _num(left + c * slot)
        width = _num(slot + 0.05)  # a hair of overlap: no seams between columns
        for r, value in enumerate(column):
            if value is None:
                continue
            out.append(
                f'<rect x="{cx}" y="{_num(top + r * row_h)}" width="{width}" height="{row_h}" '
                f'fill="{heat_colour((value - low) / span)}"><title>'
                f"{escape(tooltip(c, r, value))}</title></rect>"
            )
    for r, label in enumerate(row_labels):
        if r % 3 == 0:
            out.append(
                f'<text class="label" x="{left - 6}" y="{_num(top + r * row_h + row_h - 1)}" '
                f'text-anchor="end">{escape(label)}</text>'
            )
    for c in range(0, len(columns), max(1, tick_every)):
        x = left + c * slot
        out.append(
            f'<line class="tick" x1="{_num(x)}" x2="{_num(x)}" y1="{_num(top + plot_h)}" '
            f'y2="{_num(top + plot_h + 4)}"/>'
            f'<text class="label" x="{_num(x)}" y="{_num(top + plot_h + 16)}" '
            f'text-anchor="middle">{escape(column_label(c))}</text>'
        )
    legend_y = top + plot_h + 32
    steps = 40
    legend_w = 240.0
    for k in range(steps):
        out.append(
            f'<rect x="{_num(left + k * legend_w / steps)}" y="{_num(legend_y)}" '
            f'width="{_num(legend_w / steps + 0.2)}" height="10" '
            f'fill="{heat_colour(k / (steps - 1))}"/>'
        )
    out.append(
        f'<text class="label" x="{left}" y="{_num(legend_y + 24)}">'
        f"{escape(scale_label(low))}</text>"
        f'<text class="label" x="{_num(left + legend_w)}" y="{_num(legend_y + 24)}" '
        f'text-anchor="end">{escape(scale_label(high))}</text>'
    )
    out.append("</svg>")
    return paint("".join(out))
