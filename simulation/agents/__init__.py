"""Simulated market participants, one module per kind, and :func:`build_agents`.

===============  =========================================  =====================
kind             class                                      module
===============  =========================================  =====================
``pv``           :class:`~.pv.PvProsumer`                   :mod:`.pv`
``battery``      :class:`~.battery.BatteryAgent`            :mod:`.battery`
``household``    :class:`~.household.Household`             :mod:`.household`
``data_center``  :class:`~.datacenter.DataCenterAgent`      :mod:`.datacenter`
``vpp``          :class:`~.vpp.VppAggregator`               :mod:`.vpp`
===============  =========================================  =====================

The interface every driver uses is :class:`~.base.Agent` (see :mod:`.base` for the call
order). PV prosumers, batteries, households and VPPs share the site model of :mod:`.site`;
the battery physics and price strategy are in :mod:`.storage`.
"""

from __future__ import annotations

from simulation.agents.base import (
    Agent,
    AgentContext,
    AgentProtocolError,
    Fill,
    MarketView,
    MeterSample,
    OrderIntent,
    Side,
)
from simulation.agents.battery import BatteryAgent
from simulation.agents.datacenter import DataCenterAgent, JobOutcome, LoadShift
from simulation.agents.household import Household
from simulation.agents.pv import PvProsumer
from simulation.agents.site import SiteAgent, Sky
from simulation.agents.vpp import VppAggregator
from simulation.scenario import Scenario, agent_names

__all__ = [
    "Agent",
    "AgentContext",
    "AgentProtocolError",
    "BatteryAgent",
    "DataCenterAgent",
    "Fill",
    "Household",
    "JobOutcome",
    "LoadShift",
    "MarketView",
    "MeterSample",
    "OrderIntent",
    "PvProsumer",
    "Side",
    "SiteAgent",
    "Sky",
    "VppAggregator",
    "build_agents",
    "context_of",
]


def context_of(scenario: Scenario) -> AgentContext:
    """The :class:`AgentContext` every agent of ``scenario`` shares."""
    return AgentContext(
        seed=scenario.simulation.seed,
        intervals=scenario.simulation.intervals,
        interval_seconds=scenario.simulation.interval_seconds,
        penalty_price_per_wh=scenario.market.penalty_price_per_wh,
        calendar=scenario.calendar,
    )


def build_agents(scenario: Scenario) -> list[Agent]:
    """Every agent of ``scenario``, by kind (pv, battery, household, data_center, vpp) and
    then in file order. Pure and deterministic: the same scenario gives agents that behave
    identically, each with its own random stream derived from the seed and its name."""
    context = context_of(scenario)
    sky = Sky.from_spec(scenario.weather, context)
    specs = scenario.agents
    agents: list[Agent] = []
    for pv in specs.pv:
        agents += [PvProsumer(n, context, pv, sky) for n in agent_names(pv.name, pv.count)]
    for battery in specs.battery:
        names = agent_names(battery.name, battery.count)
        agents += [BatteryAgent(n, context, battery, sky) for n in names]
    for home in specs.household:
        agents += [Household(n, context, home) for n in agent_names(home.name, home.count)]
    for dc in specs.data_center:
        agents += [DataCenterAgent(n, context, dc) for n in agent_names(dc.name, dc.count)]
    for vpp in specs.vpp:
        agents += [VppAggregator(n, context, vpp, sky) for n in agent_names(vpp.name, vpp.count)]
    return agents
