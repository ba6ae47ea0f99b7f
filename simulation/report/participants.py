"""The report's sections on participants: net positions, energy mix, data-center load.

* Participants: the net position (tokens earned and received as penalties minus tokens
  paid) by kind and of the highest and lowest participants, where each kind's energy went
  and came from, and a table of every participant.
* Data-center load shifting: each data center's base load, must-run and flexible batch work
  against the clearing price, and its jobs with their deadlines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from html import escape

from simulation.positions import Position, interval_average_prices
from simulation.record import LoadShiftRecord, RunRecord
from simulation.report.charts import BarSeries, HBar, LineSeries, hbar_chart
from simulation.report.display import (
    KIND_COUNTED,
    KIND_LABELS,
    kwh_float,
    kwh_text,
    legend,
    price_float,
    price_text,
    time_chart,
    tokens_float,
    tokens_text,
    when,
)

MAX_PARTICIPANT_ROWS = 24
"""Most participants drawn one by one in the net-position chart (the table lists all)."""


def _net_rows(items: Sequence[tuple[str, int]]) -> list[HBar]:
    return [
        HBar(
            label,
            [
                (
                    tokens_float(value),
                    "pos" if value >= 0 else "neg",
                    f"{label}: {'+' if value >= 0 else ''}{tokens_text(value, 4)} tokens",
                )
            ],
        )
        for label, value in items
    ]


def participants_section(record: RunRecord, pos: dict[str, Position]) -> str:
    """Net positions by kind and per participant, the energy mix, and every participant."""
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
                        -kwh_float(delivered),
                        "mix-sold",
                        f"{label}: sold and delivered {kwh_text(delivered)} kWh",
                    ),
                    (
                        -kwh_float(spill),
                        "mix-spill",
                        f"{label}: exported unsold {kwh_text(spill)} kWh",
                    ),
                    (
                        kwh_float(received),
                        "mix-bought",
                        f"{label}: bought and received {kwh_text(received)} kWh",
                    ),
                    (
                        kwh_float(grid),
                        "mix-grid",
                        f"{label}: from the utility grid {kwh_text(grid)} kWh",
                    ),
                    (kwh_float(own), "mix-self", f"{label}: self-supplied {kwh_text(own)} kWh"),
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
        + legend(
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


def datacenter_section(record: RunRecord) -> str:
    """Each data center's load against the price, and its jobs (empty without any)."""
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
        + legend(
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
        base = [
            kwh_float(shifts[i].base_wh) if i in shifts else None for i in range(record.intervals)
        ]
        must = [
            kwh_float(shifts[i].must_run_wh) if i in shifts else None
            for i in range(record.intervals)
        ]
        flex = [
            kwh_float(shifts[i].flexible_wh) if i in shifts else None
            for i in range(record.intervals)
        ]

        def tip(i: int, shifts: dict[int, LoadShiftRecord] = shifts) -> str:
            s = shifts.get(i)
            if s is None:
                return when(record, i)
            return (
                f"{when(record, i)}: base {kwh_text(s.base_wh, 3)} kWh, must-run "
                f"{kwh_text(s.must_run_wh, 3)} kWh, flexible {kwh_text(s.flexible_wh, 3)} kWh; "
                f"price {price_text(prices[i])}"
            )

        chart = time_chart(
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
                    [price_float(p) for p in prices],
                    "line-price2",
                    secondary=True,
                    tooltip=lambda i: f"{when(record, i)}: {price_text(prices[i])} currency/kWh",
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
            finished = "—" if j.finished_interval is None else when(record, j.finished_interval)
            job_rows.append(
                f'<tr><td class="l">{escape(j.job)}</td><td>{kwh_text(j.energy_wh)}</td>'
                f"<td>{escape(when(record, j.release_interval))}</td>"
                f"<td>{escape(when(record, j.deadline_interval))}</td>"
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
