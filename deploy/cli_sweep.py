"""``wattledger sweep``: one scenario under many settings and seeds, on Dask, one comparison."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.cli_args import positive_int
from deploy.cli_simulate import ALL_INTERVALS, interval_count
from ledger.errors import InputError

if TYPE_CHECKING:
    from deploy.sweep_dask import Engine, RunResult, RunTask, SweepStatus
    from simulation.sweep import RunOutcome, SweepPlan

DEFAULT_INTERVALS = 48
"""As ``wattledger simulate``: the scenario's first 48 intervals (midnight to noon)."""

HELP = "run a scenario under a grid of settings and seeds on Dask; compare the runs"
DESCRIPTION = """\
Run one scenario for every combination of the swept values (--param, each a key of the
scenario file as a dotted TOML path) times every seed (--seeds), each run as
`wattledger simulate` runs it, with its own embedded chain (or, with --ledger memory, its
own memory ledger), in its own Dask worker process; then compare the runs.

Every key and value is checked before anything runs: an unknown key, a value of the
wrong type or out of range, or a combination the scenario refuses (a job's deadline past
the run) is refused naming the key (exit 2). Values are TOML values (10, 0.5, true,
"DE", [1, 2]) or plain words (uniform, pay-as-bid, 1/2). Keys are the scenario's own:
simulation.mechanism, simulation.k, market.penalty_price_per_kwh, weather.mean_clearness,
agents.pv[0].count (the first [[agents.pv]] table), agents.battery[0].capacity_kwh...

Where the runs go:
  (default)                a local Dask cluster: one worker process per core (--workers N
                           for N), one run at a time each, on 127.0.0.1
  --scheduler ADDRESS      the workers of a running Dask cluster (tcp://host:port),
                           unchanged; they need wattledger installed. Start one with
                             dask scheduler --host HOST --port 8786
                             dask worker tcp://HOST:8786 --nworkers N --nthreads 1
                           (each run's files come back to this machine; nothing is shared)

Progress shows the runs done, failed and running, and the time left. A failed run is
reported with its parameters and error and the sweep goes on; --resume DIR re-runs only
what is missing or failed.

Output in --out (default sweeps/<UTC time>/):
  sweep.csv    one row per run in a fixed order (the grid's, the first --param varying
               slowest, then the seeds): run, the swept values, seed, status, checks and
               the headline figures of its summary.json (exact integers: Wh, token base
               units, base units per Wh), and the error of a failed run; no wall-clock
               time, so the same sweep gives the same bytes with any number of workers
  sweep.json   the plan (what --resume needs) and each run's status, figures and checks
  sweep.html   self-contained, offline: each headline figure against each swept
               parameter, the mean over seeds with the spread from lowest to highest seed,
               and every run in a table
  scenario.toml  the scenario the sweep ran
  runs/RUN/    each run's own folder, as `wattledger simulate --out` writes it (report.html,
               summary.json, the CSVs, timing.json), plus run.json; error.txt for a failure

Exit status 0 when every run finished and every run's checks hold, 1 otherwise, 2 for bad
input.

Examples:
  wattledger sweep scenarios/neighbourhood.toml --param simulation.k=0/1,1/2,1/1 \\
      --param simulation.mechanism=uniform,pay-as-bid --seeds 5 --intervals 96 \\
      --ledger memory
  wattledger sweep scenarios/neighbourhood.toml --param agents.pv[0].count=6,12,24 \\
      --param weather.mean_clearness=0.4,0.8 --seeds 3 --workers 2 --out sweeps/pv
  wattledger sweep scenarios/neighbourhood.toml --param simulation.k=0/1,1/1 \\
      --scheduler tcp://10.0.0.5:8786
  wattledger sweep --resume sweeps/pv
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``sweep`` subcommand."""
    parser = subparsers.add_parser(
        "sweep",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "scenario",
        metavar="SCENARIO",
        type=Path,
        nargs="?",
        help="scenario TOML file (scenarios/*.toml); not with --resume, which reads the "
        "sweep's own copy",
    )
    parser.add_argument(
        "--param",
        metavar="KEY=V1,V2,...",
        action="append",
        default=[],
        help="a scenario key (dotted TOML path, e.g. simulation.k or agents.pv[0].count) "
        "and the values to sweep it over, comma-separated; repeat for more keys (the grid "
        "is every combination)",
    )
    parser.add_argument(
        "--seeds",
        metavar="N",
        type=positive_int,
        help="run each combination with N seeds: the scenario's simulation.seed and the "
        "N-1 after it (default: 1)",
    )
    parser.add_argument(
        "--intervals",
        metavar="N|all",
        type=interval_count,
        help=f"simulate N intervals per run (default: the scenario's first "
        f"{DEFAULT_INTERVALS}, as `wattledger simulate`); `all` runs the scenario's "
        "simulation.intervals",
    )
    parser.add_argument(
        "--ledger",
        choices=("memory", "embedded"),
        help="embedded (default, as `wattledger simulate`): each run deploys its own "
        "contracts on its own embedded eth-tester chain in its worker process; memory: the "
        "same agents, intake, clearing and settlement rules with the contract's settlement "
        "model and no chain (`simulate --ledger memory`), for sweeps of many or long runs "
        "(a 24-interval run of the neighbourhood: about 9 s embedded, under 1 s in memory)",
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        type=positive_int,
        help="worker processes of the local Dask cluster (default: one per core); not "
        "with --scheduler",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on the Dask cluster whose scheduler is at ADDRESS (tcp://host:port) "
        "instead of a local one",
    )
    parser.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        type=float,
        default=10.0,
        help="how long to wait for --scheduler to answer (default: 10)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="output folder (default: sweeps/<UTC time>/ in the current folder); must not "
        "hold a sweep already",
    )
    parser.add_argument(
        "--resume",
        metavar="DIR",
        type=Path,
        help="finish the sweep in DIR: re-run only its runs that are missing or failed, "
        "with the plan its sweep.json and scenario.toml hold",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="a line per finished run instead of a progress bar (for logs and CI)",
    )
    parser.set_defaults(handler=run)


