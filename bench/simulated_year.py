"""A simulated year in memory, and a feeder of 1,000 homes for a day on anvil.

Two measurements, each against its target, printed with the machine's load (a shared 2-core
machine's speed drifts with what else runs on it, so compare ratios taken in one run, not
seconds across runs):

The year
    ``scenarios/bench-200.toml`` (200 agents, a fixed seed; its fixed deposits, sized for a
    day, multiplied by the days) for 365 days, 35,040 intervals of 15 minutes, with
    ``--ledger memory`` (:mod:`simulation.memory_system`: the same agents, intake rules,
    clearing and the contract's settlement model, no chain, signatures or
    HTTP), as ``wattledger simulate --ledger memory`` runs it. Target: at most 10 minutes of
    wall time. Printed: wall and CPU time, milliseconds per interval, the split over the
    stages, what was done, the run's checks, and the size and time of its report (the year
    folded by day, :mod:`simulation.fold`).

The feeder
    One day (96 intervals) of bench-200 and of bench-200 with every group five times larger
    (1,000 agents, built here from bench-200), each on a fresh anvil, through the whole
    system (signed orders through the market API, contracts, the settlement service), as
    ``wattledger simulate --rpc-url`` runs it. Target: the cost per agent-interval (wall time
    of the trading day over agents x intervals) of 1,000 agents within 1.5x of 200 agents',
    measured in the same run: the system grows linearly with the feeder.

Usage: ``python bench/simulated_year.py [--days 365] [--feeder-intervals 96]
[--parts year,feeder]``. The last lines are the ones to quote.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chain.anvil import running_anvil
from deploy.assembly import prefer_fast_keccak
from deploy.systems import EmbeddedSystem, memory_system
from simulation.checks import check_record
from simulation.driver import RunState, run_simulation
from simulation.record import RunRecord
from simulation.report.files import write_run
from simulation.scenario import Scenario
from simulation.scenario_file import load_scenario
from simulation.summary import summarize

ROOT = Path(__file__).resolve().parent.parent
BENCH_200 = ROOT / "scenarios" / "bench-200.toml"
YEAR_TARGET_SECONDS = 600.0
FEEDER_RATIO_TARGET = 1.5
FEEDER_SCALE = 5
STAGES = ("agents", "api", "clearing", "settlement", "chain")


def load() -> str:
    """The machine's load averages over 1, 5 and 15 minutes."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def scaled(scenario: Scenario, factor: int) -> Scenario:
    """``scenario`` with every agent group ``factor`` times larger (same settings, seed and
    names; a group of one becomes ``name-1`` .. ``name-N``)."""
    agents = scenario.agents
    grow = {
        kind: tuple(replace(spec, count=spec.count * factor) for spec in getattr(agents, kind))
        for kind in ("pv", "battery", "household", "data_center", "vpp")
    }
    return replace(
        scenario,
        name=f"{scenario.name}-x{factor}",
        agents=replace(agents, **grow),
    )


def deposits_for(scenario: Scenario, days: int) -> Scenario:
    """``scenario`` with every deposit the file fixes multiplied by ``days``.

    bench-200 fixes the deposits of its batteries, data centers and VPPs for one day (the
    others are sized by the run's length); over a year a data center pays for more energy
    than 1,000 tokens, intake then refuses its orders for want of collateral (as the
    contract would), and the run's check that every order was accepted fails.
    """
    agents = scenario.agents
    more = {
        kind: tuple(
            spec
            if spec.collateral_base_units is None
            else replace(spec, collateral_base_units=spec.collateral_base_units * days)
            for spec in getattr(agents, kind)
        )
        for kind in ("pv", "battery", "household", "data_center", "vpp")
    }
    return replace(scenario, agents=replace(agents, **more))


# --------------------------------------------------------------------------- the year


@dataclass
class Year:
    record: RunRecord
    wall_seconds: float
    cpu_seconds: float
    load_before: str
    load_after: str
    report_seconds: float
    report_bytes: int
    summary_bytes: int


def year(days: int) -> Year:
    scenario = deposits_for(load_scenario(BENCH_200, intervals=96 * days), days)
    system = memory_system(scenario)
    before = load()
    started, cpu = time.perf_counter(), time.process_time()
    marks = {96 * d for d in range(30, days, 30)}

    def progress(state: RunState) -> None:
        if state.intervals_done in marks:
            marks.discard(state.intervals_done)
            elapsed = time.perf_counter() - started
            print(
                f"  day {state.intervals_done // 96:3d}: {elapsed:6.1f} s, "
                f"{1000 * elapsed / state.intervals_done:.1f} ms per interval, load {load()}",
                file=sys.stderr,
                flush=True,
            )

    record = run_simulation(scenario, system, on_progress=progress)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    after = load()
    with tempfile.TemporaryDirectory(prefix="wattledger-year-") as out:
        begin = time.perf_counter()
        files = write_run(record, out)
        report_seconds = time.perf_counter() - begin
        sizes = (files["report.html"].stat().st_size, files["summary.json"].stat().st_size)
    return Year(record, wall, cpu, before, after, report_seconds, *sizes)


