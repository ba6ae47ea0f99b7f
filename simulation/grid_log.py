"""What a run on a grid records per interval, and its summary (issue 16).

Per interval: the node prices of the clearing (docs/grid.md §4), the edges whose flow
reached a cap, the fee revenue and congestion rent the clearing assigns the grid operator,
the energy curtailed at sites whose export exceeded what they sold, and the power flow of
every meter (:mod:`simulation.power_flow`). A **congestion event** is an interval where an
edge was at its cap in the clearing or a line above 100 % in the power flow.

A run folded day by day (a week, a year) keeps the scalar series of every interval (a few
integers each) but not the node prices (a price per node per interval would be millions of
values in a year): :attr:`GridRecord.node_prices_kept` says which, and the report and
summary say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simulation.power_flow import FlowResult


@dataclass(frozen=True, slots=True)
class GridIntervalRecord:
    """One interval on the grid. ``node_prices`` follow :attr:`GridRecord.nodes` (empty when
    nothing cleared, or in a folded run); money in base units, energy in Wh."""

    interval: int
    node_prices: tuple[int | None, ...]
    at_cap: tuple[str, ...]
    fee_revenue_base_units: int
    congestion_rent_base_units: int
    curtailed_wh: int
    flow: FlowResult

    @property
    def congested(self) -> bool:
        """An edge at its cap in the clearing, or a line above 100 % in the power flow."""
        return bool(self.at_cap or self.flow.overloaded_lines)


@dataclass(frozen=True)
class GridRecord:
    """The grid of a run: the feeder, its nodes, where the agents are, and every interval."""

    network: str
    root: str
    nodes: tuple[str, ...]
    agent_nodes: Mapping[str, str]
    caps_wh: Mapping[str, int | None]
    """Each non-root node's edge cap (both directions), Wh per interval."""
    intervals: tuple[GridIntervalRecord, ...]
    node_prices_kept: bool = True
    power_flow_seconds: float = 0.0

    @property
    def fee_revenue_base_units(self) -> int:
        """Fees the clearing assigned over the run (on contracted energy)."""
        return sum(r.fee_revenue_base_units for r in self.intervals)

    @property
    def congestion_rent_base_units(self) -> int:
        """Congestion rent the clearing assigned over the run (on contracted energy)."""
        return sum(r.congestion_rent_base_units for r in self.intervals)

    def price_spread(self, r: GridIntervalRecord) -> int | None:
        """Highest minus lowest node price of the agents' nodes in ``r`` (None: no prices)."""
        used = set(self.agent_nodes.values())
        prices = [p for n, p in zip(self.nodes, r.node_prices, strict=False) if n in used]
        known = [p for p in prices if p is not None]
        return max(known) - min(known) if known else None


def grid_summary(grid: GridRecord, settled_revenue_base_units: int) -> dict[str, Any]:
    """``summary.json``'s ``grid``: totals, extremes, congestion events and, for a run kept
    interval by interval, the series (node prices, loading, voltage band)."""
    flows = [r.flow for r in grid.intervals if r.flow.converged]
    line = [f.max_line_loading_centipct for f in flows if f.max_line_loading_centipct is not None]
    trafo = [
        f.max_trafo_loading_centipct for f in flows if f.max_trafo_loading_centipct is not None
    ]
    low = [f.min_vm_pu_e4 for f in flows if f.min_vm_pu_e4 is not None]
    high = [f.max_vm_pu_e4 for f in flows if f.max_vm_pu_e4 is not None]
    events = [
        {
            "interval": r.interval,
            "edges_at_cap": list(r.at_cap),
            "lines_over_100_pct": list(r.flow.overloaded_lines),
        }
        for r in grid.intervals
        if r.congested
    ]
    out: dict[str, Any] = {
        "network": grid.network,
        "root": grid.root,
        "nodes": len(grid.nodes),
        "agent_nodes": dict(grid.agent_nodes),
        "fee_revenue_base_units": str(grid.fee_revenue_base_units),
        "congestion_rent_base_units": str(grid.congestion_rent_base_units),
        "grid_revenue_settled_base_units": str(settled_revenue_base_units),
        "curtailed_wh": sum(r.curtailed_wh for r in grid.intervals),
        "max_line_loading_pct": _pct(max(line, default=None)),
        "max_transformer_loading_pct": _pct(max(trafo, default=None)),
        "min_vm_pu": _pu(min(low, default=None)),
        "max_vm_pu": _pu(max(high, default=None)),
        "power_flows_not_converged": sum(1 for r in grid.intervals if not r.flow.converged),
        "congestion_events": events,
        "node_prices_kept": grid.node_prices_kept,
    }
    out["intervals"] = [
        {
            "interval": r.interval,
            **(
                {"node_prices": dict(zip(grid.nodes, r.node_prices, strict=False))}
                if grid.node_prices_kept
                else {}
            ),
            "max_line_loading_pct": _pct(r.flow.max_line_loading_centipct),
            "max_transformer_loading_pct": _pct(r.flow.max_trafo_loading_centipct),
            "min_vm_pu": _pu(r.flow.min_vm_pu_e4),
            "max_vm_pu": _pu(r.flow.max_vm_pu_e4),
            "utility_import_wh": r.flow.utility_import_wh,
            "curtailed_wh": r.curtailed_wh,
            "fee_revenue_base_units": str(r.fee_revenue_base_units),
            "congestion_rent_base_units": str(r.congestion_rent_base_units),
        }
        for r in grid.intervals
    ]
    return out


def _pct(centipct: int | None) -> float | None:
    return None if centipct is None else centipct / 100


def _pu(e4: int | None) -> float | None:
    return None if e4 is None else e4 / 10_000


__all__ = ["GridIntervalRecord", "GridRecord", "grid_summary"]
