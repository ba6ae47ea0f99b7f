"""The feeder's power flow (simulation/power_flow.py) against pandapower's own ``runpp``:
the same integers for the same injections, the fallback, and a feeder that cannot carry
its load."""

from __future__ import annotations

import warnings

import numpy as np
import pandapower as pp
import pytest

import simulation.power_flow as power_flow
from simulation.feeder import derive_feeder, load_network
from simulation.power_flow import FlowResult, PowerFlow
from simulation.scenario import GridSpec

INTERVAL_SECONDS = 900
TO_MW = 3600 / INTERVAL_SECONDS / 1e6


def _flow(network: str, agents: list[str]) -> PowerFlow:
    spec = GridSpec(network, transformer_kva=100)
    net = load_network(network)
    net.trafo["sn_mva"] = 0.1
    feeder = derive_feeder(net, spec, agents, seed=1, interval_seconds=INTERVAL_SECONDS)
    return PowerFlow(net, feeder, INTERVAL_SECONDS)


def _runpp(flow: PowerFlow, metered: dict[str, tuple[int, int]]) -> FlowResult:
    """What a plain pandapower ``runpp`` of the same injections reports, as a FlowResult."""
    net = flow.net
    imports = dict.fromkeys(flow.buses, 0)
    exports = dict.fromkeys(flow.buses, 0)
    for agent, (imported, exported) in metered.items():
        imports[flow._bus_of[agent]] += imported
        exports[flow._bus_of[agent]] += exported
    net.load["p_mw"] = [imports[b] * TO_MW for b in net.load.bus]
    net.sgen["p_mw"] = [exports[b] * TO_MW for b in net.sgen.bus]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(net, numba=False, max_iteration=30)
    except pp.LoadflowNotConverged:
        return FlowResult(False, None, None, None, None, (), None)
    lines = net.res_line.loading_percent.to_numpy()
    vm = net.res_bus.vm_pu.to_numpy()
    return FlowResult(
        True,
        round(float(lines.max()) * 100),
        round(float(net.res_trafo.loading_percent.max()) * 100),
        round(float(vm.min()) * 10_000),
        round(float(vm.max()) * 10_000),
        tuple(int(i) for i in net.res_line.index[lines > 100.0]),
        round(float(net.res_ext_grid.p_mw.sum()) / TO_MW),
    )


@pytest.mark.parametrize(
    "network", ["kerber_dorfnetz", "kerber_landnetz_kabel_1", "cigre_network_lv"]
)
def test_every_interval_is_what_pandapower_computes(network: str) -> None:
    agents = [f"a{i}" for i in range(40)]
    flow = _flow(network, agents)
    rng = np.random.default_rng(7)
    overloaded = solved = 0
    for _ in range(25):
        # Up to 60 kW per home one way or the other: lines above 100 % too.
        imports, exports = rng.uniform(0, 15_000, size=2)
        metered = {a: (int(rng.uniform(0, imports)), int(rng.uniform(0, exports))) for a in agents}
        ours = flow.run(metered)
        assert ours == _runpp(flow, metered)
        solved += ours.converged
        overloaded += bool(ours.overloaded_lines) or (ours.max_trafo_loading_centipct or 0) > 100_00
    assert flow.runs == 25 and solved >= 20
    assert flow.fallbacks == 25 - solved  # the iteration solved every interval that solves
    assert overloaded > 0  # the draw reached the limits, where a wrong loading would show


def test_pandapower_solves_an_interval_the_iteration_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agents = [f"a{i}" for i in range(20)]
    flow = _flow("kerber_landnetz_kabel_1", agents)
    metered = {a: (2000 + 37 * i, 500) for i, a in enumerate(agents)}
    monkeypatch.setattr(power_flow, "MAX_ITERATIONS", 1)
    ours = flow.run(metered)
    assert flow.fallbacks == 1 and ours.converged
    assert ours == _runpp(flow, metered)


def test_a_feeder_that_cannot_carry_its_load_is_not_converged() -> None:
    agents = [f"a{i}" for i in range(20)]
    flow = _flow("kerber_landnetz_kabel_1", agents)
    collapse = flow.run({a: (10_000_000, 0) for a in agents})  # 40 MW per home
    assert collapse == FlowResult(False, None, None, None, None, (), None)
    assert flow.fallbacks == 1
    recovered = flow.run({a: (500, 0) for a in agents})  # and the next interval solves
    assert recovered.converged and flow.fallbacks == 1
