"""The run's headline figures: the report's top panel and the lines printed after a run."""

from __future__ import annotations

from pathlib import Path

from simulation.checks import check_record
from simulation.record import RunRecord
from simulation.report.display import KIND_LABELS, kind_count, kwh_text, price_text, tokens_text
from simulation.summary import summarize


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
