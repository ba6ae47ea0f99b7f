"""A sweep on 2 Dask workers against the same sweep on 1: does it scale with the cores?

``scenarios/neighbourhood.toml`` (73 agents), 24 intervals, swept over
``simulation.mechanism = uniform, pay-as-bid`` and ``simulation.k = 0/1, 1/1`` with 2 fixed
seeds (the scenario's and the next): 8 runs, as ``wattledger sweep`` runs them (the plan,
:func:`deploy.sweep_dask.run_tasks` on a local Dask cluster, each run's folder written as it
comes back), once on a cluster of 1 worker process and once on 2, one after the other in
this process. Target: 2 workers at least 1.7x the speed of 1, in runs per second of the
runs themselves (from the first task submitted to the last result back, the workers
started and their imports done: what a longer sweep's pace is). The time end to end
(cluster start and the workers' imports included, a fixed few seconds) is printed too.
Both sweeps must give the same ``sweep.csv`` bytes.

Run it alone: a 2-core machine with another CPU-heavy process on it cannot show 2 cores'
worth of speed. Prints the machine's load before and after, and the machine's own ceiling
measured in the same run: a pure-Python loop in 8 tasks on 2 processes against 1 (what two
cores give two CPU-bound processes here, with no Dask and no wattledger).

Usage: ``python bench/sweep.py [--ledger memory|embedded] [--intervals 24]``. The last
line is the one to quote.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.sweep_dask import Engine, RunResult, RunTask, SweepStatus, run_tasks
from simulation.scenario_file import read_toml
from simulation.sweep import RunOutcome, SweepPlan, parse_param, plan_sweep, sweep_csv_text

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "neighbourhood.toml"
PARAMS = ("simulation.mechanism=uniform,pay-as-bid", "simulation.k=0/1,1/1")
SEEDS = 2
TARGET = 1.7


def load() -> str:
    """The machine's load averages over 1, 5 and 15 minutes."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


@dataclass
class Measured:
    workers: int
    runs_seconds: float
    total_seconds: float
    csv: str
    failed: int
    run_seconds: float
    """Mean wall time of one run inside its worker."""


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def ceiling(processes: int, tasks: int = 8, n: int = 6_000_000) -> float:
    """Seconds for ``tasks`` pure-Python loops on ``processes`` processes."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_spin, [1000] * processes)  # started
        started = time.perf_counter()
        pool.map(_spin, [n] * tasks, chunksize=1)
        return time.perf_counter() - started


def plan(intervals: int, ledger: str) -> SweepPlan:
    return plan_sweep(
        read_toml(SCENARIO.read_text(encoding="utf-8"), source=str(SCENARIO)),
        [parse_param(p) for p in PARAMS],
        seeds=SEEDS,
        intervals=intervals,
        ledger=ledger,
        source="scenarios/neighbourhood.toml",
    )


def sweep(p: SweepPlan, workers: int) -> Measured:
    tasks = [
        RunTask(r.run, r.values, r.seed, p.tables[r.run], p.source, p.intervals, p.ledger)
        for r in p.runs
    ]
    outcomes: dict[str, RunOutcome] = {}
    last: list[SweepStatus] = []
    seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="wattledger-bench-sweep-") as out:

        def on_result(result: RunResult, status: SweepStatus) -> None:
            folder = Path(out) / result.run
            folder.mkdir()
            for name, data in result.files.items():
                (folder / name).write_bytes(data)
            summary = result.files.get("summary.json")
            outcomes[result.run] = (
                RunOutcome(summary=json.loads(summary))
                if result.ok and summary is not None
                else RunOutcome(error=result.error)
            )
            last[:] = [status]
            seconds.append(result.seconds)

        started = time.perf_counter()
        run_tasks(tasks, Engine(workers=workers), on_result=on_result)
        total = time.perf_counter() - started
    failed = sum(1 for o in outcomes.values() if o.summary is None)
    return Measured(
        workers,
        last[0].elapsed_seconds,
        total,
        sweep_csv_text(p, outcomes),
        failed,
        sum(seconds) / len(seconds),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ledger", choices=("memory", "embedded"), default="embedded")
    parser.add_argument("--intervals", type=int, default=24)
    args = parser.parse_args()
    p = plan(args.intervals, args.ledger)
    print(
        f"sweep: {len(p.runs)} runs of {p.scenario}, {p.intervals} intervals, {p.ledger} "
        f"ledger ({', '.join(PARAMS)}; seeds {', '.join(map(str, p.seeds))}); load {load()}"
    )
    one_loop, two_loops = ceiling(1), ceiling(2)
    machine = one_loop / two_loops
    print(
        f"  the machine: a pure-Python loop in 8 tasks on 2 processes {machine:.2f}x the speed "
        f"of 1 ({two_loops:.1f} s against {one_loop:.1f} s); load {load()}",
        flush=True,
    )
    results = []
    for workers in (1, 2):
        m = sweep(p, workers)
        results.append(m)
        print(
            f"  {workers} worker(s): runs {m.runs_seconds:6.1f} s "
            f"({len(p.runs) / m.runs_seconds:.2f} runs/s), end to end {m.total_seconds:6.1f} s "
            f"(cluster start and imports included); a run {m.run_seconds:.1f} s in its worker; "
            f"{m.failed} failed; load {load()}",
            flush=True,
        )
    one, two = results
    speedup = one.runs_seconds / two.runs_seconds
    end_to_end = one.total_seconds / two.total_seconds
    same = one.csv == two.csv
    print(f"  sweep.csv of 1 and 2 workers: {'the same bytes' if same else 'DIFFERENT'}")
    ok = same and not one.failed and not two.failed and speedup >= TARGET
    print(
        f"sweep of {len(p.runs)} runs x {p.intervals} intervals ({p.ledger} ledger) on 2 Dask "
        f"workers: {speedup:.2f}x the speed of 1 worker (target >= {TARGET}x; runs "
        f"{two.runs_seconds:.1f} s against {one.runs_seconds:.1f} s; end to end "
        f"{two.total_seconds:.1f} s against {one.total_seconds:.1f} s, {end_to_end:.2f}x; the "
        f"machine's ceiling {machine:.2f}x; load {load()})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
