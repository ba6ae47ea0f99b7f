"""``wattledger audit`` against a market on a real anvil node, served over real HTTP.

The market runs as in production: contracts on anvil, the API served by uvicorn on a free
port, orders placed through it, gate closure committing on-chain, readings and settlement on
the contract. The command then audits it over JSON-RPC and HTTP, archives the published sets,
and fails (exit 1) on a tampered archive or refuses (exit 2) bad input in one paragraph.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from test_audit_support import AuditChain, Session, run_plan, simple_plan

from chain.anvil import free_port
from chain.connection import connect
from chain.deployment import write_deployment
from deploy.cli import main

pytestmark = pytest.mark.anvil


class Served:
    """A market run on anvil with its API listening on 127.0.0.1."""

    def __init__(self, base: AuditChain, session: Session, committed: list[int]) -> None:
        self.base = base
        self.session = session
        self.committed = committed
        self.rpc_url = str(base.chain.rpc_url)
        self.market = str(base.market)
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(session.app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.session.close()


@pytest.fixture(scope="module")
def served(anvil_url: str) -> Iterator[Served]:
    chain = connect(anvil_url)
    before = chain.snapshot()
    base = AuditChain(chain)
    session = base.session()
    committed = run_plan(session, simple_plan(2))
    assert len(committed) == 2
    running = Served(base, session, committed)
    try:
        yield running
    finally:
        running.stop()
        chain.revert(before)


def wattledger(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["audit", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_audit_of_a_running_market_passes_and_archives_what_it_audited(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    t0, t1 = served.committed
    archive = tmp_path / "archive"
    code, out, err = wattledger(
        capsys,
        "--rpc-url", served.rpc_url, "--market", served.market, "--api", served.api_url,
        "--save-orders", str(archive),
    )  # fmt: skip
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == f"interval {t0}  PASS  2 trades, 3,000 Wh @ 0.25/kWh, settled"
    assert lines[1] == f"interval {t1}  PASS  2 trades, 3,000 Wh @ 0.25/kWh, settled"
    assert lines[2].startswith("market  PASS  code: the EnergyMarket build")
    assert lines[3].startswith(f"PASS: audited 2 committed intervals of {served.market}")
    assert f"checking interval {t1} (2/2)" in err  # progress goes to stderr
    assert {p.name for p in archive.iterdir()} == {"market.json", f"{t0}.json", f"{t1}.json"}

    code, out, _ = wattledger(
        capsys, "--rpc-url", served.rpc_url, "--market", served.market, "--orders", str(archive)
    )
    assert code == 0
    assert out.splitlines()[:2] == lines[:2]


def test_json_report_and_the_market_from_the_deployment_record(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write_deployment(served.base.deployment, tmp_path)
    code, out, _ = wattledger(
        capsys,
        "--rpc-url", served.rpc_url, "--api", served.api_url, "--deployments-dir", str(tmp_path),
        "--json", "--from", str(served.committed[1]),
    )  # fmt: skip
    assert code == 0
    report = json.loads(out)
    assert report["ok"] is True and report["market"] == served.market
    assert [r["interval"] for r in report["intervals"]] == [served.committed[1]]
    assert report["intervals"][0]["pricesPerWh"] == ["250000000000000"]
    assert report["mechanism"] == {
        "name": "uniform",
        "k": [1, 2],
        "source": f"the market API at {served.api_url} (GET /market)",
    }
    assert report["summary"] == {"intervals": 1, "passed": 1, "failed": 0, "violations": 0}


@pytest.fixture
def tampered_archive(served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """An archive of the run in which the second interval's set lost a traded ask."""
    archive = tmp_path / "archive"
    wattledger(
        capsys,
        "--rpc-url", served.rpc_url, "--market", served.market, "--api", served.api_url,
        "--save-orders", str(archive),
    )  # fmt: skip
    path = archive / f"{served.committed[1]}.json"
    body = json.loads(path.read_text())
    body["orders"] = [o for o in body["orders"] if not (o["order"]["side"] == 1 and o["filledWh"])]
    path.write_text(json.dumps(body))
    return archive


