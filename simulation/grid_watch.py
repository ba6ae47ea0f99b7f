"""The driver's view of the feeder during a run with ``[grid]`` (issue 16).

After each interval's clearing and delivery, :class:`GridWatch`:

* limits each site's export to what it sold net of what it bought (``curtail_unsold``,
  the default): the inverter curtails the rest of its generation. Without it, a feeder
  would push unsold PV through a transformer the market has just declared full; the cap
  on contracted flows would say nothing about the physics. With it, every Wh a subtree
  exports was sold across its edge, so the physical export of a subtree never exceeds the
  edge's cap in the clearing. Imports are not limited (a home's load is served; energy it
  did not buy comes from the utility through the same lines), so the import direction is
  held by the ratings alone;
* runs the power flow of all the metered injections (:mod:`simulation.power_flow`);
* turns the clearing's grid outcome into a :class:`~simulation.grid_log.GridIntervalRecord`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulation.agents.base import MeterSample
from simulation.feeder import Feeder, node_id, scenario_network
from simulation.grid_log import GridIntervalRecord, GridRecord
from simulation.power_flow import PowerFlow
from simulation.scenario import Scenario


class GridWatch:
    """Curtailment, power flow and grid records for one run on ``feeder``."""

    def __init__(self, scenario: Scenario, feeder: Feeder) -> None:
        assert scenario.grid is not None
        self.spec = scenario.grid
        self.feeder = feeder
        self.curtail_unsold = self.spec.curtail_unsold
        self.power_flow = PowerFlow(
            scenario_network(self.spec), feeder, scenario.simulation.interval_seconds
        )
        grid = feeder.grid(0)
        self.nodes = tuple(n.id for n in grid.nodes)
        self.template = GridRecord(
            feeder.network,
            node_id(feeder.root_bus),
            self.nodes,
            {name: node_id(bus) for name, bus in feeder.agent_bus.items()},
            {node_id(e.bus): e.cap_wh for e in feeder.edges},
            (),
        )

    def limit_export(
        self, sample: MeterSample, bought_wh: int, sold_wh: int
    ) -> tuple[MeterSample, int]:
        """``sample`` with its export cut to ``max(0, sold − bought)`` (taken off its
        generation), and the Wh cut; unchanged when curtailment is off."""
        exported = sample.exported_wh
        if not exported or not self.curtail_unsold:
            return sample, 0  # nothing to cut (most intervals of most sites), or no cutting
        allowed = sold_wh - bought_wh if sold_wh > bought_wh else 0
        if exported <= allowed:
            return sample, 0
        cut = exported - allowed
        return (
            MeterSample(
                imported_wh=sample.imported_wh,
                exported_wh=allowed,
                load_wh=sample.load_wh,
                generation_wh=max(0, sample.generation_wh - cut),
            ),
            cut,
        )

    def observe(
        self,
        t: int,
        outcome: Mapping[str, Any] | None,
        curtailed_wh: int,
        metered: Mapping[str, tuple[int, int]],
    ) -> GridIntervalRecord:
        """Solve the interval's power flow and record it with the clearing's outcome."""
        flow = self.power_flow.run(metered)
        self.template = _with_seconds(self.template, self.power_flow.seconds)
        if outcome is None:
            return GridIntervalRecord(t, (), (), 0, 0, curtailed_wh, flow)
        prices = outcome["nodePrices"]
        return GridIntervalRecord(
            t,
            tuple(prices[n] for n in self.nodes),
            tuple(outcome["atCap"]),
            int(outcome["feeRevenue"]),
            int(outcome["congestionRent"]),
            curtailed_wh,
            flow,
        )


def _with_seconds(template: GridRecord, seconds: float) -> GridRecord:
    return GridRecord(
        template.network,
        template.root,
        template.nodes,
        template.agent_nodes,
        template.caps_wh,
        template.intervals,
        template.node_prices_kept,
        seconds,
    )


__all__ = ["GridWatch"]
