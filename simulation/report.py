"""The run report (``report.html``), ``summary.json`` and the CSVs of a simulation run.

:func:`render_report` is a pure function from a :class:`~simulation.record.RunRecord` to one
self-contained HTML page: inline CSS and inline SVG charts (:mod:`simulation.charts`), system
fonts, no scripts and no URLs, so it reads the same offline, from an e-mail attachment or
from a CI artifact. Tooltips are SVG ``<title>`` elements.

It shows: headline figures; the run's checks (energy and token conservation, settlement,
deadlines); clearing price and volume per interval; supply and demand curves of one
interval; contracted against delivered energy and the penalties; each participant's net
position and energy mix; and each data center's load shifting against the price.

:func:`write_run` writes everything into one directory:

=====================  ===========================================================
``report.html``        the report
``summary.json``       :func:`~simulation.summary.summarize` (deterministic per seed)
``orders.csv``         interval, order_id, participant, side, quantity_wh, price_per_wh, filled_wh
``trades.csv``         interval, order ids, buyer, seller, quantity_wh, price_per_wh, value
``settlements.csv``    per trade: delivered, shortfall, paid, refunded, penalty (base units)
``meters.csv``         interval, participant, imported_wh, exported_wh, load_wh, generation_wh
``participants.csv``   each participant's totals and net position
=====================  ===========================================================

All CSV numbers are exact integers in Wh, base units and base units per Wh. The report
shows rounded kWh, currency/kWh and tokens for reading; :mod:`ledger.units` makes the
conversion exact before it is rounded for display.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from html import escape
from pathlib import Path

from ledger.units import (
    PRICE_PER_WH_PER_CURRENCY_PER_KWH,
    currency_from_base_units,
    currency_per_kwh_from_price_per_wh,
    kwh_from_wh,
)
from simulation.charts import PALETTE, BarSeries, HBar, LineSeries, TimeChart, hbar_chart
from simulation.charts import supply_demand_chart as _supply_demand_svg
from simulation.checks import CheckResult, check_record
from simulation.positions import Position, interval_average_prices, positions
from simulation.profiles import SECONDS_PER_DAY
from simulation.record import LoadShiftRecord, OrderRecord, RunRecord
from simulation.summary import summarize

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


MAX_PARTICIPANT_ROWS = 24
"""Most participants drawn one by one in the net-position chart (the table lists all)."""


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


def _kwh(wh: int | float) -> float:
    return float(wh) / 1000.0


def _per_kwh(price_per_wh: int | None) -> float | None:
    return None if price_per_wh is None else price_per_wh / PRICE_PER_WH_PER_CURRENCY_PER_KWH


def _tokens(base_units: int) -> float:
    return float(Decimal(base_units).scaleb(-18))


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


# --------------------------------------------------------------------------- headline


def headline(record: RunRecord) -> list[tuple[str, str, str]]:
    """The headline figures as ``(label, value, note)``: the report's top panel and the
    lines a driver prints at the end of a run."""
    summary = summarize(record)
    market, settlement, dcs = summary["market"], summary["settlement"], summary["data_centers"]
    contracted, delivered = settlement["contracted_wh"], settlement["delivered_wh"]
    share = f"{100 * delivered / contracted:.1f} %" if contracted else "—"
    committed = settlement["committed_intervals"]
    rows = [
        (
            "Energy traded",
            f"{kwh_text(market['traded_wh'])} kWh",
            f"{market['trades']:,} trades from {market['orders']:,} orders",
        ),
        (
            "Average price",
            f"{price_text(market['average_price_per_wh'])} /kWh",
            f"range {price_text(market['min_price_per_wh'])} – "
            f"{price_text(market['max_price_per_wh'])}",
        ),
        (
            "Value traded",
            f"{tokens_text(int(market['traded_value_base_units']))} tokens",
            f"over {market['intervals_with_trades']} of {record.intervals} intervals",
        ),
        (
            "Delivered",
            share,
            f"{kwh_text(delivered)} of {kwh_text(contracted)} kWh contracted",
        ),
        (
            "Penalties",
            f"{tokens_text(int(settlement['penalties_base_units']))} tokens",
            f"for {kwh_text(settlement['shortfall_wh'])} kWh short",
        ),
        (
            "Settled",
            f"{settlement['settled_intervals']} / {committed}",
            "committed intervals settled",
        ),
    ]
    if dcs["jobs"]:
        rows.append(
            (
                "Deadlines met",
                f"{dcs['deadlines_met']} / {dcs['jobs_due_in_run']}",
                f"data-center jobs; {kwh_text(dcs['flexible_wh'])} kWh shifted"
                + (f"; {dcs['open_at_end']} still open" if dcs["open_at_end"] else ""),
            )
        )
    rows.append(
        (
            "Participants",
            f"{summary['participants']['total']}",
            ", ".join(
                kind_count(k, summary["participants"]["by_kind"][k])
                for k in sorted(
                    summary["participants"]["by_kind"],
                    key=lambda k: list(KIND_LABELS).index(k) if k in KIND_LABELS else 99,
                )
            ),
        )
    )
    return rows


def headline_text(record: RunRecord, report_path: Path | str | None = None) -> str:
    """Plain-text headline figures (and where the report is), for the end of a run."""
    width = max(len(label) for label, _, _ in headline(record))
    lines = [f"{label:<{width}}  {value}  ({note})" for label, value, note in headline(record)]
    failed = [c.name for c in check_record(record) if not c.ok]
    lines.append(
        f"{'Checks':<{width}}  " + ("all hold" if not failed else "FAILED: " + ", ".join(failed))
    )
    if report_path is not None:
        lines.append(f"{'Report':<{width}}  {report_path}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- sections


def _legend(items: Iterable[tuple[str, str]]) -> str:
    return (
        '<ul class="legend">'
        + "".join(
            f'<li><span class="swatch {css}"></span>{escape(text)}</li>' for css, text in items
        )
        + "</ul>"
    )


def _time_chart(record: RunRecord, **kwargs: object) -> TimeChart:
    days = record.intervals * record.interval_seconds > SECONDS_PER_DAY
    return TimeChart(
        intervals=record.intervals,
        x_label=lambda i: clock(i, record.interval_seconds, days),
        tick_every=_tick_every(record.intervals, record.interval_seconds),
        **kwargs,  # type: ignore[arg-type]
    )


def _when(record: RunRecord, t: int) -> str:
    days = record.intervals * record.interval_seconds > SECONDS_PER_DAY
    return f"interval {t} ({clock(t, record.interval_seconds, days)})"


def _market_section(record: RunRecord) -> str:
    prices = interval_average_prices(record)
    volumes = [r.volume_wh for r in record.interval_results]

    def price_tip(i: int) -> str:
        return f"{_when(record, i)}: {price_text(prices[i])} currency/kWh"

    def volume_tip(i: int) -> str:
        return f"{_when(record, i)}: {kwh_text(volumes[i], 3)} kWh traded"

    price_chart = _time_chart(
        record,
        y_label="price (currency/kWh)",
        lines=[LineSeries("price", [_per_kwh(p) for p in prices], "line-price", tooltip=price_tip)],
        height=230,
        title="Clearing price per interval",
    )
    volume_chart = _time_chart(
        record,
        y_label="volume (kWh)",
        bars=[BarSeries("volume", [_kwh(v) for v in volumes], "bar-volume", volume_tip)],
        height=210,
        title="Traded volume per interval",
    )
    note = (
        "One price per interval (the k-double auction)."
        if record.mechanism == "uniform"
        else "Pay-as-bid: each trade has its own price; shown is the volume-weighted average."
    )
    return (
        '<section id="market"><h2>Market</h2>'
        f'<p class="lede">Clearing price and traded volume of every interval. {escape(note)} '
        "Gaps: nothing traded.</p>"
        f"<figure>{price_chart.render()}<figcaption>Clearing price</figcaption></figure>"
        f"<figure>{volume_chart.render()}<figcaption>Traded volume</figcaption></figure>"
        "</section>"
    )


def busiest_interval(record: RunRecord) -> int:
    """The interval with the largest traded volume (the earliest on ties; 0 if none)."""
    best = max(record.interval_results, key=lambda r: (r.volume_wh, -r.interval), default=None)
    return best.interval if best is not None else 0


def _book_section(record: RunRecord, t: int) -> str:
    orders = [o for o in record.orders if o.interval == t]
    bids = sorted((o for o in orders if o.side == "buy"), key=lambda o: -o.price_per_wh)
    asks = sorted((o for o in orders if o.side == "sell"), key=lambda o: o.price_per_wh)

    def steps(side: Sequence[OrderRecord]) -> list[tuple[float, float, str]]:
        out = []
        for o in side:
            out.append(
                (
                    _kwh(o.quantity_wh),
                    _per_kwh(o.price_per_wh) or 0.0,
                    f"{o.participant}: {o.side} {kwh_text(o.quantity_wh, 3)} kWh at "
                    f"{price_text(o.price_per_wh)} (filled {kwh_text(o.filled_wh, 3)} kWh)",
                )
            )
        return out

    result = record.interval_results[t] if 0 <= t < len(record.interval_results) else None
    price = interval_average_prices(record)[t] if result else None
    clearing = (
        (_kwh(result.volume_wh), _per_kwh(price) or 0.0)
        if result is not None and result.volume_wh and price is not None
        else None
    )
    chart = _supply_demand_svg(
        steps(bids),
        steps(asks),
        clearing,
        x_label="cumulative quantity (kWh)",
        y_label="limit price (currency/kWh)",
        title=f"Supply and demand in {_when(record, t)}",
    )
    cleared = (
        f"It cleared {kwh_text(result.volume_wh, 3)} kWh at {price_text(price)} currency/kWh."
        if result is not None and result.volume_wh
        else "Nothing traded."
    )
    return (
        '<section id="book"><h2>Supply and demand in one interval</h2>'
        f'<p class="lede">The order book of {escape(_when(record, t))}, the busiest of the run: '
        f"{len(bids)} bids and {len(asks)} asks as step curves of cumulative quantity against "
        f"limit price. {escape(cleared)}</p>"
        + _legend(
            [
                ("demand", "demand (bids, highest first)"),
                ("supply", "supply (asks, lowest first)"),
                ("clearing-dot", "clearing point"),
            ]
        )
        + f"<figure>{chart}</figure></section>"
    )


def _delivery_section(record: RunRecord) -> str:
    n = record.intervals
    delivered, short, pending = [0] * n, [0] * n, [0] * n
    penalties = [0] * n
    settled = {r.interval for r in record.interval_results if r.settled}
    for s in record.settlements:
        if 0 <= s.interval < n:
            delivered[s.interval] += s.delivered_wh
            short[s.interval] += s.shortfall_wh
            penalties[s.interval] += s.penalty_base_units
    for trade in record.trades:
        if 0 <= trade.interval < n and trade.interval not in settled:
            pending[trade.interval] += trade.quantity_wh

    def tip(i: int) -> str:
        contracted = delivered[i] + short[i] + pending[i]
        text = f"{_when(record, i)}: contracted {kwh_text(contracted, 3)} kWh"
        if pending[i]:
            return text + ", not settled yet"
        return (
            text + f", delivered {kwh_text(delivered[i], 3)} kWh, short {kwh_text(short[i], 3)} kWh"
        )

    energy = _time_chart(
        record,
        y_label="energy (kWh)",
        bars=[
            BarSeries("delivered", [_kwh(v) for v in delivered], "bar-delivered", tip),
            BarSeries("shortfall", [_kwh(v) for v in short], "bar-shortfall", tip),
            BarSeries("not settled", [_kwh(v) for v in pending], "bar-pending", tip),
        ],
        title="Contracted and delivered energy per interval",
    )
    penalty = _time_chart(
        record,
        y_label="penalties (tokens)",
        bars=[
            BarSeries(
                "penalties",
                [_tokens(v) for v in penalties],
                "bar-penalty",
                lambda i: f"{_when(record, i)}: {tokens_text(penalties[i], 4)} tokens of penalties",
            )
        ],
        height=190,
        title="Penalties per interval",
    )
    tolerance = f"{record.tolerance_bps / 100:g} %"
    return (
        '<section id="delivery"><h2>Contracted and delivered energy</h2>'
        '<p class="lede">Each bar is the energy contracted in an interval: the part the sellers '
        "delivered (their export, up to what they sold) and the shortfall. A shortfall beyond "
        f"the tolerance of {tolerance} costs the seller {price_text(record.penalty_price_per_wh)} "
        "currency/kWh, paid to the buyer.</p>"
        + _legend(
            [
                ("bar-delivered", "delivered"),
                ("bar-shortfall", "shortfall"),
                ("bar-pending", "not settled"),
            ]
        )
        + f"<figure>{energy.render()}</figure>"
        + f"<figure>{penalty.render()}"
        + "<figcaption>Penalties paid by sellers to buyers</figcaption></figure>"
        "</section>"
    )


def _net_rows(items: Sequence[tuple[str, int]]) -> list[HBar]:
    return [
        HBar(
            label,
            [
                (
                    _tokens(value),
                    "pos" if value >= 0 else "neg",
                    f"{label}: {'+' if value >= 0 else ''}{tokens_text(value, 4)} tokens",
                )
            ],
        )
        for label, value in items
    ]


def _participants_section(record: RunRecord, pos: dict[str, Position]) -> str:
    by_kind: dict[str, list[Position]] = defaultdict(list)
    for p in pos.values():
        by_kind[p.kind].append(p)
    kinds = [k for k in KIND_LABELS if k in by_kind] + sorted(set(by_kind) - set(KIND_LABELS))
    kind_net = _net_rows(
        [(KIND_LABELS.get(k, k), sum(p.net_base_units for p in by_kind[k])) for k in kinds]
    )
    ranked = sorted(pos.values(), key=lambda p: (-p.net_base_units, p.name))
    if len(ranked) > MAX_PARTICIPANT_ROWS:
        half = MAX_PARTICIPANT_ROWS // 2
        ranked = ranked[:half] + ranked[-half:]
        which = f"the {half} highest and {half} lowest of {len(pos)}"
    else:
        which = f"all {len(pos)}"
    single_net = _net_rows([(p.name, p.net_base_units) for p in ranked])

    mix_rows = []
    for k in kinds:
        group = by_kind[k]
        label = KIND_LABELS.get(k, k)

        def total(attr: str, group: list[Position] = group) -> int:
            return int(sum(getattr(p, attr) for p in group))

        received, grid, own = (
            total("received_wh"),
            total("grid_import_wh"),
            total("self_supplied_wh"),
        )
        delivered, spill = total("delivered_wh"), total("grid_export_wh")
        mix_rows.append(
            HBar(
                label,
                [
                    (
                        -_kwh(delivered),
                        "mix-sold",
                        f"{label}: sold and delivered {kwh_text(delivered)} kWh",
                    ),
                    (-_kwh(spill), "mix-spill", f"{label}: exported unsold {kwh_text(spill)} kWh"),
                    (
                        _kwh(received),
                        "mix-bought",
                        f"{label}: bought and received {kwh_text(received)} kWh",
                    ),
                    (
                        _kwh(grid),
                        "mix-grid",
                        f"{label}: from the utility grid {kwh_text(grid)} kWh",
                    ),
                    (_kwh(own), "mix-self", f"{label}: self-supplied {kwh_text(own)} kWh"),
                ],
            )
        )

    net_label, mix_label = "net position (tokens)", "energy (kWh): out ← | → in"
    rows = []
    for p in pos.values():
        net = p.net_base_units
        rows.append(
            "<tr>"
            f'<td class="l">{escape(p.name)}</td>'
            f'<td class="l">{escape(KIND_COUNTED.get(p.kind, (p.kind,))[0])}</td>'
            f"<td>{kwh_text(p.bought_wh)}</td><td>{kwh_text(p.sold_wh)}</td>"
            f"<td>{kwh_text(p.delivered_wh)}</td><td>{kwh_text(p.shortfall_wh)}</td>"
            f"<td>{kwh_text(p.self_supplied_wh)}</td><td>{kwh_text(p.grid_import_wh)}</td>"
            f'<td class="{"pos-text" if net > 0 else "neg-text" if net < 0 else ""}">'
            f"{'+' if net > 0 else ''}{tokens_text(net, 4)}</td>"
            "</tr>"
        )
    table = (
        "<details><summary>Every participant (energy in kWh)</summary>"
        '<div class="scroll"><table>'
        '<thead><tr><th class="l">participant</th><th class="l">kind</th><th>bought</th>'
        "<th>sold</th><th>delivered</th><th>short</th><th>self-supplied</th>"
        "<th>from grid</th><th>net tokens</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div></details>"
    )
    return (
        '<section id="participants"><h2>Participants</h2>'
        '<p class="lede">Net position: tokens earned from delivered sales and received as '
        "penalties, minus tokens paid for delivered purchases and paid as penalties. It sums to "
        "zero over everyone: the ledger only moves tokens between participants.</p>"
        f"<figure>{hbar_chart(kind_net, x_label=net_label, title='Net position by kind')}"
        "<figcaption>Net position by kind</figcaption></figure>"
        f"<figure>{hbar_chart(single_net, x_label=net_label, title='Net position')}"
        f"<figcaption>Net position of {escape(which)} participants</figcaption></figure>"
        "<h3>Energy mix</h3>"
        '<p class="lede">Where each kind\'s energy went (left) and came from (right): sold and '
        "delivered, exported without a sale; bought in the market, taken from the utility grid "
        "beyond what was bought, and supplied on site by own PV or batteries.</p>"
        + _legend(
            [
                ("mix-sold", "sold and delivered"),
                ("mix-spill", "exported unsold"),
                ("mix-bought", "bought in the market"),
                ("mix-grid", "from the utility grid"),
                ("mix-self", "self-supplied"),
            ]
        )
        + f"<figure>{hbar_chart(mix_rows, x_label=mix_label, title='Energy mix')}</figure>"
        + table
        + "</section>"
    )


def _datacenter_section(record: RunRecord) -> str:
    if not record.load_shift and not record.jobs:
        return ""
    prices = interval_average_prices(record)
    names = list(
        dict.fromkeys(
            [s.participant for s in record.load_shift] + [j.participant for j in record.jobs]
        )
    )
    parts = [
        '<section id="data-centers"><h2>Data-center load shifting</h2>'
        '<p class="lede">Base load runs all the time. Batch work is either <em>must-run</em> '
        "(it cannot wait any longer without missing its deadline, bid at the maximum price) or "
        "<em>flexible</em> (bid in price steps, so it moves to cheap intervals). The line is the "
        "clearing price.</p>"
        + _legend(
            [
                ("bar-base", "base load"),
                ("bar-must", "must-run batch work"),
                ("bar-flex", "flexible batch work"),
                ("line-price2", "clearing price (right axis)"),
            ]
        )
    ]
    for name in names:
        shifts = {s.interval: s for s in record.load_shift if s.participant == name}
        base = [_kwh(shifts[i].base_wh) if i in shifts else None for i in range(record.intervals)]
        must = [
            _kwh(shifts[i].must_run_wh) if i in shifts else None for i in range(record.intervals)
        ]
        flex = [
            _kwh(shifts[i].flexible_wh) if i in shifts else None for i in range(record.intervals)
        ]

        def tip(i: int, shifts: dict[int, LoadShiftRecord] = shifts) -> str:
            s = shifts.get(i)
            if s is None:
                return _when(record, i)
            return (
                f"{_when(record, i)}: base {kwh_text(s.base_wh, 3)} kWh, must-run "
                f"{kwh_text(s.must_run_wh, 3)} kWh, flexible {kwh_text(s.flexible_wh, 3)} kWh; "
                f"price {price_text(prices[i])}"
            )

        chart = _time_chart(
            record,
            y_label="energy (kWh)",
            y2_label="price (currency/kWh)",
            bars=[
                BarSeries("base", base, "bar-base", tip),
                BarSeries("must-run", must, "bar-must", tip),
                BarSeries("flexible", flex, "bar-flex", tip),
            ],
            lines=[
                LineSeries(
                    "price",
                    [_per_kwh(p) for p in prices],
                    "line-price2",
                    secondary=True,
                    tooltip=lambda i: f"{_when(record, i)}: {price_text(prices[i])} currency/kWh",
                )
            ],
            title=f"Load of {name}",
        )
        job_rows = []
        for j in (j for j in record.jobs if j.participant == name):
            status = (
                '<span class="open">open at end of run</span>'
                if j.open
                else '<span class="ok">met</span>'
                if j.met
                else '<span class="bad">missed</span>'
            )
            finished = "—" if j.finished_interval is None else _when(record, j.finished_interval)
            job_rows.append(
                f'<tr><td class="l">{escape(j.job)}</td><td>{kwh_text(j.energy_wh)}</td>'
                f"<td>{escape(_when(record, j.release_interval))}</td>"
                f"<td>{escape(_when(record, j.deadline_interval))}</td>"
                f"<td>{kwh_text(j.consumed_wh)}</td><td>{escape(finished)}</td><td>{status}</td></tr>"
            )
        parts.append(
            f"<h3>{escape(name)}</h3><figure>{chart.render()}</figure>"
            + (
                '<table><thead><tr><th class="l">job</th><th>energy kWh</th><th>released</th>'
                "<th>deadline</th><th>consumed kWh</th><th>finished</th><th>status</th>"
                "</tr></thead><tbody>" + "".join(job_rows) + "</tbody></table>"
                if job_rows
                else ""
            )
        )
    parts.append("</section>")
    return "".join(parts)


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


def render_report(record: RunRecord, *, book_interval: int | None = None) -> str:
    """The whole report as one self-contained HTML string (pure: same record, same text).

    ``book_interval`` picks the interval whose supply and demand curves are drawn; by
    default the one with the largest traded volume.
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
        + _market_section(record)
        + _book_section(record, t)
        + _delivery_section(record)
        + _participants_section(record, pos)
        + _datacenter_section(record)
        + _details_section(record)
        + "<footer>Generated by wattledger from the run record. Self-contained: no scripts, "
        "no external resources.</footer></main></body></html>\n"
    )


