"""A simulated day on a feeder with and without its grid, in memory: the grid's cost.

Runs ``scenarios/feeder-grid.toml`` (grid-aware clearing on the Kerber Dorfnetz, two-price
settlement, a pandapower power flow of every meter after each interval) and
``scenarios/feeder-village.toml`` (the same agents and seed on one node, no fees) with
``--ledger memory``, alternately, ``--repeats`` times each, and prints the median wall time
of each trading day (set-up, which loads pandapower and the network, shown apart), the
grid run's stages, and the ratio grid / no grid (target <= 1.5x): the median of the ratios
of each back-to-back pair, so that a slow moment of the machine weighs on both sides of one
ratio. A day takes about 0.3 s, so single pairs are noisy (1.2x to 1.7x seen on a 2-core
machine); seven pairs by default. Fixed seeds; both runs must pass every check. The last
line is the one to quote.

Usage: ``python bench/grid_day.py [--intervals 96] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.systems import memory_system
from simulation.checks import check_record
from simulation.driver import run_simulation
from simulation.scenario_file import load_scenario

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.5


def _day(path: Path, intervals: int) -> tuple[float, float, dict[str, float]]:
    scenario = load_scenario(path).with_intervals(intervals)
    system = memory_system(scenario)
    started = time.perf_counter()
    record = run_simulation(scenario, system)
    total = time.perf_counter() - started
    failed = [c.name for c in check_record(record) if not c.ok]
    if failed:
        raise SystemExit(f"{path.name}: checks failed: {failed}")
    timing = dict(record.timing_seconds)
    setup = timing.get("setup", 0.0)
    return total - setup, setup, timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    grid_path = ROOT / "scenarios" / "feeder-grid.toml"
    plain_path = ROOT / "scenarios" / "feeder-village.toml"
    _day(grid_path, 4)  # warm imports (pandapower, numpy kernels) outside the timing
    grid_days: list[float] = []
    plain_days: list[float] = []
    stages: dict[str, float] = {}
    setups: list[float] = []
    for _ in range(args.repeats):
        day, setup, timing = _day(grid_path, args.intervals)
        grid_days.append(day)
        setups.append(setup)
        stages = timing
        day, _setup, _timing = _day(plain_path, args.intervals)
        plain_days.append(day)
    grid_s, plain_s = statistics.median(grid_days), statistics.median(plain_days)
    print(
        f"set-up with the grid (pandapower, network, placement): "
        f"{statistics.median(setups):.2f} s (not in the day)"
    )
    shown = ("agents", "clearing", "power_flow", "settlement", "api")
    print("grid day stages: " + ", ".join(f"{k} {stages.get(k, 0.0):.2f} s" for k in shown))
    per_flow_ms = stages.get("power_flow", 0.0) / args.intervals * 1000
    print(f"power flow per interval: {per_flow_ms:.1f} ms")
    ratios = sorted(g / p for g, p in zip(grid_days, plain_days, strict=True))
    ratio = statistics.median(ratios)
    verdict = "within" if ratio <= TARGET else "above"
    print(
        f"feeder day ({args.intervals} intervals, memory, {args.repeats} pairs): grid "
        f"{grid_s:.2f} s, no grid {plain_s:.2f} s, ratio {ratio:.2f}x (pairs "
        f"{ratios[0]:.2f}x to {ratios[-1]:.2f}x; {verdict} the {TARGET}x target)"
    )


if __name__ == "__main__":
    main()
