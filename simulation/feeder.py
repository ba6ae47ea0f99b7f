"""A feeder from pandapower's bundled networks, as the market's grid (issue 16, docs/grid.md).

A scenario's ``[grid]`` names a low-voltage network that pandapower ships (the Kerber
networks, the Dickert network, the CIGRE LV network); :func:`load_network` builds it and
:func:`derive_feeder` turns it into what the market clears on:

The tree
    Buses are the nodes (``bus-<index>``). The root is the bus of the external grid (the
    medium-voltage side of the substation). Every in-service line and transformer, and every
    closed bus-bus switch, is an edge; walking out from the root gives each bus its parent.
    A network whose edges close a loop is refused (the clearing needs a radial tree).

Caps (Wh per interval)
    A line carries at most ``sqrt(3) · vn_kv · max_i_ka · parallel`` MVA, a transformer
    ``sn_mva`` (the scenario's ``transformer_kva`` replaces it, in the power flow too); a
    switch is unbounded. Of
    that the scenario's ``margin`` is withheld, and the rest over the interval is the edge's
    cap, rounded down to whole Wh, the same in both directions. The physics is in floats
    (ratings are floats in pandapower); the caps the market sees are exact integers.

Fees
    Per grid level from the scenario: ``transformer_fee_per_kwh`` on transformer edges,
    ``line_fee_per_kwh`` on line edges, 0 on switches.

The document for interval ``T`` is built with :func:`market.grid.check_grid`, the market's
own parser, so the feeder's grid is exactly what the market and the audit would accept; its
canonical bytes parse back with :func:`market.grid.parse_grid`.

Placement
    Each agent is at one bus: the scenario's ``[grid.buses]`` names some of them; the rest
    are spread over the network's load buses (the buses where the bundled network has its
    house connections) in a seeded random order, round robin, so every load bus gets an agent
    before any gets a second.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from market.grid import GRID_VERSION, Grid, check_grid
from simulation.errors import SimulationError
from simulation.profiles import seeded_rng
from simulation.scenario import GridSpec
from simulation.scenario_schema import NETWORKS

NODE_PREFIX = "bus-"


def node_id(bus: int) -> str:
    """The grid document's id of pandapower bus ``bus``."""
    return f"{NODE_PREFIX}{bus}"


NETWORK_SEED = 0
"""Seed of Python's :mod:`random` while a network is built. pandapower's Kerber generators
draw each line's cable type from the global :mod:`random` (between two types of different
ampacity and impedance); seeded, the same name is the same cables in every call, so a run's
caps (from one copy) and power flow (from another) see one network, and a seed gives the
same run every time."""


def load_network(name: str) -> Any:
    """A fresh pandapower network by its scenario name (one of :data:`NETWORKS`), the same
    every time (:data:`NETWORK_SEED`); the global :mod:`random` state is left as it was."""
    import pandapower.networks as pn

    if name not in NETWORKS:
        raise SimulationError(f"unknown network {name!r}; one of {', '.join(NETWORKS)}")
    state = random.getstate()
    random.seed(NETWORK_SEED)
    try:
        return getattr(pn, NETWORKS[name])()
    finally:
        random.setstate(state)


def scenario_network(spec: GridSpec) -> Any:
    """The scenario's network: :func:`load_network` with ``transformer_kva`` (when set) as
    every transformer's rating, so the power flow measures loading against the same
    transformer the market's caps come from."""
    net = load_network(spec.network)
    if spec.transformer_kva is not None:
        net.trafo["sn_mva"] = spec.transformer_kva / 1000
    return net


@dataclass(frozen=True)
class Edge:
    """The edge from ``bus`` up to ``parent``: its kind, element index and cap."""

    bus: int
    parent: int
    kind: str
    """``"line"``, ``"trafo"`` or ``"switch"``."""
    element: int
    cap_wh: int | None
    fee_per_wh: int


@dataclass(frozen=True)
class Feeder:
    """A network as the market's tree: the root bus, every other bus's edge up, the agents'
    buses. :meth:`grid` gives the document of one interval."""

    network: str
    root_bus: int
    edges: tuple[Edge, ...]
    """One per non-root bus reachable from the root, in breadth-first order."""
    agent_bus: Mapping[str, int]
    load_buses: tuple[int, ...]

    @cached_property
    def _document_nodes(self) -> list[dict[str, Any]]:
        nodes: list[dict[str, Any]] = [
            {
                "id": node_id(self.root_bus),
                "parent": None,
                "export_cap_wh": None,
                "import_cap_wh": None,
                "fee_per_wh": 0,
            }
        ]
        for e in self.edges:
            nodes.append(
                {
                    "id": node_id(e.bus),
                    "parent": node_id(e.parent),
                    "export_cap_wh": e.cap_wh,
                    "import_cap_wh": e.cap_wh,
                    "fee_per_wh": e.fee_per_wh,
                }
            )
        return nodes

    @cached_property
    def _checked_grid(self) -> Grid:
        return check_grid(
            {"version": GRID_VERSION, "interval": 0, "nodes": self._document_nodes},
            interval=0,
            source=f"feeder {self.network}",
        )

    def grid(self, interval: int) -> Grid:
        """The grid document of on-chain interval ``interval``, checked by the market's
        own rules (:func:`market.grid.check_grid`) once: the nodes are the same in every
        interval, so later intervals get :meth:`market.grid.Grid.for_interval` of it."""
        return self._checked_grid.for_interval(interval)

    def node_of(self, agent: str) -> str:
        """The node id of ``agent``'s bus."""
        return node_id(self.agent_bus[agent])

    @property
    def transformer_edges(self) -> tuple[Edge, ...]:
        """The edges that are transformers."""
        return tuple(e for e in self.edges if e.kind == "trafo")