# --------------------------------------------------------------------------- files


ORDER_COLUMNS = (
    "interval",
    "order_id",
    "participant",
    "side",
    "quantity_wh",
    "price_per_wh",
    "filled_wh",
)
TRADE_COLUMNS = (
    "interval",
    "buy_order_id",
    "sell_order_id",
    "buyer",
    "seller",
    "quantity_wh",
    "price_per_wh",
    "value_base_units",
)
SETTLEMENT_COLUMNS = (
    "interval",
    "buy_order_id",
    "sell_order_id",
    "buyer",
    "seller",
    "quantity_wh",
    "delivered_wh",
    "shortfall_wh",
    "price_per_wh",
    "paid_base_units",
    "refunded_base_units",
    "penalty_base_units",
)
METER_COLUMNS = (
    "interval",
    "participant",
    "imported_wh",
    "exported_wh",
    "load_wh",
    "generation_wh",
)
PARTICIPANT_COLUMNS = (
    "participant",
    "kind",
    "address",
    "collateral_base_units",
    "bought_wh",
    "sold_wh",
    "received_wh",
    "delivered_wh",
    "shortfall_wh",
    "paid_base_units",
    "earned_base_units",
    "penalties_paid_base_units",
    "penalties_received_base_units",
    "net_base_units",
    "imported_wh",
    "exported_wh",
    "load_wh",
    "generation_wh",
    "self_supplied_wh",
    "grid_import_wh",
    "grid_export_wh",
)


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def write_orders_csv(record: RunRecord, path: Path) -> Path:
    """Every accepted order with its fill (columns :data:`ORDER_COLUMNS`)."""
    return _write_csv(
        path,
        ORDER_COLUMNS,
        (
            (
                o.interval,
                o.order_id,
                o.participant,
                o.side,
                o.quantity_wh,
                o.price_per_wh,
                o.filled_wh,
            )
            for o in record.orders
        ),
    )


