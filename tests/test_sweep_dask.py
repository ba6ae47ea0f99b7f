"""``wattledger sweep`` on real Dask clusters: a local cluster of 1 and of 2 worker processes,
and a scheduler and a worker started as their own processes (``--scheduler``), all on
127.0.0.1. The same sweep gives the same ``sweep.csv`` bytes on each; a run that fails is
reported and the sweep goes on; ``--resume`` re-runs only what failed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sweep_support import lane_file

from chain.anvil import free_port
from deploy.cli import build_parser, main
from deploy.cli_sweep import execute
from deploy.sweep_dask import Engine, RunResult, RunTask, dask_client, run_one
from ledger.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
PARAMS = (
    *("--param", "simulation.mechanism=uniform,pay-as-bid", "--seeds", "2"),
    *("--intervals", "3", "--ledger", "memory"),
)


def sweep_args(scenario: Path, out: Path, *more: str) -> list[str]:
    return ["sweep", "--no-progress", str(scenario), *PARAMS, "--out", str(out), *more]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lane_file(tmp_path_factory.mktemp("scenario"))


@pytest.fixture(scope="module")
def two_workers(scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("two") / "sweep"
    assert main(sweep_args(scenario, out, "--workers", "2")) == 0
    return out


def test_a_sweep_writes_a_row_and_a_folder_per_run(two_workers: Path) -> None:
    lines = (two_workers / "sweep.csv").read_text().splitlines()
    assert lines[0].startswith("run,simulation.mechanism,seed,status,checks,")
    assert [line.split(",")[:5] for line in lines[1:]] == [
        ["run-0000", "uniform", "77", "ok", "all hold"],
        ["run-0001", "uniform", "78", "ok", "all hold"],
        ["run-0002", "pay-as-bid", "77", "ok", "all hold"],
        ["run-0003", "pay-as-bid", "78", "ok", "all hold"],
    ]
    for run in ("run-0000", "run-0003"):
        folder = two_workers / "runs" / run
        assert {"report.html", "summary.json", "run.json", "trades.csv"} <= {
            p.name for p in folder.iterdir()
        }
    assert (two_workers / "sweep.html").read_text().count("<svg") > 0


def test_one_worker_gives_the_same_sweep_csv_bytes_as_two(
    scenario: Path, two_workers: Path, tmp_path: Path
) -> None:
    out = tmp_path / "one"
    assert main(sweep_args(scenario, out, "--workers", "1")) == 0
    assert (out / "sweep.csv").read_bytes() == (two_workers / "sweep.csv").read_bytes()
    assert (out / "sweep.json").read_bytes() == (two_workers / "sweep.json").read_bytes()


def fail_run_0001(task: RunTask) -> RunResult:
    """The sweep's task, but run-0001 raises in the worker (as a bug would)."""
    if task.run == "run-0001":
        raise RuntimeError("the meter ate the readings")
    return run_one(task)


def test_a_failed_run_is_reported_and_resume_reruns_only_it(
    scenario: Path, two_workers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "flaky"
    args = build_parser().parse_args(sweep_args(scenario, out, "--workers", "1"))
    assert execute(args, task_function=fail_run_0001) == 1
    captured = capsys.readouterr()
    said = "run-0001 (simulation.mechanism=uniform, seed 78): RuntimeError: the meter ate"
    assert f"failed: {said}" in captured.err  # as it happened
    assert f"failed: {said}" in captured.out  # and at the end
    rows = (out / "sweep.csv").read_text().splitlines()
    assert rows[2].startswith("run-0001,uniform,78,failed,,")
    assert rows[2].endswith(",RuntimeError: the meter ate the readings")
    assert all(",ok,all hold," in row for row in rows[1:] if not row.startswith("run-0001"))
    assert "the meter ate" in (out / "runs" / "run-0001" / "error.txt").read_text()
    kept = (out / "runs" / "run-0000" / "summary.json").stat().st_mtime_ns

    assert main(["sweep", "--no-progress", "--resume", str(out), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "1 to run" in err and err.count(" done in ") == 1
    assert (out / "runs" / "run-0000" / "summary.json").stat().st_mtime_ns == kept
    assert not (out / "runs" / "run-0001" / "error.txt").exists()
    assert (out / "sweep.csv").read_bytes() == (two_workers / "sweep.csv").read_bytes()


# --------------------------------------------------------------------------- --scheduler


def _start(*args: str) -> subprocess.Popen[bytes]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=5)


@pytest.fixture
def dask_cluster() -> Iterator[str]:
    """``dask scheduler`` and one ``dask worker`` (one process, one thread) on 127.0.0.1."""
    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rsplit(":", 1)[1]
    scheduler = _start(
        "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"
    )
    worker = None
    try:
        worker = _start(
            "distributed.cli.dask_worker",
            address,
            "--host",
            "127.0.0.1",
            "--nworkers",
            "1",
            "--nthreads",
            "1",
            "--no-dashboard",
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with dask_client(Engine(scheduler=address, connect_timeout_seconds=5)) as client:
                    client.wait_for_workers(1, timeout=max(1, deadline - time.monotonic()))
                break
            except InputError:
                if time.monotonic() > deadline or scheduler.poll() is not None:
                    raise
                time.sleep(0.3)
        yield address
    finally:
        if worker is not None:
            _stop(worker)
        _stop(scheduler)
    assert scheduler.poll() is not None and (worker is None or worker.poll() is not None)


def test_a_sweep_runs_on_a_running_dask_cluster_unchanged(
    scenario: Path,
    two_workers: Path,
    dask_cluster: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "cluster"
    assert main(sweep_args(scenario, out, "--scheduler", dask_cluster)) == 0
    err = capsys.readouterr().err
    assert f"on the Dask cluster at {dask_cluster}" in err
    assert f"1 worker(s) at {dask_cluster}" in err
    assert (out / "sweep.csv").read_bytes() == (two_workers / "sweep.csv").read_bytes()