def line_rating_mva(vn_kv: float, max_i_ka: float, parallel: int) -> float:
    """Apparent power a line carries at its current limit: ``sqrt(3) · V · I · parallel``."""
    return math.sqrt(3) * vn_kv * max_i_ka * parallel


def cap_wh(rating_mva: float, margin: float, interval_seconds: int) -> int:
    """Energy an edge may carry in one interval: the rating less the margin over the
    interval, rounded down to whole Wh (the market never gets more than the edge carries)."""
    return math.floor(rating_mva * 1e6 * (1 - margin) * interval_seconds / 3600)


def derive_feeder(
    net: Any, spec: GridSpec, agents: Sequence[str], *, seed: int, interval_seconds: int
) -> Feeder:
    """The tree, caps, fees and placement of ``net`` under the scenario's ``[grid]``."""
    root = int(net.ext_grid.bus.iloc[0])
    vn_kv = net.bus.vn_kv
    adjacency: dict[int, list[tuple[int, str, int, float | None, int]]] = {}

    def link(a: int, b: int, kind: str, element: int, rating: float | None, fee: int) -> None:
        adjacency.setdefault(a, []).append((b, kind, element, rating, fee))
        adjacency.setdefault(b, []).append((a, kind, element, rating, fee))

    for i, row in net.line[net.line.in_service].iterrows():
        rating = line_rating_mva(
            float(vn_kv.at[row.from_bus]), float(row.max_i_ka), int(row.parallel)
        )
        link(int(row.from_bus), int(row.to_bus), "line", int(i), rating, spec.line_fee_per_wh)
    for i, row in net.trafo[net.trafo.in_service].iterrows():
        sn = spec.transformer_kva / 1000 if spec.transformer_kva is not None else row.sn_mva
        fee = spec.transformer_fee_per_wh
        link(int(row.hv_bus), int(row.lv_bus), "trafo", int(i), float(sn), fee)
    switches = net.switch[(net.switch.et == "b") & net.switch.closed]
    for i, row in switches.iterrows():
        link(int(row.bus), int(row.element), "switch", int(i), None, 0)

    edges: list[Edge] = []
    seen = {root}
    frontier = [root]
    while frontier:
        nxt: list[int] = []
        for bus in frontier:
            for other, kind, element, edge_mva, fee in sorted(adjacency.get(bus, [])):
                if other in seen:
                    if not any(
                        e.bus == bus
                        and e.parent == other
                        and (e.kind, e.element) == (kind, element)
                        for e in edges
                    ):
                        raise SimulationError(
                            f"network {spec.network}: {kind} {element} closes a loop at bus "
                            f"{other}; the market clears on radial feeders only"
                        )
                    continue
                seen.add(other)
                cap = None if edge_mva is None else cap_wh(edge_mva, spec.margin, interval_seconds)
                edges.append(Edge(other, bus, kind, element, cap, fee))
                nxt.append(other)
        frontier = nxt
    load_buses = tuple(sorted(int(b) for b in set(net.load.bus.tolist()) if int(b) in seen))
    if not load_buses:
        load_buses = tuple(sorted(seen - {root}))
    placement = place_agents(agents, spec.buses, load_buses, seed)
    for name, bus in placement.items():
        if bus not in seen:
            raise SimulationError(
                f"agent {name!r} is placed at bus {bus}, which is not connected to the root"
            )
    return Feeder(spec.network, root, tuple(edges), placement, load_buses)


def place_agents(
    agents: Sequence[str], fixed: Mapping[str, int], load_buses: Sequence[int], seed: int
) -> dict[str, int]:
    """Each agent's bus: ``fixed`` ones where named, the rest round robin over the load buses
    in a seeded random order (same seed, same placement)."""
    rng = seeded_rng(seed, "grid-placement")
    order = [int(b) for b in rng.permutation(np.asarray(load_buses, dtype=np.int64))]
    placement: dict[str, int] = {}
    n = 0
    for name in agents:
        if name in fixed:
            placement[name] = fixed[name]
        else:
            placement[name] = order[n % len(order)]
            n += 1
    return placement


def build_feeder(
    spec: GridSpec, agents: Sequence[str], *, seed: int, interval_seconds: int
) -> Feeder:
    """:func:`derive_feeder` on a freshly loaded :func:`scenario_network`."""
    return derive_feeder(
        scenario_network(spec), spec, agents, seed=seed, interval_seconds=interval_seconds
    )


__all__ = [
    "NETWORKS",
    "NETWORK_SEED",
    "Edge",
    "Feeder",
    "build_feeder",
    "cap_wh",
    "derive_feeder",
    "line_rating_mva",
    "load_network",
    "node_id",
    "place_agents",
    "scenario_network",
]
