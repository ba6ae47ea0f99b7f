"""A sweep's runs on Dask (``dask.distributed``): a local cluster of processes or any running one.

:func:`run_tasks` submits one task per run and reports each result as it arrives, with the
counts a progress display needs (done, failed, running, time left). Where the runs go:

* by default a :class:`~distributed.LocalCluster` on this machine: ``workers`` worker
  processes (one per core unless told), one thread each, the scheduler on 127.0.0.1 on a
  free port, no dashboard;
* with ``scheduler`` (``tcp://host:port``) the workers of a Dask cluster that is already
  running, unchanged. Their Python must have wattledger (the same version) installed:
  a task is :func:`run_one`, which they import.

Each task is :func:`run_one`: it checks the run's scenario tables, runs them as
``wattledger simulate`` does (:func:`deploy.cli_simulate.simulate_run`, with its own memory
ledger or its own embedded chain in the worker's process) into a temporary folder, and
sends the folder's files back as bytes, so no two runs share a port or a file and the
cluster needs no file system in common with the client. A run that raises comes back as a
failed result with its error; it never stops the sweep. Runs in one worker process go one
at a time (a worker started with several threads gets no parallelism from them, and a
warning): a run changes process-wide settings (the garbage collector's thresholds).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import InputError

DEFAULT_CONNECT_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.2
RUN_MODULES = ("deploy.cli_simulate", "deploy.systems", "simulation.driver", "simulation.report")
"""What a run imports: :func:`warm_up` imports it on every worker before the first run."""


@dataclass(frozen=True)
class RunTask:
    """One run as a worker receives it: the checked scenario tables and how to run them."""

    run: str
    values: tuple[tuple[str, str], ...]
    seed: int
    tables: dict[str, Any] = field(repr=False)
    source: str
    intervals: int
    ledger: str

    @property
    def label(self) -> str:
        """``simulation.k=1/2, seed 7``: the run in messages."""
        return ", ".join([*(f"{key}={text}" for key, text in self.values), f"seed {self.seed}"])


@dataclass(frozen=True)
class RunResult:
    """What came back from one run: its folder's files (``summary.json`` among them when it
    finished) or its error (one line; ``error.txt`` in ``files`` holds the traceback)."""

    run: str
    files: dict[str, bytes] = field(repr=False)
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


_ONE_RUN_AT_A_TIME = threading.Lock()


def one_line(error: BaseException) -> str:
    """``Type: message`` on one line (a wattledger error's hint joined with a space)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def run_one(task: RunTask) -> RunResult:
    """Run one run of a sweep in this process (a Dask worker's); never raises."""
    from deploy.cli_simulate import simulate_run
    from simulation.scenario_file import scenario_from_table

    started = time.perf_counter()
    with _ONE_RUN_AT_A_TIME:
        try:
            scenario = scenario_from_table(
                task.tables, source=task.source, intervals=task.intervals
            )
            with tempfile.TemporaryDirectory(prefix="wattledger-sweep-") as scratch:
                outcome = simulate_run(scenario, Path(scratch) / task.run, ledger=task.ledger)
                files = {name: path.read_bytes() for name, path in outcome.files.items()}
        except Exception as error:
            detail = f"{task.run} ({task.label})\n\n{traceback.format_exc()}"
            return RunResult(
                task.run,
                {"error.txt": detail.encode()},
                one_line(error),
                time.perf_counter() - started,
            )
    return RunResult(task.run, files, None, time.perf_counter() - started)


@dataclass(frozen=True)
class SweepStatus:
    """Where a sweep stands: runs finished (``failed`` of them with an error), running now,
    still to do, and the time left at the pace so far (``None`` before the first result)."""

    total: int
    done: int
    failed: int
    running: int
    elapsed_seconds: float

    @property
    def left_seconds(self) -> float | None:
        if not self.done:
            return None
        return self.elapsed_seconds / self.done * (self.total - self.done)


@dataclass(frozen=True)
class Engine:
    """Where the runs go: a local cluster of ``workers`` processes, or ``scheduler``."""

    workers: int | None = None
    scheduler: str | None = None
    connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS

    def describe(self) -> str:
        if self.scheduler is not None:
            return f"the Dask cluster at {self.scheduler}"
        return f"a local Dask cluster of {self.local_workers()} worker processes"

    def local_workers(self) -> int:
        return self.workers or os.cpu_count() or 1


@contextlib.contextmanager
def dask_client(engine: Engine) -> Iterator[Any]:
    """A :class:`distributed.Client` on ``engine``'s cluster; a local one is closed after.

    Raises :class:`InputError` when ``engine.scheduler`` does not answer in time.
    """
    import logging

    from distributed import Client, LocalCluster

    if engine.scheduler is not None:
        try:
            client = Client(
                engine.scheduler,
                timeout=engine.connect_timeout_seconds,
                set_as_default=False,
            )
        except (OSError, TimeoutError, ValueError) as error:
            raise InputError(
                f"--scheduler {engine.scheduler}: no Dask scheduler answered within "
                f"{engine.connect_timeout_seconds:g} s ({one_line(error)})",
                hint="Start one with `dask scheduler` and its workers with `dask worker "
                "ADDRESS --nthreads 1`, or drop --scheduler to run on this machine's cores.",
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    with _workers_ignore_ctrl_c():
        cluster = LocalCluster(
            n_workers=engine.local_workers(),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    try:
        client = Client(cluster, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Start the local workers with Ctrl-C ignored (an ignored signal stays ignored in the
    processes started meanwhile, and Python then installs no handler of its own): Ctrl-C
    in the terminal reaches every process of the group, and the sweep itself then stops
    its cluster, rather than each worker dying with a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_tasks(
    tasks: Sequence[RunTask],
    engine: Engine,
    *,
    on_result: Callable[[RunResult, SweepStatus], None],
    on_status: Callable[[SweepStatus], None] = lambda _status: None,
    on_start: Callable[[str], None] = lambda _message: None,
    run: Callable[[RunTask], RunResult] = run_one,
) -> None:
    """Run every task on ``engine``; call ``on_result`` as each finishes (in the order they
    finish) and ``on_status`` every :data:`POLL_SECONDS` meanwhile.

    A task that raises, or whose worker died, comes back as a failed :class:`RunResult`.
    ``run`` is the task function (:func:`run_one`; it must be importable by the workers).
    """
    if not tasks:
        return
    with dask_client(engine) as client:
        threads = client.nthreads()
        on_start(f"{len(threads)} worker(s) at {client.scheduler.address}")
        _warm(client, engine)
        crowded = sorted(address for address, n in threads.items() if n > 1)
        if crowded:
            on_start(
                f"warning: {len(crowded)} worker(s) have several threads; runs in one worker "
                "process go one at a time (start workers with --nthreads 1, one per core)"
            )
        batch = uuid.uuid4().hex[:8]
        futures = {
            client.submit(run, task, key=f"wattledger-sweep-{batch}-{task.run}", pure=False): task
            for task in tasks
        }
        pending = set(futures)
        started = time.perf_counter()
        done = failed = 0
        while pending:
            finished = [f for f in pending if f.done()]
            for future in finished:
                pending.discard(future)
                result = _result(future, futures[future])
                done += 1
                failed += 0 if result.ok else 1
                status = SweepStatus(
                    len(tasks), done, failed, _running(client, pending), _since(started)
                )
                on_result(result, status)
            if not finished:
                running = _running(client, pending)
                on_status(SweepStatus(len(tasks), done, failed, running, _since(started)))
                time.sleep(POLL_SECONDS)


def warm_up() -> str:
    """Import what a run needs (a few seconds of a worker's first run otherwise); return
    the worker's Python version."""
    import importlib
    import platform

    for module in RUN_MODULES:
        importlib.import_module(module)
    return platform.python_version()


def _warm(client: Any, engine: Engine) -> None:
    """Import the run's modules on every worker at once, before the first run: the time
    left is then the runs' own pace, and a worker without wattledger is found at once."""
    try:
        client.run(warm_up)
    except ImportError as error:
        raise InputError(
            f"the workers of {engine.describe()} cannot import wattledger ({one_line(error)})",
            hint="Install wattledger (this version) into the workers' Python environment.",
        ) from None


def _since(started: float) -> float:
    return time.perf_counter() - started


def _result(future: Any, task: RunTask) -> RunResult:
    if future.status == "finished":
        result = future.result()
        if isinstance(result, RunResult):
            return result
        return RunResult(task.run, {}, f"the task returned {type(result).__name__}")
    if future.status == "error":
        error = future.exception()
        return RunResult(task.run, {"error.txt": _trace(task, error)}, one_line(error))
    return RunResult(task.run, {}, f"the Dask task was {future.status}")


def _trace(task: RunTask, error: BaseException) -> bytes:
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    return f"{task.run} ({task.label})\n\n{''.join(lines)}".encode()


def _running(client: Any, pending: set[Any]) -> int:
    """Runs in progress now: one per worker process that is working on one of ours."""
    if not pending:
        return 0
    keys = {f.key for f in pending}
    try:
        processing = client.processing()
    except Exception:  # a status line is not worth failing the sweep over
        return 0
    return sum(1 for assigned in processing.values() if keys.intersection(assigned))


__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_SECONDS",
    "Engine",
    "RunResult",
    "RunTask",
    "SweepStatus",
    "dask_client",
    "one_line",
    "run_one",
    "run_tasks",
]