def test_a_tampered_archive_fails_with_exit_1_naming_interval_and_check(
    served: Served, tampered_archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t0, t1 = served.committed
    args = [
        "--rpc-url",
        served.rpc_url,
        "--market",
        served.market,
        "--orders",
        str(tampered_archive),
    ]
    code, out, _ = wattledger(capsys, *args)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"interval {t0}  PASS")
    assert lines[1].startswith(f"interval {t1}  FAIL  book_root: root of the 2 published orders")
    assert "reclear: trade count expected 0 found 2" in lines[1]
    assert lines[-1].startswith("FAIL: audited 2 committed intervals")

    code, out, _ = wattledger(capsys, *args, "--json")
    assert code == 1
    failing = json.loads(out)["intervals"][1]
    assert failing["interval"] == t1 and failing["ok"] is False
    assert failing["failedChecks"] == ["book_root", "reclear", "properties"]


def test_the_console_command_exits_1_on_violations(served: Served, tampered_archive: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "audit", "--rpc-url", served.rpc_url,
         "--market", served.market, "--orders", str(tampered_archive)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert f"interval {served.committed[1]}  FAIL  book_root:" in run.stdout


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("token as market", "does not answer as an EnergyMarket"),
        ("no contract", "There is no contract at"),
        ("not an address", "is not a 0x address"),
        ("api down", "Cannot reach the market API at"),
        ("no folder", "does not exist or is not a folder"),
        ("malformed file", "Cannot read"),
        ("rpc down", "Cannot reach a chain at"),
        ("no record", "no deployment record for chain"),
        ("save without api", "--save-orders archives what --api publishes"),
        ("from after to", "--from 5 is after --to 4"),
    ],
)
def test_bad_input_exits_2_with_one_paragraph(
    served: Served,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    case: str,
    expected: str,
) -> None:
    rpc, market, api = served.rpc_url, served.market, served.api_url
    dead = f"http://127.0.0.1:{free_port()}"
    token = served.base.deployment.address("WattToken")
    bad_folder = tmp_path / "bad"
    bad_folder.mkdir()
    (bad_folder / f"{served.committed[0]}.json").write_text("{ not json")
    args: dict[str, list[str]] = {
        "token as market": ["--rpc-url", rpc, "--market", token, "--api", api],
        "no contract": ["--rpc-url", rpc, "--market", "0x" + "12" * 20, "--api", api],
        "not an address": ["--rpc-url", rpc, "--market", "0x1234", "--api", api],
        "api down": ["--rpc-url", rpc, "--market", market, "--api", dead],
        "no folder": ["--rpc-url", rpc, "--market", market, "--orders", str(tmp_path / "none")],
        "malformed file": ["--rpc-url", rpc, "--market", market, "--orders", str(bad_folder)],
        "rpc down": ["--rpc-url", dead, "--market", market, "--api", api],
        "no record": ["--rpc-url", rpc, "--api", api, "--deployments-dir", str(tmp_path)],
        "save without api": ["--rpc-url", rpc, "--orders", str(tmp_path), "--save-orders", "x"],
        "from after to": ["--rpc-url", rpc, "--api", api, "--from", "5", "--to", "4"],
    }  # fmt: skip
    code, out, err = wattledger(capsys, *args[case])
    assert code == 2, out + err
    assert expected in err
    assert "Traceback" not in err and out == ""
    assert len([line for line in err.splitlines() if line.startswith("wattledger:")]) == 1


def test_help_names_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    from audit.checks.violations import INTERVAL_CHECKS, MARKET_CHECKS

    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    words = set(capsys.readouterr().out.split())
    assert set(INTERVAL_CHECKS) | set(MARKET_CHECKS) <= words


def test_the_audit_reads_only_the_public_record(served: Served) -> None:
    """Nothing in the audit needs a key: a fresh Web3 with no accounts reproduces the result."""
    from web3 import Web3

    from audit.run import audit_market

    w3 = Web3(Web3.HTTPProvider(served.rpc_url))
    report = audit_market(w3, served.market, served.api_url)
    assert report.ok, report.lines()
    assert [r.interval for r in report.intervals] == served.committed