def report_year(y: Year) -> None:
    record, timing = y.record, y.record.timing_seconds
    loop = sum(timing.get(s, 0.0) for s in STAGES) or 1.0
    summary = summarize(record)
    failed = [c.name for c in check_record(record) if not c.ok]
    market, settled = summary["market"], summary["settlement"]
    print(f"year in memory ({record.intervals:,} intervals x {len(record.participants)} agents):")
    print(
        f"  {y.wall_seconds:7.1f} s wall ({y.wall_seconds / YEAR_TARGET_SECONDS:.2f}x the "
        f"{YEAR_TARGET_SECONDS:.0f} s target), {y.cpu_seconds:.1f} s CPU, "
        f"{1000 * y.wall_seconds / record.intervals:.1f} ms per interval; load "
        f"{y.load_before} before, {y.load_after} after"
    )
    print(
        "  stages: "
        + "  ".join(f"{s} {100 * timing.get(s, 0.0) / loop:4.1f} %" for s in STAGES if s != "chain")
    )
    print(
        f"  done: {market['orders']:,} orders, {market['trades']:,} trades, "
        f"{settled['settled_intervals']:,}/{settled['committed_intervals']:,} intervals settled; "
        "checks: " + ("all hold" if not failed else "FAILED " + ", ".join(failed))
    )
    print(
        f"  report: {y.report_bytes / 1e6:.2f} MB report.html, {y.summary_bytes / 1e6:.2f} MB "
        f"summary.json, written in {y.report_seconds:.1f} s"
    )


# --------------------------------------------------------------------------- the feeder


@dataclass
class Day:
    agents: int
    intervals: int
    wall_seconds: float
    setup_seconds: float
    record: RunRecord

    @property
    def per_agent_interval_ms(self) -> float:
        return 1000 * self.wall_seconds / (self.agents * self.intervals)


def feeder_day(scenario: Scenario) -> Day:
    with running_anvil() as url:
        begin = time.perf_counter()
        system = EmbeddedSystem(scenario, rpc_url=url)
        deployed = time.perf_counter() - begin
        try:
            started = time.perf_counter()
            record = run_simulation(scenario, system)
            total = time.perf_counter() - started
        finally:
            system.close()
    setup = record.timing_seconds.get("setup", 0.0)
    return Day(
        len(record.participants),
        record.intervals,
        total - setup,
        deployed + setup,
        record,
    )


def report_day(day: Day) -> None:
    failed = [c.name for c in check_record(day.record) if not c.ok]
    market = summarize(day.record)["market"]
    print(
        f"  {day.agents:5d} agents: day {day.wall_seconds:6.1f} s "
        f"({day.per_agent_interval_ms:.2f} ms per agent-interval), set-up "
        f"{day.setup_seconds:.1f} s (not counted); {market['orders']:,} orders, "
        f"{market['trades']:,} trades; checks: "
        + ("all hold" if not failed else "FAILED " + ", ".join(failed))
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--feeder-intervals", type=int, default=96)
    parser.add_argument("--parts", default="year,feeder")
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts <= {"year", "feeder"}:
        parser.error("--parts takes year and/or feeder")
    prefer_fast_keccak()
    ok = True
    quotes: list[str] = []  # the year's line first; the feeder runs first (it may fail fast)
    if "feeder" in parts:
        base = load_scenario(BENCH_200, intervals=args.feeder_intervals)
        print(f"feeder on anvil, {args.feeder_intervals} intervals (load {load()}):")
        small = feeder_day(base)
        report_day(small)
        large = feeder_day(scaled(base, FEEDER_SCALE))
        report_day(large)
        ratio = large.per_agent_interval_ms / small.per_agent_interval_ms
        ok = ok and all(c.ok for r in (small, large) for c in check_record(r.record))
        ok = ok and ratio <= FEEDER_RATIO_TARGET
        quotes.append(
            f"feeder day on anvil: {large.agents:,} agents {large.wall_seconds:.0f} s, "
            f"{small.agents} agents {small.wall_seconds:.0f} s: cost per agent-interval "
            f"{ratio:.2f}x (target <= {FEEDER_RATIO_TARGET}x; load {load()})"
        )
    if "year" in parts:
        y = year(args.days)
        report_year(y)
        ok = ok and all(c.ok for c in check_record(y.record))
        quotes.insert(
            0,
            f"simulated year: {args.days} days x {len(y.record.participants)} agents "
            f"({y.record.intervals:,} intervals) in memory in {y.wall_seconds:.0f} s (target "
            f"{YEAR_TARGET_SECONDS:.0f} s; {1000 * y.wall_seconds / y.record.intervals:.1f} ms "
            f"per interval, {y.cpu_seconds:.0f} s CPU; load {y.load_before} before, "
            f"{y.load_after} after)",
        )
    for line in quotes:
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