def write_trades_csv(record: RunRecord, path: Path) -> Path:
    """Every trade (columns :data:`TRADE_COLUMNS`)."""
    return _write_csv(
        path,
        TRADE_COLUMNS,
        (
            (
                t.interval,
                t.buy_order_id,
                t.sell_order_id,
                t.buyer,
                t.seller,
                t.quantity_wh,
                t.price_per_wh,
                t.value_base_units,
            )
            for t in record.trades
        ),
    )


def write_settlements_csv(record: RunRecord, path: Path) -> Path:
    """Every settled trade (columns :data:`SETTLEMENT_COLUMNS`)."""
    return _write_csv(
        path,
        SETTLEMENT_COLUMNS,
        (
            (
                s.interval,
                s.buy_order_id,
                s.sell_order_id,
                s.buyer,
                s.seller,
                s.quantity_wh,
                s.delivered_wh,
                s.shortfall_wh,
                s.price_per_wh,
                s.paid_base_units,
                s.refunded_base_units,
                s.penalty_base_units,
            )
            for s in record.settlements
        ),
    )


def write_meters_csv(record: RunRecord, path: Path) -> Path:
    """Every meter reading (columns :data:`METER_COLUMNS`)."""
    return _write_csv(
        path,
        METER_COLUMNS,
        (
            (m.interval, m.participant, m.imported_wh, m.exported_wh, m.load_wh, m.generation_wh)
            for m in record.meters
        ),
    )


