"""The reconciliation report of one interval as a table for the terminal (``rich``).

``wattledger settle --report T`` prints it; ``--json`` prints
:meth:`settlement.report.SettlementReport.to_json` instead, which lists every row.
"""

from __future__ import annotations

from typing import Any

from settlement.report import SettlementReport


def render(report: SettlementReport, *, max_rows: int = 40) -> Any:
    """A ``rich`` renderable of the report: totals, checks, trades and participants.

    At most ``max_rows`` trades and participants are listed (the JSON form has all).
    """
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def money(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    head = Text.assemble(
        (f"Interval {report.interval}", "bold"),
        f"  status {report.status}, {report.totals.settled_trades}/{report.trade_count} trades "
        f"settled, {report.readings} readings, penalty {report.terms.penalty_price_per_wh:,} "
        f"per Wh, tolerance {report.terms.tolerance_bps} bps  ",
        ("OK" if report.ok else "MISMATCH", "bold green" if report.ok else "bold red"),
    )
    totals = Table(title="Totals (Wh; token base units)", show_header=False)
    totals.add_column("what")
    totals.add_column("value", justify="right")
    t = report.totals
    for name, value in (
        ("contracted Wh", t.contracted_wh),
        ("delivered Wh", t.delivered_wh),
        ("shortfall Wh", t.shortfall_wh),
        ("contracted value", t.contracted_value),
        ("paid to sellers", t.paid),
        ("refunded to buyers", t.refunded),
        ("penalties", t.penalties),
        ("bonds", t.bonds),
        ("locked at commit", t.locked),
        ("released", t.released),
        ("credited", t.credited),
    ):
        totals.add_row(name, money(value))
    checks = Table(title="Checks")
    checks.add_column("check")
    checks.add_column("ok")
    checks.add_column("detail")
    for c in report.checks:
        checks.add_row(c.name, Text("yes", "green") if c.ok else Text("NO", "bold red"), c.detail)
    trades = Table(title=f"Trades ({len(report.trades)})")
    for col in (
        "#",
        "buyer",
        "seller",
        "contracted Wh",
        "delivered Wh",
        "paid",
        "refunded",
        "penalty",
    ):
        trades.add_column(col, justify="right" if col not in ("buyer", "seller") else "left")
    for line in report.trades[:max_rows]:
        trades.add_row(
            str(line.index),
            line.buyer[:10] + "…",
            line.seller[:10] + "…",
            f"{line.quantity_wh:,}",
            "-" if line.delivered_wh is None else f"{line.delivered_wh:,}",
            money(line.paid),
            money(line.refunded),
            money(line.penalty),
        )
    parties = Table(title=f"Participants ({len(report.participants)})")
    for col in ("participant", "locked", "released", "credited", "net change"):
        parties.add_column(col, justify="left" if col == "participant" else "right")
    for p in report.participants[:max_rows]:
        parties.add_row(
            p.participant,
            money(p.locked),
            money(p.released),
            money(p.credited),
            f"{p.net_change:+,}",
        )
    parts: list[Any] = [head, totals, checks, trades]
    if len(report.trades) > max_rows:
        parts.append(Text(f"... {len(report.trades) - max_rows} more trades (--json lists all)"))
    parts.append(parties)
    if len(report.participants) > max_rows:
        parts.append(Text(f"... {len(report.participants) - max_rows} more participants"))
    if report.mismatches:
        parts.append(Text("Mismatches:", "bold red"))
        parts.extend(Text("  " + m) for m in report.mismatches[:max_rows])
    return Group(*parts)


__all__ = [
    "render",
]