def default_out_dir() -> Path:
    """``sweeps/<UTC time>/`` in the current folder."""
    return Path("sweeps") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


# --------------------------------------------------------------------------- planning


def _engine(args: argparse.Namespace) -> Engine:
    from deploy.sweep_dask import Engine

    if args.workers is not None and args.scheduler is not None:
        raise InputError(
            "--workers and --scheduler do not go together: --workers sizes the local "
            "cluster, --scheduler uses a running cluster's workers as they are",
            hint="Drop one of them.",
        )
    if args.connect_timeout <= 0:
        raise InputError(f"--connect-timeout {args.connect_timeout:g}: must be above 0")
    return Engine(args.workers, args.scheduler, args.connect_timeout)


def _new_plan(args: argparse.Namespace) -> tuple[SweepPlan, Path, str]:
    from simulation.scenario import ScenarioError
    from simulation.scenario_file import read_toml, scenario_from_table
    from simulation.sweep import parse_param, plan_sweep

    if args.scenario is None:
        raise InputError(
            "name the SCENARIO file to sweep (or --resume DIR to finish a sweep)",
            hint="For example: wattledger sweep scenarios/neighbourhood.toml "
            "--param simulation.k=0/1,1/2,1/1",
        )
    source = str(args.scenario)
    try:
        text = args.scenario.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError("no such scenario file", source=source) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"cannot read the scenario file: {error}", source=source) from None
    tables = read_toml(text, source=source)
    params = [parse_param(p) for p in args.param]
    full = scenario_from_table(tables, source=source).simulation.intervals
    if args.intervals is None:
        intervals = min(DEFAULT_INTERVALS, full)
    else:
        intervals = full if args.intervals == ALL_INTERVALS else args.intervals
    plan = plan_sweep(
        tables,
        params,
        seeds=args.seeds or 1,
        intervals=intervals,
        ledger=args.ledger or "embedded",
        source=source,
    )
    out = args.out or default_out_dir()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if (out / "sweep.json").exists():
        raise InputError(
            f"--out {out} holds a sweep already",
            hint=f"Finish it with --resume {out}, or choose another --out.",
        )
    return plan, out, text


