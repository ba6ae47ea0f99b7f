"""``wattledger simulate --ledger memory``: the same run as on the chain, without the chain.

The memory mode (:mod:`simulation.memory_system`) keeps the agents, the intake rules,
clearing and the contract's settlement model and skips signatures, HTTP and the chain; a whole
day of the small town must give the summary the embedded chain gives for the same seed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_simulate import town_file

from deploy.assembly import prefer_fast_keccak
from deploy.systems import EmbeddedSystem, memory_system
from simulation.driver import run_simulation
from simulation.memory_system import MEMORY_LABEL
from simulation.record import RunRecord
from simulation.scenario_file import load_scenario
from simulation.summary import summarize

CHAIN_ONLY = ("chain",)
"""Summary fields that name the ledger: everything else must be equal. (Gas, blocks and
transactions are not in the summary: they exist only on a chain.)"""


@pytest.fixture(scope="module")
def day_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunRecord, RunRecord]:
    """A whole day (96 intervals) of the small town, on eth-tester and in memory."""
    prefer_fast_keccak()
    directory = tmp_path_factory.mktemp("town-day")
    scenario = load_scenario(town_file(directory), intervals=96)
    chain_system = EmbeddedSystem(scenario)
    try:
        on_chain = run_simulation(scenario, chain_system)
    finally:
        chain_system.close()
    in_memory = run_simulation(scenario, memory_system(scenario))
    return on_chain, in_memory


@pytest.mark.slow
def test_a_day_in_memory_has_the_summary_of_the_same_day_on_the_chain(
    day_runs: tuple[RunRecord, RunRecord],
) -> None:
    on_chain, in_memory = day_runs
    chain_summary, memory_summary = summarize(on_chain), summarize(in_memory)
    assert memory_summary["chain"] == MEMORY_LABEL
    for key in CHAIN_ONLY:
        chain_summary.pop(key), memory_summary.pop(key)
    # the day is not trivial: trades, shortfalls with penalties, and every check holds
    assert chain_summary["market"]["trades"] > 50
    assert int(chain_summary["settlement"]["penalties_base_units"]) > 0
    assert all(chain_summary["checks"].values()), chain_summary["checks"]
    assert json.dumps(memory_summary, sort_keys=True) == json.dumps(chain_summary, sort_keys=True)


@pytest.mark.slow
def test_a_day_in_memory_trades_and_settles_trade_for_trade_as_on_the_chain(
    day_runs: tuple[RunRecord, RunRecord],
) -> None:
    """Beyond the totals: the same trades in the same order at the same prices, and the same
    outcome for each (order ids differ: EIP-712 hashes on the chain, sequence numbers here)."""
    on_chain, in_memory = day_runs

    def trades(record: RunRecord) -> list[tuple[Any, ...]]:
        return [
            (t.interval, t.buyer, t.seller, t.quantity_wh, t.price_per_wh) for t in record.trades
        ]

    def settled(record: RunRecord) -> list[tuple[Any, ...]]:
        return sorted(
            (
                s.interval,
                s.buyer,
                s.seller,
                s.quantity_wh,
                s.delivered_wh,
                s.paid_base_units,
                s.refunded_base_units,
                s.penalty_base_units,
            )
            for s in record.settlements
        )

    assert trades(in_memory) == trades(on_chain)
    assert settled(in_memory) == settled(on_chain)
    assert [r.price_per_wh for r in in_memory.interval_results] == [
        r.price_per_wh for r in on_chain.interval_results
    ]
