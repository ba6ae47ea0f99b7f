"""A run's files: the report, ``summary.json`` and the CSVs, written into one directory.

:func:`write_run` writes:

=====================  ===========================================================
``report.html``        :func:`~simulation.report.page.render_report`
``summary.json``       :func:`~simulation.summary.summarize` (deterministic per seed)
``orders.csv``         interval, order_id, participant, side, quantity_wh, price_per_wh, filled_wh
``trades.csv``         interval, order ids, buyer, seller, quantity_wh, price_per_wh, value
``settlements.csv``    per trade: delivered, shortfall, paid, refunded, penalty (base units)
``meters.csv``         interval, participant, imported_wh, exported_wh, load_wh, generation_wh
``participants.csv``   each participant's totals and net position
``days.csv``           instead of the four above for a run longer than a day: one row
                       per day (market, settlement, energy mix, hourly prices)
=====================  ===========================================================

All CSV numbers are exact integers in Wh, base units and base units per Wh.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from simulation.aggregates import HOURS_PER_DAY, MIX_FIELDS
from simulation.positions import positions
from simulation.record import RunRecord
from simulation.report.page import render_report
from simulation.summary import season_summary, summarize

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
DAY_COLUMNS = (
    "day",
    "month",
    "intervals",
    "intervals_with_trades",
    "orders",
    "trades",
    "traded_wh",
    "traded_value_base_units",
    "average_price_per_wh",
    "min_price_per_wh",
    "max_price_per_wh",
    "contracted_wh",
    "delivered_wh",
    "paid_base_units",
    "penalties_base_units",
    *MIX_FIELDS,
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
    }
    if record.season is None:
        files["orders.csv"] = write_orders_csv(record, directory / "orders.csv")
        files["trades.csv"] = write_trades_csv(record, directory / "trades.csv")
        files["settlements.csv"] = write_settlements_csv(record, directory / "settlements.csv")
        files["meters.csv"] = write_meters_csv(record, directory / "meters.csv")
    else:
        files["days.csv"] = write_days_csv(record, directory / "days.csv")
    files["participants.csv"] = write_participants_csv(record, directory / "participants.csv")
    return files


def write_days_csv(record: RunRecord, path: Path) -> Path:
    """One row per day of a run folded by day (:attr:`RunRecord.season`): the entries of
    ``summary.json``'s ``season.days``, and the day's hourly prices (``price_hNN``)."""
    days = season_summary(record.season)["days"] if record.season is not None else []
    hourly = record.season.days if record.season is not None else ()
    columns = (*DAY_COLUMNS, *(f"price_h{h:02d}" for h in range(HOURS_PER_DAY)))
    rows = (
        [row[c] for c in DAY_COLUMNS] + ["" if p is None else p for p in d.hourly_price_per_wh]
        for row, d in zip(days, hourly, strict=True)
    )
    return _write_csv(path, columns, rows)
