"""Fault tests: a real anvil and a real settlement process, killed and cut off mid-flight.

* ``wattledger settle --watch --port`` is SIGKILLed while a batch of readings is in flight
  (sent, not yet mined), restarted, then SIGKILLed again while a settle chunk is in flight
  and restarted: every reading reaches the chain once, every trade settles exactly once, no
  transaction of the service reverts, and every balance equals the settlement model's.
* anvil is stopped in the middle of chunked settlement and restarted from the state it
  dumped: the service notices, waits, resumes and ends with the model's balances.
* ``wattledger serve`` (market and settlement in one process) takes a burst of 1,000
  readings for one 1,000-trade interval: all are accepted, put on-chain in gas-sized batches
  and settled.

Blocks are mined every second (``evm_setIntervalMining``) while the service works, so that
transactions are really in flight when the process is killed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_ledger_support import commit_backed
from test_settlement_service_support import Population, model_after, populate_anvil, ring_trades

from chain.anvil import free_port, start_anvil, stop_anvil
from chain.client import LedgerClient
from chain.connection import Chain, anvil_dev_accounts, connect
from chain.deployment import read_deployment, write_deployment
from deploy.deployment import deploy_system
from ledger.eip712 import Domain
from ledger.records import Reading, Trade
from market.client import OrderSigner
from settlement.chain_reader import ChainReader

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
WATTLEDGER = [sys.executable, "-m", "deploy.cli"]
SETTLER = anvil_dev_accounts()[-1].address
DEPOSIT = 10**24


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - the child process owns it
    return subprocess.Popen([*WATTLEDGER, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    def up() -> bool:
        assert process.poll() is None, "the process exited early"
        try:
            return httpx.get(url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("the API", up, timeout)


def sigkill(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Scene:
    """An anvil with a deployed market, a population and one committed interval."""

    tmp: Path
    rpc_url: str
    chain: Chain
    ledger: LedgerClient
    population: Population
    t: int
    trades: list[Trade]
    readings: dict[str, Reading]

    def rpc(self, method: str, *params: Any) -> Any:
        return self.chain.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]

    def interval_mining(self, seconds: int) -> None:
        self.rpc("evm_setAutomine", False)
        self.rpc("evm_setIntervalMining", seconds)

    def automine(self) -> None:
        self.rpc("evm_setIntervalMining", 0)
        self.rpc("evm_setAutomine", True)

    def to(self, timestamp: int) -> None:
        now = self.chain.timestamp()
        if now < timestamp:
            self.chain.advance_time(timestamp - now)

    @property
    def sellers(self) -> list[str]:
        """The interval's sellers: only their readings go on-chain (the others are kept
        off-chain by the settlement service)."""
        return sorted({tr.seller for tr in self.trades})

    def on_chain_readings(self) -> list[str]:
        event = self.ledger.contract.events.ReadingSubmitted
        logs = event.get_logs(from_block=0, argument_filters={"interval": self.t})
        return [str(e["args"]["participant"]) for e in logs]

    def settled_indices(self) -> list[int]:
        event = self.ledger.contract.events.TradeSettled
        logs = event.get_logs(from_block=0, argument_filters={"interval": self.t})
        return sorted(int(e["args"]["tradeIndex"]) for e in logs)

    def settler_in_flight(self) -> bool:
        w3 = self.chain.w3
        return bool(
            w3.eth.get_transaction_count(SETTLER, "pending")
            > w3.eth.get_transaction_count(SETTLER, "latest")
        )

    def settler_transactions(self) -> list[tuple[int, int, int]]:
        """(status, gas limit, gas used) of every transaction the settlement account mined."""
        w3 = self.chain.w3
        found = []
        for number in range(w3.eth.block_number + 1):
            block = w3.eth.get_block(number, full_transactions=True)
            for entry in block["transactions"]:
                tx: Any = entry
                if tx["from"] == SETTLER:
                    receipt = w3.eth.get_transaction_receipt(tx["hash"])
                    found.append((int(receipt["status"]), int(tx["gas"]), int(receipt["gasUsed"])))
        return found

    def settler_statuses(self) -> list[int]:
        """Status of every transaction the settlement account got mined."""
        return [status for status, _, _ in self.settler_transactions()]

    def bodies(self) -> list[dict[str, Any]]:
        domain = Domain(self.chain.chain_id, self.ledger.address)
        return [
            OrderSigner(self.population.meters[r.participant], domain).reading(
                r.participant, self.t, r.imported_wh, r.exported_wh
            )
            for r in self.readings.values()
        ]

    def assert_matches_model(self) -> None:
        model = model_after(self.population, self.t, self.trades, self.readings.values())
        reader = ChainReader(self.ledger)  # raw calls: 1,000 balances in a second or two
        for p in self.population.participants:
            expected = model.balance(p)
            assert reader.balance_of(p) == (expected.free, expected.locked), p

    def report(self) -> dict[str, Any]:
        result = subprocess.run(
            [
                *WATTLEDGER,
                "settle",
                "--rpc-url",
                self.rpc_url,
                "--deployments-dir",
                str(self.tmp / "deployments"),
                "--report",
                str(self.t),
                "--json",
            ],
            cwd=REPO,
            capture_output=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        report: dict[str, Any] = json.loads(result.stdout)
        return report


def make_scene(
    tmp: Path, rpc_url: str, n: int, trade_count: int, seed: int, deploy: bool = True
) -> Scene:
    chain = connect(rpc_url)
    if deploy:
        deployment = deploy_system(chain)
        write_deployment(deployment, tmp / "deployments")
    else:
        found = read_deployment(chain.chain_id, tmp / "deployments")
        assert found is not None
        deployment = found
    ledger = LedgerClient.from_deployment(chain, deployment)
    population = populate_anvil(chain, ledger, n, DEPOSIT, seed)
    trades = ring_trades(population.participants, trade_count, seed)
    t = ledger.current_interval() + 1
    commit_backed(ledger, population.keys, t, trades)
    rng = random.Random(seed)
    sold: dict[str, int] = {}
    for tr in trades:
        sold[tr.seller] = sold.get(tr.seller, 0) + tr.quantity_wh
    readings = {}
    for p in population.participants:
        exported = rng.choice([0, sold[p] // 2, sold[p] - 1, sold[p] * 2]) if p in sold else 0
        readings[p] = Reading(p, t, rng.randint(0, 3_000), exported)
    return Scene(tmp, rpc_url, chain, ledger, population, t, trades, readings)


def settle_args(scene: Scene, port: int, *extra: str) -> list[str]:
    return [
        "settle",
        "--watch",
        "--rpc-url",
        scene.rpc_url,
        "--db",
        str(scene.tmp / "settlement.db"),
        "--deployments-dir",
        str(scene.tmp / "deployments"),
        "--port",
        str(port),
        "--poll-seconds",
        "0.2",
        "--receipt-timeout",
        "5",
        *extra,
    ]


def test_sigkill_mid_submission_and_mid_settlement_settles_every_trade_exactly_once(
    tmp_path: Path,
) -> None:
    process, rpc_url = start_anvil()
    settle: subprocess.Popen[bytes] | None = None
    try:
        scene = make_scene(tmp_path, rpc_url, n=12, trade_count=30, seed=7)
        _, end = scene.ledger.interval_window(scene.t)
        scene.to(end)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        args = settle_args(scene, port, "--max-batch-readings", "2", "--max-settle-trades", "3")
        settle = spawn(args, tmp_path / "settle.log")
        wait_healthy(url, settle)
        scene.interval_mining(1)
        for body in scene.bodies():
            response = httpx.post(url + "/meter-readings", json=body, timeout=10)
            assert response.status_code == 202, response.text
        # Kill while a batch is in flight, after at least one batch landed (the six sellers'
        # readings go in three batches of two; the six buyers' stay off-chain).
        wait_for(
            "a batch on-chain and one in flight",
            lambda: len(scene.on_chain_readings()) >= 2 and scene.settler_in_flight(),
        )
        sigkill(settle)
        assert len(scene.on_chain_readings()) < len(scene.sellers) == 6
        settle = spawn(args, tmp_path / "settle.log")
        wait_for(
            "the sellers' readings on-chain",
            lambda: len(scene.on_chain_readings()) == len(scene.sellers),
            90,
        )
        deadline = scene.ledger.interval_info(scene.t).deadline
        scene.to(deadline)
        # Kill while a settle chunk is in flight, after at least two chunks.
        wait_for(
            "two chunks settled and one in flight",
            lambda: scene.ledger.interval_info(scene.t).cursor >= 6 and scene.settler_in_flight(),
        )
        sigkill(settle)
        assert scene.ledger.interval_info(scene.t).status == "committed"
        settle = spawn(args, tmp_path / "settle.log")
        wait_healthy(url, settle)
        wait_for(
            "the interval settled",
            lambda: scene.ledger.interval_info(scene.t).status == "settled",
            90,
        )
        scene.automine()
        assert sorted(scene.on_chain_readings()) == scene.sellers
        assert scene.settled_indices() == list(range(30))  # each trade exactly once
        statuses = scene.settler_statuses()
        assert statuses and all(s == 1 for s in statuses)  # nothing repeated, no gas wasted
        scene.assert_matches_model()
        report = scene.report()
        assert report["ok"] and report["status"] == "settled", report["checks"]
        view = httpx.get(f"{url}/intervals/{scene.t}/settlement", timeout=30).json()
        assert view["service"]["state"] == "settled"
        counts = view["service"]["readings"]
        assert (counts["onchain"], counts["offchain"]) == (6, 6)
    finally:
        if settle is not None:
            stop(settle)
        stop_anvil(process)


def test_anvil_restarted_from_its_dumped_state_mid_settlement_finishes_the_same(
    tmp_path: Path,
) -> None:
    port = free_port()
    state = tmp_path / "anvil-state.json"
    anvil, rpc_url = start_anvil(port, ["--dump-state", str(state)])
    settle: subprocess.Popen[bytes] | None = None
    try:
        scene = make_scene(tmp_path, rpc_url, n=12, trade_count=30, seed=11)
        _, end = scene.ledger.interval_window(scene.t)
        scene.to(end)
        api_port = free_port()
        url = f"http://127.0.0.1:{api_port}"
        args = settle_args(scene, api_port, "--max-settle-trades", "3")
        log = tmp_path / "settle.log"
        settle = spawn(args, log)
        wait_healthy(url, settle)
        for body in scene.bodies():
            assert httpx.post(url + "/meter-readings", json=body, timeout=10).status_code == 202
        wait_for(
            "the sellers' readings on-chain",
            lambda: len(scene.on_chain_readings()) == len(scene.sellers),
        )
        scene.interval_mining(1)
        scene.to(scene.ledger.interval_info(scene.t).deadline)
        wait_for("three chunks settled", lambda: scene.ledger.interval_info(scene.t).cursor >= 9)
        last = scene.chain.w3.eth.get_block("latest")["timestamp"]
        stop_anvil(anvil)  # SIGTERM: anvil writes its state and exits
        assert state.is_file()
        time.sleep(3)  # the service finds the node gone and waits for it
        assert settle.poll() is None
        anvil, _ = start_anvil(port, ["--load-state", str(state), "--dump-state", str(state)])
        # anvil does not keep its test-time offset across a dump (a real chain's clock never
        # goes back): put the clock where the chain had it.
        scene.chain = connect(rpc_url)
        scene.ledger = LedgerClient(scene.chain, scene.ledger.address, scene.ledger.sender)
        scene.rpc("evm_setTime", last + 1)
        wait_for(
            "the interval settled",
            lambda: scene.ledger.interval_info(scene.t).status == "settled",
            90,
        )
        assert scene.settled_indices() == list(range(30))
        statuses = scene.settler_statuses()
        assert statuses and all(s == 1 for s in statuses)
        scene.assert_matches_model()
        assert scene.report()["ok"]
        text = log.read_text()
        assert "the chain is unavailable" in text and "settlement resumed" in text
    finally:
        if settle is not None:
            stop(settle)
        stop_anvil(anvil)


def test_burst_of_1000_readings_through_serve_is_accepted_and_settled(tmp_path: Path) -> None:
    process, rpc_url = start_anvil()
    serve: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serve = spawn(
            [
                "serve",
                "--rpc-url",
                rpc_url,
                "--db",
                str(tmp_path / "market.db"),
                "--deployments-dir",
                str(tmp_path / "deployments"),
                "--port",
                str(port),
                "--settle-poll-seconds",
                "0.5",
            ],
            tmp_path / "serve.log",
        )
        wait_healthy(url, serve)
        scene = make_scene(tmp_path, rpc_url, n=1_000, trade_count=1_000, seed=3, deploy=False)
        _, end = scene.ledger.interval_window(scene.t)
        scene.to(end)
        bodies = scene.bodies()
        started = time.monotonic()
        local = threading.local()

        def post(body: dict[str, Any]) -> int:
            if not hasattr(local, "http"):
                local.http = httpx.Client(base_url=url, timeout=30)
            return int(local.http.post("/meter-readings", json=body).status_code)

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(post, bodies))
        intake = time.monotonic() - started
        assert codes == [202] * 1_000
        wait_for(
            "the 500 sellers' readings on-chain",
            lambda: len(scene.on_chain_readings()) == len(scene.sellers) == 500,
            120,
        )
        on_chain = time.monotonic() - started
        scene.to(scene.ledger.interval_info(scene.t).deadline)
        wait_for(
            "the interval settled",
            lambda: scene.ledger.interval_info(scene.t).status == "settled",
            120,
        )
        settled = time.monotonic() - started
        report = httpx.get(f"{url}/intervals/{scene.t}/settlement", timeout=120).json()
        assert report["ok"], [c for c in report["checks"] if not c["ok"]]
        assert report["totals"]["settledTrades"] == 1_000 and report["totals"]["readings"] == 500
        service = report["service"]
        assert service["readings"]["onchain"] == 500 and service["state"] == "settled"
        assert service["readings"]["offchain"] == 500  # the buyers': kept, published
        budget = scene.chain.w3.eth.get_block("latest")["gasLimit"] // 2
        txs = scene.settler_transactions()
        assert len(txs) == service["readingTransactions"] + service["settleTransactions"]
        assert all(status == 1 and limit <= budget for status, limit, _ in txs)
        assert service["readingTransactions"] >= 1
        assert scene.settled_indices() == list(range(1_000))
        scene.assert_matches_model()
        print(
            f"\n1,000 readings: accepted in {intake:.1f} s, on-chain after {on_chain:.1f} s "
            f"in {service['readingTransactions']} transactions; settled after {settled:.1f} s "
            f"in {service['settleTransactions']} chunks (time moved by the test)"
        )
    finally:
        if serve is not None:
            stop(serve)
        stop_anvil(process)
