"""Grid scenarios (issue 16, simulation part): the feeder derived from a pandapower network,
a short memory run on it, and the refusals."""

from __future__ import annotations

import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from deploy.systems import memory_system
from market.grid import parse_grid
from simulation.checks import check_record
from simulation.driver import run_simulation
from simulation.errors import SimulationError
from simulation.feeder import derive_feeder, load_network, place_agents
from simulation.record import RunRecord
from simulation.scenario import GridSpec, ScenarioError
from simulation.scenario_file import load_scenario, parse_scenario
from simulation.stopwatch import Stopwatch
from simulation.summary import summarize

ROOT = Path(__file__).resolve().parent.parent
FEEDER = ROOT / "scenarios" / "feeder-grid.toml"


def test_feeder_caps_are_the_ratings_less_the_margin_over_the_interval() -> None:
    net = load_network("kerber_dorfnetz")
    spec = GridSpec("kerber_dorfnetz", margin=0.1, transformer_fee_per_wh=7, line_fee_per_wh=2)
    feeder = derive_feeder(net, spec, ["a", "b"], seed=1, interval_seconds=900)
    assert feeder.root_bus == int(net.ext_grid.bus.iloc[0])
    assert len(feeder.edges) == len(net.bus) - 1  # a tree over every bus
    (trafo,) = feeder.transformer_edges
    assert trafo.parent == feeder.root_bus and trafo.fee_per_wh == 7
    assert trafo.cap_wh == math.floor(0.4e6 * 0.9 / 4)  # 400 kVA, 10 % withheld, 15 min
    line = next(e for e in feeder.edges if e.kind == "line")
    row = net.line.loc[line.element]
    rating_w = math.sqrt(3) * 0.4 * row.max_i_ka * 1e6
    assert line.cap_wh == math.floor(rating_w * 0.9 / 4) and line.fee_per_wh == 2
    assert {line.bus, line.parent} == {int(row.from_bus), int(row.to_bus)}


def test_feeder_grid_is_a_document_the_market_accepts() -> None:
    spec = GridSpec("kerber_landnetz_kabel_1", transformer_kva=50)
    net = load_network(spec.network)
    feeder = derive_feeder(net, spec, ["a"], seed=1, interval_seconds=900)
    grid = feeder.grid(42)
    again = parse_grid(grid.canonical_bytes, interval=42)
    assert again.grid_root == grid.grid_root and len(again) == len(net.bus)
    assert again.nodes[again.index["bus-1"]].export_cap_wh == math.floor(50_000 * 0.9 / 4)


def test_network_cables_are_the_same_in_every_load_and_leave_random_alone() -> None:
    # The Kerber generators draw cable types from the global random module: unseeded, the
    # caps (one copy) and the power flow (another) would be two different villages.
    random.seed(3)
    expected = random.random()
    random.seed(3)
    first = load_network("kerber_dorfnetz")
    again = load_network("kerber_dorfnetz")
    assert first.line.std_type.tolist() == again.line.std_type.tolist()
    assert first.line.max_i_ka.tolist() == again.line.max_i_ka.tolist()
    assert first.line.std_type.nunique() > 1  # the draw happened, and was the same
    assert random.random() == expected


def test_placement_is_seeded_and_fills_every_load_bus_before_doubling() -> None:
    agents = [f"a{i}" for i in range(7)]
    first = place_agents(agents, {"a3": 0}, [5, 6, 7], seed=9)
    assert first == place_agents(agents, {"a3": 0}, [5, 6, 7], seed=9)
    assert first["a3"] == 0
    spread = [first[a] for a in agents if a != "a3"]
    assert sorted(spread[:3]) == [5, 6, 7] and sorted(spread[3:]) == [5, 6, 7]


@pytest.mark.parametrize(
    ("grid", "key"),
    [
        ('network = "nope"', "grid.network"),
        ('network = "kerber_dorfnetz"\nmargin = 1', "grid.margin"),
        ('network = "kerber_dorfnetz"\n[grid.buses]\nnobody = 3', "grid.buses.nobody"),
        ('network = "kerber_dorfnetz"\n[grid.buses]\nhome = 999', "grid.buses.home"),
        ('network = "kerber_dorfnetz"\nline_fee_per_kwh = "-1"', "grid.line_fee_per_kwh"),
    ],
)
def test_bad_grid_section_is_refused_naming_the_key(grid: str, key: str) -> None:
    text = (
        "[simulation]\nseed = 1\nintervals = 4\n"
        '[[agents.household]]\nname = "home"\nload_kwh_per_year = 3000\n'
        f"[grid]\n{grid}\n"
    )
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text)
    assert key in str(caught.value)


def test_shipped_scenarios_without_grid_stay_one_node() -> None:
    for path in sorted((ROOT / "scenarios").glob("*.toml")):
        if path.name != "feeder-grid.toml":
            assert load_scenario(path).grid is None, path.name


def test_grid_scenario_is_refused_where_the_contract_cannot_settle_it() -> None:
    scenario = load_scenario(FEEDER).with_intervals(2)
    system = SimpleNamespace(
        supports_grid=False, stopwatch=Stopwatch(), label="eth-tester", timing=None
    )
    with pytest.raises(SimulationError, match="--ledger memory until the contract supports"):
        run_simulation(scenario, system)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def morning() -> RunRecord:
    """Midnight to 13:00 on the feeder: the transformer binds from late morning."""
    scenario = load_scenario(FEEDER).with_intervals(52)
    return run_simulation(scenario, memory_system(scenario))


def test_tight_transformer_separates_prices_and_holds_loading(morning: RunRecord) -> None:
    grid = morning.grid
    assert grid is not None
    assert all(c.ok for c in check_record(morning)), [c for c in check_record(morning) if not c.ok]
    root, busbar = grid.nodes.index("bus-0"), grid.nodes.index("bus-1")
    bound = [r for r in grid.intervals if "bus-1" in r.at_cap]
    assert bound, "the transformer never reached its cap"
    for r in bound:
        up, down = r.node_prices[root], r.node_prices[busbar]
        assert up is not None and down is not None
        assert up - down > 10_000_000_000_000  # more than the transformer's fee
    assert grid.congestion_rent_base_units > 0
    flows = [r.flow for r in grid.intervals]
    assert all(f.converged for f in flows)
    # curtailment keeps every subtree's export within its cap; imports stay far below
    assert max(f.max_trafo_loading_centipct or 0 for f in flows) <= 100_00
    assert max(f.max_line_loading_centipct or 0 for f in flows) <= 100_00
    assert not any(f.overloaded_lines for f in flows)


def test_grid_operator_revenue_is_what_buyers_paid_beyond_sellers(morning: RunRecord) -> None:
    settled = sum(s.grid_base_units for s in morning.settlements)
    by_pair = {(t.buy_order_id, t.sell_order_id): t for t in morning.trades}
    expected = 0
    for s in morning.settlements:
        trade = by_pair[s.buy_order_id, s.sell_order_id]
        assert trade.sell_price_per_wh is not None
        expected += s.delivered_wh * (trade.price_per_wh - trade.sell_price_per_wh)
    assert settled == expected > 0
    summary = summarize(morning)["grid"]
    assert summary["grid_revenue_settled_base_units"] == str(settled)
    assert summary["congestion_events"] and len(summary["intervals"]) == 52
