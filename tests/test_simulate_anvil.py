"""``wattledger simulate`` against a real anvil: in-process with ``--rpc-url``, and driving an
already running ``wattledger serve`` with ``--api-url``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sim_offline import run_offline
from test_simulate import TOWN

from chain.anvil import free_port
from deploy.cli import main
from simulation.scenario_file import load_scenario
from simulation.summary import summarize

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
EVERY_CHECK = {
    "energy_conserved": True,
    "tokens_conserved": True,
    "individually_rational": True,
    "committed_intervals_settled": True,
    "deadlines_met": True,
    "all_orders_accepted": True,
    "all_readings_accepted": True,
    "escrow_equals_token_balance": True,
    "ledger_balances_match_settlements": True,
}


def simulate(*args: str) -> tuple[int, str]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["simulate", "--no-progress", *args])
    return code, stdout.getvalue()


def reference(scenario_file: Path, intervals: int) -> dict[str, Any]:
    record, _ = run_offline(load_scenario(scenario_file, intervals=intervals))
    return summarize(record)


@pytest.fixture
def town(tmp_path: Path) -> Path:
    path = tmp_path / "test-town.toml"
    path.write_text(TOWN, encoding="utf-8")
    return path


def test_simulation_on_anvil_settles_everything_and_matches_the_reference(
    anvil_url: str, town: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    code, printed = simulate("--scenario", str(town), "--rpc-url", anvil_url, "--out", str(out))
    assert code == 0, printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chain"].startswith(f"anvil at {anvil_url}")
    assert summary["checks"] == EVERY_CHECK
    assert (
        summary["settlement"]["settled_intervals"] == summary["settlement"]["committed_intervals"]
    )
    expected = reference(town, 8)
    assert summary["market"] == expected["market"]
    assert summary["positions"] == expected["positions"]
    assert summary["data_centers"] == expected["data_centers"]
    assert summary["data_centers"]["deadlines_met"] == summary["data_centers"]["jobs_due_in_run"]


@pytest.fixture
def served_market(anvil_url: str, tmp_path: Path) -> Iterator[str]:
    """``wattledger serve --rpc-url <anvil>`` in its own process, with its settlement service."""
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deploy.cli",
            "serve",
            "--rpc-url",
            anvil_url,
            "--port",
            str(port),
            "--db",
            str(tmp_path / "market.db"),
            "--deployments-dir",
            str(tmp_path / "deployments"),
            "--settle-poll-seconds",
            "0.2",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise AssertionError((tmp_path / "serve.log").read_text())
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(
                    "serve did not come up: " + (tmp_path / "serve.log").read_text()
                )
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_simulation_drives_a_running_serve_through_its_api(
    anvil_url: str, served_market: str, town: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    code, printed = simulate(
        "--scenario",
        str(town),
        "--intervals",
        "6",
        "--api-url",
        served_market,
        "--rpc-url",
        anvil_url,
        "--out",
        str(out),
    )
    assert code == 0, printed
    summary = json.loads((out / "summary.json").read_text())
    assert f"market API {served_market}" in summary["chain"]
    assert summary["checks"] == EVERY_CHECK
    expected = reference(town, 6)
    assert summary["market"] == expected["market"]
    assert summary["positions"] == expected["positions"]
    # The server published every interval the run traded in and settled it on-chain.
    clearing = httpx.get(f"{served_market}/settlement", timeout=10).json()
    settled = [i for i in clearing["intervals"] if i["state"] == "settled"]
    assert len(settled) == summary["settlement"]["committed_intervals"]