def _resumed_plan(args: argparse.Namespace) -> tuple[SweepPlan, Path, str]:
    from simulation.scenario_file import read_toml
    from simulation.sweep import plan_sweep, resume_arguments

    out: Path = args.resume
    given = [
        flag
        for flag, value in (
            ("SCENARIO", args.scenario),
            ("--param", args.param or None),
            ("--seeds", args.seeds),
            ("--intervals", args.intervals),
            ("--ledger", args.ledger),
        )
        if value is not None
    ]
    if given:
        raise InputError(
            f"--resume takes the sweep's plan from {out / 'sweep.json'}; drop " + ", ".join(given),
            hint="Only --workers, --scheduler, --connect-timeout and --no-progress go "
            "with --resume.",
        )
    if args.out is not None and args.out != out:
        raise InputError(f"--resume {out} writes into {out}; drop --out {args.out}")
    try:
        document = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
        text = (out / "scenario.toml").read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise InputError(
            f"--resume {out}: no sweep there ({Path(error.filename or '').name} is missing)",
            hint="Name the --out folder of an earlier `wattledger sweep`.",
        ) from None
    except (OSError, ValueError) as error:
        raise InputError(f"--resume {out}: cannot read the sweep ({error})") from None
    if not isinstance(document, dict):
        raise InputError(f"--resume {out}: sweep.json does not describe a sweep")
    source = str(document.get("scenario_file", out / "scenario.toml"))
    again = resume_arguments(document)
    plan = plan_sweep(read_toml(text, source=source), source=source, **again)
    return plan, out, text


def _finished(plan: SweepPlan, out: Path) -> dict[str, RunOutcome]:
    """The runs of ``plan`` whose folder in ``out`` holds their ``summary.json``."""
    from simulation.sweep import RunOutcome

    outcomes: dict[str, RunOutcome] = {}
    for run in plan.runs:
        summary = out / "runs" / run.run / "summary.json"
        try:
            outcomes[run.run] = RunOutcome(summary=json.loads(summary.read_text("utf-8")))
        except (OSError, ValueError):
            continue
    return outcomes


# --------------------------------------------------------------------------- writing


def write_results(plan: SweepPlan, outcomes: dict[str, RunOutcome], out: Path) -> None:
    """``sweep.csv``, ``sweep.json`` and ``sweep.html`` of ``outcomes`` so far."""
    from simulation.sweep import sweep_csv_text, sweep_json
    from simulation.sweep_report import render_sweep

    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.csv").write_text(sweep_csv_text(plan, outcomes), encoding="utf-8")
    (out / "sweep.json").write_text(
        json.dumps(sweep_json(plan, outcomes), indent=2) + "\n", encoding="utf-8"
    )
    (out / "sweep.html").write_text(render_sweep(plan, outcomes), encoding="utf-8")


