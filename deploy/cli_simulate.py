"""``wattledger simulate``: a local testnet simulation with a report people want to look at."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chain.artifacts import REPO_ROOT
from deploy.cli_args import positive_int
from ledger.errors import InputError

if TYPE_CHECKING:
    from simulation.driver import RunState
    from simulation.record import RunRecord
    from simulation.scenario import Scenario
    from simulation.system import System

DEFAULT_SCENARIO = REPO_ROOT / "scenarios" / "neighbourhood.toml"
DEFAULT_INTERVALS = 48
"""Half a simulated day: midnight to noon, night trading and the morning's solar. A whole day
of the default scenario takes about twice as long (a minute and a half on the embedded
chain); ``--intervals all`` runs it."""

HELP = "simulate prosumers, batteries and data centers trading on a local testnet; write a report"
DESCRIPTION = """\
Run a scenario of simulated participants (PV prosumers, batteries, households, data centers,
VPP aggregators: scenarios/*.toml) through the real system for a number of 15-minute
delivery intervals: every agent has its own participant key, meter key and collateral
deposit; it signs its orders, which go through the market API (a VPP's through
POST /orders:batch); at each gate closure the market clears the interval and commits the
trades on-chain; the agents' meters sign what they measured, the readings go through
POST /meter-readings, and the settlement service settles every interval on-chain after its
reading deadline. A fixed seed in the scenario makes the run reproducible.

Where it runs:
  (default)                the whole system in this process on the embedded eth-tester
                           chain: fresh contracts, the market API app reached through an
                           ASGI client, real clearing, contracts and settlement service;
                           chain time and the market's clock move together
  --rpc-url URL            the same, on anvil (`wattledger node`) or another JSON-RPC chain
  --api-url URL --rpc-url URL
                           drive a `wattledger serve --rpc-url URL` that is already running:
                           gates are closed early with the operator-signed
                           POST /intervals/{t}/close (the operator key must be known: a
                           local anvil's deployer) and chain time is moved with anvil's
                           evm_increaseTime; at most the server's maxAheadIntervals - 2
                           intervals

  --ledger memory          the same agents, order intake rules, clearing and settlement
                           rules (the contract's settlement model) in memory: no chain,
                           no signatures, no HTTP; for studies of many intervals (a year
                           of 200 agents in minutes); --audit needs a chain

Output in --out (default runs/<UTC time>/): report.html (self-contained, readable
offline: clearing price and volume, supply and demand curves, contracted against delivered
energy, penalties, each participant's position and energy mix, data-center load shifting,
the run's checks), summary.json (the same for every run of a seed), orders.csv, trades.csv,
settlements.csv, meters.csv, participants.csv and timing.json (wall time per stage). A run
longer than a day (a week, a year) is added up day by day: its report shows the season
(energy and price per day, a heat map of the price by hour and day, the energy mix per
month), summary.json gains the same under "season", and days.csv replaces the four
per-row CSVs. The headline figures and the report's path are printed at the end. Exit
status 0 when every check of the run holds (energy and token conservation, every committed
interval settled, data-center deadlines met, balances equal to the settlements, and with
--audit the audit of the market), 1 when one fails, 2 for bad input (a scenario file with
an unknown key, a wrong type or an impossible value is refused before anything runs, naming
the key).

Examples:
  wattledger simulate                                   # neighbourhood, midnight to noon
  wattledger simulate --intervals all                   # the whole simulated day
  wattledger simulate --intervals 24 --out runs/night   # the first six hours
  wattledger simulate --scenario scenarios/datacenter-heavy.toml
  wattledger simulate --rpc-url http://127.0.0.1:8545   # on a local anvil
  wattledger simulate --ledger memory --intervals all   # in memory, no chain
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenario",
        metavar="FILE",
        type=Path,
        default=DEFAULT_SCENARIO,
        help="scenario TOML file (default: scenarios/neighbourhood.toml)",
    )
    parser.add_argument(
        "--intervals",
        metavar="N|all",
        type=interval_count,
        help=f"simulate N intervals (default: the scenario's first {DEFAULT_INTERVALS}, from "
        "midnight to noon, under a minute on the embedded chain); `all` runs the "
        "scenario's simulation.intervals (a whole day for the shipped scenarios, about a "
        "minute and a half)",
    )
    parser.add_argument(
        "--rpc-url", metavar="URL", help="JSON-RPC chain to use (default: embedded eth-tester)"
    )
    parser.add_argument(
        "--ledger",
        choices=("embedded", "memory"),
        default="embedded",
        help="embedded (default): the whole system on a chain, the embedded eth-tester one "
        "unless --rpc-url names another; memory: the same agents, clearing, collateral and "
        "settlement rules with the contract's settlement model in memory, no chain, no "
        "signatures and no HTTP, for runs of many intervals (a year in minutes)",
    )
    parser.add_argument(
        "--api-url",
        metavar="URL",
        help="drive an already running `wattledger serve` at URL (needs --rpc-url)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="output folder (default: runs/<UTC time>/ in the current folder)",
    )
    parser.add_argument(
        "--book-interval",
        metavar="T",
        type=int,
        help="interval (0-based) whose supply and demand curves the report draws "
        "(default: the one with the most volume; runs of at most a day)",
    )
    parser.add_argument(
        "--audit",
        action="store_true",
        help="at the end, audit every committed interval as `wattledger audit` does (the "
        "published order sets re-cleared and checked against the chain) and add the "
        "outcome to the run's checks",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (for logs and CI)"
    )
    parser.set_defaults(handler=run)


ALL_INTERVALS = 0
"""``--intervals all``: the scenario's own length."""


def interval_count(text: str) -> int:
    """An ``--intervals`` value: a positive count, or ``all`` (:data:`ALL_INTERVALS`)."""
    if text == "all":
        return ALL_INTERVALS
    return positive_int(text)


def default_out_dir() -> Path:
    """``runs/<UTC time>/`` in the current folder."""
    return Path("runs") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _system(
    scenario: Scenario,
    say: Callable[[str], None],
    *,
    ledger: str,
    rpc_url: str | None,
    api_url: str | None,
    audit: bool,
) -> System:
    from deploy.systems import EmbeddedSystem, RemoteSystem, memory_system

    if scenario.grid is not None and ledger != "memory":
        raise InputError(
            "grid scenarios run with --ledger memory until the contract supports the grid "
            f"(the scenario has a [grid] section: {scenario.grid.network})",
            hint="Add --ledger memory.",
        )
    if ledger == "memory":
        if rpc_url is not None or api_url is not None:
            raise InputError(
                "--ledger memory runs without a chain: it takes neither --rpc-url nor --api-url",
                hint="Drop --ledger memory to run on the chain at --rpc-url.",
            )
        if audit:
            raise InputError(
                "--audit needs a chain: a --ledger memory run commits nothing on-chain and "
                "publishes no signed order sets",
                hint="Drop --audit, or run on the embedded chain (--ledger embedded).",
            )
        say("starting the market in memory (no chain, no signatures)")
        return memory_system(scenario)
    if api_url is not None:
        if rpc_url is None:
            raise InputError(
                "--api-url needs --rpc-url: the simulation registers its participants and "
                "moves chain time on the market's chain.",
                hint="Pass the --rpc-url the server was started with, e.g. "
                "--api-url http://127.0.0.1:8000 --rpc-url http://127.0.0.1:8545.",
            )
        say(f"driving the market at {api_url} on {rpc_url}")
        return RemoteSystem(scenario, api_url=api_url, rpc_url=rpc_url)
    say(f"starting the system on {rpc_url or 'the embedded eth-tester chain'}")
    return EmbeddedSystem(scenario, rpc_url=rpc_url, progress=say)


def run(args: argparse.Namespace) -> int:
    """Load the scenario, run it, write the report and print the headline figures."""
    from simulation.checks import check_record
    from simulation.profiles import intervals_per_day
    from simulation.report.headline import headline_text
    from simulation.scenario_file import load_scenario

    scenario = full = load_scenario(args.scenario)
    if args.intervals is None:
        scenario = full.with_intervals(min(DEFAULT_INTERVALS, full.simulation.intervals))
    elif args.intervals != ALL_INTERVALS:
        scenario = full.with_intervals(args.intervals)
    if args.book_interval is not None and not (
        0 <= args.book_interval < scenario.simulation.intervals
    ):
        raise InputError(
            f"--book-interval {args.book_interval} is outside the run's intervals "
            f"0..{scenario.simulation.intervals - 1}"
        )
    if args.book_interval is not None and scenario.simulation.intervals > intervals_per_day(
        scenario.simulation.interval_seconds
    ):
        raise InputError(
            "--book-interval is for runs of at most a day: a longer run is added up day by "
            "day and keeps the orders of its busiest interval only",
            hint="Drop --book-interval, or run that day alone (--intervals).",
        )
    out = args.out or default_out_dir()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    sim = scenario.simulation
    of_all = (
        f" of its {full.simulation.intervals} (--intervals all for every one)"
        if sim.intervals < full.simulation.intervals
        else ""
    )
    say(
        f"scenario {scenario.name} ({args.scenario}): {scenario.agents.count} agents, "
        f"{sim.intervals} intervals of {sim.interval_seconds} s{of_all}, seed {sim.seed}"
    )
    outcome = simulate_run(
        scenario,
        out,
        ledger=args.ledger,
        rpc_url=args.rpc_url,
        api_url=args.api_url,
        audit=args.audit,
        book_interval=args.book_interval,
        show_progress=not args.no_progress,
        say=say,
    )
    record, audit_lines, timing = outcome.record, outcome.audit_lines, outcome.timing_seconds
    files = outcome.files
    if audit_lines:
        print(audit_lines[-1])
    print(headline_text(record, files["report.html"].resolve()))
    print(f"Run took {timing['total']:.0f} s on {record.chain}; files in {out}")
    return 0 if all(check.ok for check in check_record(record)) else 1


@dataclass(frozen=True)
class SimulateOutcome:
    """What :func:`simulate_run` did: the run's record, the files it wrote (by name), its
    wall time by stage (``timing.json``) and the audit's lines (with ``audit``)."""

    record: RunRecord
    files: dict[str, Path]
    timing_seconds: dict[str, float]
    audit_lines: list[str]


def simulate_run(
    scenario: Scenario,
    out: Path,
    *,
    ledger: str = "embedded",
    rpc_url: str | None = None,
    api_url: str | None = None,
    audit: bool = False,
    book_interval: int | None = None,
    show_progress: bool = False,
    say: Callable[[str], None] = lambda _message: None,
) -> SimulateOutcome:
    """Run ``scenario`` as ``wattledger simulate`` does and write its folder ``out`` (the
    report, ``summary.json``, the CSVs and ``timing.json``); print nothing but ``say``'s
    lines and, with ``show_progress``, the progress bar. ``wattledger sweep`` runs each of
    its runs through here."""
    from deploy.assembly import prefer_fast_keccak
    from simulation.report.files import write_run

    prefer_fast_keccak()
    started = time.perf_counter()
    system = _system(scenario, say, ledger=ledger, rpc_url=rpc_url, api_url=api_url, audit=audit)
    try:
        record, audit_lines = _run_with_progress(scenario, system, show=show_progress, audit=audit)
        write_started = time.perf_counter()
        files = write_run(record, out, book_interval=book_interval)
        timing = dict(record.timing_seconds)
        timing["report"] = time.perf_counter() - write_started
        timing["total"] = time.perf_counter() - started
        (out / "timing.json").write_text(
            json.dumps({k: round(v, 3) for k, v in timing.items()}, indent=2) + "\n",
            encoding="utf-8",
        )
        files["timing.json"] = out / "timing.json"
    finally:
        system.close()
    return SimulateOutcome(record, files, timing, audit_lines)


def _run_with_progress(
    scenario: Scenario, system: System, *, show: bool, audit: bool
) -> tuple[Any, list[str]]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from simulation.driver import run_simulation

    final: list[RunState] = []

    def keep(state: RunState) -> None:
        final[:] = [state]

    if not show:
        record = run_simulation(scenario, system, on_progress=keep, audit=audit)
        return record, final[0].audit if final else []
    progress = Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("intervals"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    task = progress.add_task(
        "setting up", total=scenario.simulation.intervals, status="", start=True
    )

    def update(state: RunState) -> None:
        keep(state)
        status = (
            f"{state.orders:,} orders  {state.trades:,} trades  "
            f"settled {state.settled}/{state.committed} committed"
        )
        if state.rejected or state.readings_refused:
            status += f"  refused: {state.rejected} orders, {state.readings_refused} readings"
        progress.update(
            task, completed=state.intervals_done, description=state.phase, status=status
        )

    with progress:
        record = run_simulation(scenario, system, on_progress=update, audit=audit)
    return record, final[0].audit if final else []