def write_participants_csv(record: RunRecord, path: Path) -> Path:
    """Each participant's totals (columns :data:`PARTICIPANT_COLUMNS`)."""
    pos = positions(record)
    info = {p.name: p for p in record.participants}
    rows = []
    for name, p in pos.items():
        participant = info.get(name)
        rows.append(
            (
                name,
                p.kind,
                participant.address if participant else "",
                participant.collateral_base_units if participant else "",
                *(getattr(p, column) for column in PARTICIPANT_COLUMNS[4:13]),
                p.net_base_units,
                *(getattr(p, column) for column in PARTICIPANT_COLUMNS[14:]),
            )
        )
    return _write_csv(path, PARTICIPANT_COLUMNS, rows)


def write_summary_json(record: RunRecord, path: Path) -> Path:
    """:func:`~simulation.summary.summarize` as indented JSON with a final newline."""
    path.write_text(json.dumps(summarize(record), indent=2) + "\n", encoding="utf-8")
    return path


def write_run(
    record: RunRecord, out_dir: Path | str, *, book_interval: int | None = None
) -> dict[str, Path]:
    """Write the report, ``summary.json`` and the CSVs into ``out_dir`` (created if needed).

    Returns the written paths by file name.
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    report = directory / "report.html"
    report.write_text(render_report(record, book_interval=book_interval), encoding="utf-8")
    files = {
        "report.html": report,
        "summary.json": write_summary_json(record, directory / "summary.json"),
        "orders.csv": write_orders_csv(record, directory / "orders.csv"),
        "trades.csv": write_trades_csv(record, directory / "trades.csv"),
        "settlements.csv": write_settlements_csv(record, directory / "settlements.csv"),
        "meters.csv": write_meters_csv(record, directory / "meters.csv"),
        "participants.csv": write_participants_csv(record, directory / "participants.csv"),
    }
    return files