def _write_run_folder(out: Path, task: RunTask, result: RunResult) -> None:
    """The run's files into ``out/runs/RUN`` (written aside, then moved in whole)."""
    folder = out / "runs" / task.run
    partial = out / "runs" / f".{task.run}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, data in result.files.items():
        (partial / Path(name).name).write_bytes(data)
    run_json: dict[str, Any] = {
        "run": task.run,
        "parameters": dict(task.values),
        "seed": task.seed,
    }
    if result.error is not None:
        run_json["error"] = result.error
    (partial / "run.json").write_text(json.dumps(run_json, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


# --------------------------------------------------------------------------- running


def run(args: argparse.Namespace) -> int:
    """Plan the sweep, run what is missing on Dask, write the comparison."""
    return execute(args)


def execute(
    args: argparse.Namespace, *, task_function: Callable[[RunTask], RunResult] | None = None
) -> int:
    """:func:`run` with the task function replaceable (``run_one`` unless given)."""
    from deploy.sweep_dask import RunTask, run_one, run_tasks
    from simulation.sweep import RunOutcome

    engine = _engine(args)
    plan, out, text = _resumed_plan(args) if args.resume is not None else _new_plan(args)
    outcomes = _finished(plan, out) if args.resume is not None else {}
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenario.toml").write_text(text, encoding="utf-8")
    write_results(plan, outcomes, out)
    todo = [r for r in plan.runs if r.run not in outcomes]

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    swept = ", ".join(f"{p.key} ({len(p.texts)})" for p in plan.params) or "no parameter"
    say(
        f"sweep of {plan.scenario} ({plan.source}): {swept} x {max(1, len(plan.seeds))} "
        f"seed(s) = {len(plan.runs)} runs of {plan.intervals} intervals, {plan.ledger} "
        f"ledger; {len(todo)} to run on {engine.describe()}"
    )
    tasks = [
        RunTask(
            r.run, r.values, r.seed, plan.tables[r.run], plan.source, plan.intervals, plan.ledger
        )
        for r in todo
    ]
    tasks_by_run = {t.run: t for t in tasks}
    display = _Display(len(tasks), show=not args.no_progress, say=say)

    def on_result(result: RunResult, status: SweepStatus) -> None:
        task = tasks_by_run[result.run]
        _write_run_folder(out, task, result)
        if result.ok:
            summary = json.loads(result.files["summary.json"])
            outcomes[result.run] = RunOutcome(summary=summary)
        else:
            outcomes[result.run] = RunOutcome(error=result.error)
        display.result(task, result, status)

    try:
        with display:
            run_tasks(
                tasks,
                engine,
                on_result=on_result,
                on_status=display.status,
                on_start=display.note,
                run=task_function or run_one,
            )
    except KeyboardInterrupt:
        done = sum(1 for t in tasks if t.run in outcomes)
        say(
            f"interrupted after {done} of {len(tasks)} runs; finish the sweep with: "
            f"wattledger sweep --resume {out}"
        )
        raise
    finally:  # interrupted too: what finished is in the comparison, --resume does the rest
        write_results(plan, outcomes, out)
    return _report(plan, outcomes, out)


def _report(plan: SweepPlan, outcomes: dict[str, RunOutcome], out: Path) -> int:
    from simulation.sweep import FAILED, OK, failed_checks

    ok = [r for r in plan.runs if outcomes.get(r.run) and outcomes[r.run].status == OK]
    failed = [r for r in plan.runs if outcomes.get(r.run) and outcomes[r.run].status == FAILED]
    unchecked = [r for r in ok if failed_checks(outcomes[r.run].summary or {"checks": {}})]
    print(
        f"{len(plan.runs)} runs: {len(ok)} finished ({len(unchecked)} with a failed check), "
        f"{len(failed)} failed"
    )
    for r in failed:
        print(f"  failed: {r.run} ({r.label()}): {outcomes[r.run].error}")
    for r in unchecked:
        names = ", ".join(failed_checks(outcomes[r.run].summary or {"checks": {}}))
        print(f"  checks failed: {r.run} ({r.label()}): {names}")
    if failed:
        print(f"Re-run what failed with: wattledger sweep --resume {out}")
    print(f"Comparison: {(out / 'sweep.html').resolve()}; sweep.csv and sweep.json in {out}")
    return 0 if len(ok) == len(plan.runs) and not unchecked else 1


class _Display:
    """The sweep's progress: a bar (runs done, failed, running, time left) or one line per
    finished run; a failed run is printed with its parameters and error either way."""

    def __init__(self, total: int, *, show: bool, say: Callable[[str], None]) -> None:
        self.total, self.show, self.say = total, show, say
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> _Display:
        if self.show and self.total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.progress = Progress(
                TextColumn("runs"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                console=Console(stderr=True),
            )
            self.task = self.progress.add_task("runs", total=self.total, status="starting")
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _print(self, message: str) -> None:
        if self.progress is not None:
            self.progress.console.print(message, markup=False, highlight=False)
        else:
            self.say(message)

    def note(self, message: str) -> None:
        self._print(message)

    def status(self, status: SweepStatus) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=status.done, status=_status_text(status))

    def result(self, task: RunTask, result: RunResult, status: SweepStatus) -> None:
        if not result.ok:
            self._print(f"failed: {task.run} ({task.label}): {result.error}")
        if self.progress is not None:
            self.status(status)
            return
        outcome = "done" if result.ok else "FAILED"
        self.say(
            f"[{status.done}/{status.total}] {task.run} {outcome} in {result.seconds:.1f} s "
            f"({task.label}); {_status_text(status)}"
        )


def _status_text(status: SweepStatus) -> str:
    left = status.left_seconds
    eta = "estimating" if left is None else _duration(left)
    return f"{status.failed} failed, {status.running} running, time left {eta}"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
