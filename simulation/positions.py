"""Each participant's totals over a run, and the price of each interval, from its record.

Pure functions of a :class:`~simulation.record.RunRecord`: :func:`positions` adds up what
every participant bought, sold, delivered and paid (its net position in token base units)
and where its energy came from (the market, the utility grid, its own PV or battery);
:func:`interval_average_prices` gives the price of each interval as the report draws it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from simulation.record import RunRecord


@dataclass
class Position:
    """One participant's totals over the run (energy in Wh, money in base units)."""

    name: str
    kind: str
    bought_wh: int = 0
    sold_wh: int = 0
    received_wh: int = 0
    """Energy delivered to it on its purchases (the sellers' delivered share)."""
    delivered_wh: int = 0
    """Energy it delivered on its sales."""
    shortfall_wh: int = 0
    paid_base_units: int = 0
    earned_base_units: int = 0
    penalties_paid_base_units: int = 0
    penalties_received_base_units: int = 0
    imported_wh: int = 0
    exported_wh: int = 0
    load_wh: int = 0
    generation_wh: int = 0
    self_supplied_wh: int = 0
    grid_import_wh: int = 0
    """Import beyond what it bought in the market, interval by interval (from the utility)."""
    grid_export_wh: int = 0
    """Export beyond what it sold, interval by interval (spilled to the utility)."""

    @property
    def net_base_units(self) -> int:
        """Money in minus money out through the ledger's settlements."""
        return (
            self.earned_base_units
            - self.paid_base_units
            + self.penalties_received_base_units
            - self.penalties_paid_base_units
        )


def positions(record: RunRecord) -> dict[str, Position]:
    """Every participant's :class:`Position`, in participant order."""
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
        seller.earned_base_units += s.paid_base_units
        seller.penalties_paid_base_units += s.penalty_base_units
    for m in record.meters:
        p = get(m.participant)
        p.imported_wh += m.imported_wh
        p.exported_wh += m.exported_wh
        p.load_wh += m.load_wh
        p.generation_wh += m.generation_wh
        p.self_supplied_wh += m.self_supplied_wh
        p.grid_import_wh += max(0, m.imported_wh - bought[m.participant, m.interval])
        p.grid_export_wh += max(0, m.exported_wh - sold[m.participant, m.interval])
    return out


def interval_average_prices(record: RunRecord) -> list[int | None]:
    """Per interval: the uniform price, or the volume-weighted trade price rounded down."""
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
