"""Crash test: `wattledger serve` killed with SIGKILL mid-stream keeps exactly what it acked.

A real anvil node and a real `wattledger serve` process; clients send signed orders from
several threads while the server is killed with SIGKILL; after a restart on the same order
store every order answered ``201`` is there, open, with its nonce still used, and no order
that was refused is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from chain.anvil import free_port, running_anvil
from chain.connection import anvil_dev_accounts
from ledger.eip712 import Domain
from market.client import OrderSigner

PRICE = 250_000_000_000_000
REPO = Path(__file__).resolve().parent.parent


def start_serve(rpc_url: str, tmp: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "deploy.cli", "serve",
        "--rpc-url", rpc_url,
        "--db", str(tmp / "market.db"),
        "--deployments-dir", str(tmp / "deployments"),
        "--port", str(port),
        "--fund-dev-accounts",
        # the test streams 400 orders per trader into one interval
        "--max-orders-per-interval", "1000",
    ]  # fmt: skip
    log = open(tmp / f"serve-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "wattledger serve exited early"
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("wattledger serve did not become healthy")


@pytest.mark.anvil
@pytest.mark.slow
def test_orders_acked_201_survive_sigkill_and_nothing_else_appears(tmp_path: Path) -> None:
    traders = anvil_dev_accounts()[1:5]
    with running_anvil() as rpc_url:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_serve(rpc_url, tmp_path, port)
        try:
            wait_healthy(url, server)
            market = httpx.get(url + "/market").json()
            d = market["eip712"]["domain"]
            domain = Domain(d["chainId"], d["verifyingContract"], d["name"], d["version"])
            t = market["currentInterval"] + 3
            signers = [OrderSigner(a, domain) for a in traders]
            bodies = [[s.order(t, i % 2, 10 + i, PRICE + i) for i in range(400)] for s in signers]
            acked: dict[str, dict[str, Any]] = {}
            refused: list[dict[str, Any]] = []
            unanswered: list[dict[str, Any]] = []
            lock = threading.Lock()
            first_acks = threading.Event()

            def send(batch: list[dict[str, Any]]) -> None:
                with httpx.Client(base_url=url, timeout=5) as http:
                    for n, body in enumerate(batch):
                        # Every fifth request replays an earlier order: it must be refused.
                        payload = batch[n - 1] if n % 5 == 4 else body
                        try:
                            response = http.post("/orders", json=payload)
                        except httpx.HTTPError:
                            with lock:
                                unanswered.append(payload)
                            return
                        with lock:
                            if response.status_code == 201:
                                acked[response.json()["id"]] = payload
                                if len(acked) >= 60:
                                    first_acks.set()
                            else:
                                assert response.status_code == 409, response.text
                                refused.append(payload)

            threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
            for thread in threads:
                thread.start()
            assert first_acks.wait(60)
            os.kill(server.pid, signal.SIGKILL)  # mid-stream: clients are still sending
            server.wait()
            for thread in threads:
                thread.join(30)
            assert unanswered, "the kill did not interrupt any request"
            assert refused
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()

        restarted = start_serve(rpc_url, tmp_path, port)
        try:
            wait_healthy(url, restarted)
            with httpx.Client(base_url=url, timeout=10) as http:
                stored: dict[str, dict[str, Any]] = {}
                for trader in traders:
                    listing = http.get(f"/participants/{trader.address}/orders").json()
                    stored.update({o["id"]: o for o in listing["orders"]})
                # Every order answered 201 is there, open, exactly as signed.
                assert set(acked) <= set(stored)
                for order_id, body in acked.items():
                    assert stored[order_id]["status"] == "open"
                    assert stored[order_id]["signature"] == body["signature"].lower()
                # Nothing else: only orders that were in flight at the kill may also be there.
                extra = set(stored) - set(acked)
                assert len(extra) <= len(unanswered)
                unanswered_nonces = {
                    (b["order"]["participant"], b["order"]["nonce"]) for b in unanswered
                }
                for order_id in extra:
                    o = stored[order_id]["order"]
                    assert (o["participant"], o["nonce"]) in unanswered_nonces
                seqs = [o["seq"] for o in stored.values()]
                assert len(set(seqs)) == len(seqs)
                # Nonces are durable: an acked order replayed after the restart is refused.
                replay = next(iter(acked.values()))
                assert http.post("/orders", json=replay).json()["code"] == "nonce_used"
                fresh = http.post("/orders", json=signers[0].order(t, "buy", 10, PRICE))
                assert fresh.status_code == 201
                assert fresh.json()["seq"] > max(seqs)
                health = http.get("/health").json()
                assert health["openOrders"] == len(stored) + 1
        finally:
            restarted.send_signal(signal.SIGTERM)
            try:
                restarted.wait(20)
            except subprocess.TimeoutExpired:
                restarted.kill()
                restarted.wait()
