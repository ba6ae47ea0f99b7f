"""Each participant's totals over a run, and the price of each interval, from its record.

Pure functions of a :class:`~simulation.record.RunRecord`: :func:`positions` adds up what
every participant bought, sold, delivered and paid (its net position in token base units)
and where its energy came from (the market, the utility grid, its own PV or battery);
:func:`interval_average_prices` gives the price of each interval as the report draws it.
"""

from __future__ import annotations

import copy
from collections import defaultdict

from simulation.aggregates import Position
from simulation.record import RunRecord


def positions(record: RunRecord) -> dict[str, Position]:
    """Every participant's :class:`Position`, in participant order."""
    if record.season is not None:
        return {name: copy.copy(p) for name, p in record.season.positions.items()}
    out = {p.name: Position(p.name, p.kind) for p in record.participants}

    def get(name: str) -> Position:
        if name not in out:
            out[name] = Position(name, "unknown")
        return out[name]

    bought: dict[tuple[str, int], int] = defaultdict(int)
    sold: dict[tuple[str, int], int] = defaultdict(int)
    for trade in record.trades:
        get(trade.buyer).bought_wh += trade.quantity_wh
        get(trade.seller).sold_wh += trade.quantity_wh
        bought[trade.buyer, trade.interval] += trade.quantity_wh
        sold[trade.seller, trade.interval] += trade.quantity_wh
    for s in record.settlements:
        buyer, seller = get(s.buyer), get(s.seller)
        buyer.received_wh += s.delivered_wh
        buyer.paid_base_units += s.paid_base_units
        buyer.penalties_received_base_units += s.penalty_base_units
        seller.delivered_wh += s.delivered_wh
        seller.shortfall_wh += s.shortfall_wh
        seller.earned_base_units += s.paid_base_units - s.grid_base_units
        seller.penalties_paid_base_units += s.penalty_base_units
    for m in record.meters:
        p = get(m.participant)
        imported, exported, load = m.imported_wh, m.exported_wh, m.load_wh
        p.imported_wh += imported
        p.exported_wh += exported
        p.load_wh += load
        p.generation_wh += m.generation_wh
        if load > imported:  # MeterRecord.self_supplied_wh
            p.self_supplied_wh += load - imported
        if imported:
            grid = imported - bought.get((m.participant, m.interval), 0)
            if grid > 0:
                p.grid_import_wh += grid
        if exported:
            grid = exported - sold.get((m.participant, m.interval), 0)
            if grid > 0:
                p.grid_export_wh += grid
    return out


def interval_average_prices(record: RunRecord) -> list[int | None]:
    """Per interval: the uniform price, or the volume-weighted trade price rounded down."""
    if record.season is not None:
        return list(record.season.interval_prices)
    value: dict[int, int] = defaultdict(int)
    volume: dict[int, int] = defaultdict(int)
    for trade in record.trades:
        value[trade.interval] += trade.value_base_units
        volume[trade.interval] += trade.quantity_wh
    out: list[int | None] = []
    for result in record.interval_results:
        t = result.interval
        if result.price_per_wh is not None:
            out.append(result.price_per_wh)
        elif volume[t]:
            out.append(value[t] // volume[t])
        else:
            out.append(None)
    return out


__all__ = ["Position", "interval_average_prices", "positions"]
