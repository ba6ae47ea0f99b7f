"""End-to-end settlement of one 1,000-trade interval, on eth-tester and on anvil, timed.

For each chain, not timed: deploy, register ``--participants`` participants with meter keys
and fund them, and commit one interval of ``--trades`` trades (half the participants buy,
half sell, each buyer from two sellers, seeded sizes and prices), then move chain time to
the interval's end. Timed, through the same code path on both chains (a
:class:`SettlementService` in this process, readings over HTTP into its ASGI app):

* ``intake``: every participant's meter-signed reading ``POST /meter-readings`` from eight
  clients at once (signature, meter key, window and duplicate checks, durable store);
* ``readings``: ``tick()`` until every reading is on-chain (gas-sized ``submitReadings``
  batches);
* ``settle``: chain time moved to the reading deadline, ``tick()`` until the interval is
  ``Settled`` (chunks sized to half the block gas limit);
* ``end to end``: the three together; ``report``: the reconciliation report from the
  interval's events, checked against the model, timed apart (without the escrow sum over
  every registered participant, which needs a log scan from the deployment block: eth-tester
  decodes every block again for each log query, minutes for this set-up).

Prints the times, transactions and gas per phase, and the eth-tester/anvil ratio of each.

Usage: ``python bench/settle.py [--trades 1000] [--participants 1000] [--chains
eth-tester,anvil]``. Setting up 1,000 participants takes eth-tester about three minutes
(5,000 transactions at ~30 ms); anvil takes seconds.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import requests
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from chain.anvil import running_anvil
from chain.client import LedgerClient
from chain.connection import Chain, connect
from chain.deployment import Deployment
from chain.rpc import serialize_requests
from deploy.deployment import DEFAULT_MARKET_TERMS, deploy_system
from ledger.eip712 import Domain
from ledger.order_backing import back_trades
from ledger.records import Reading, Terms, Trade
from market.client import AppTransport, OrderSigner
from settlement.api import create_settlement_app
from settlement.chain_reader import ChainReader
from settlement.model import Ledger
from settlement.service import SettlementService
from settlement.store import ReadingStore
from settlement.tx import TxPolicy, TxSender

SEED = 20250601
METERS_AT_ONCE = 8
"""Readings are posted by this many clients at once (meters report right after the interval)."""
PRICE = 250_000_000_000_000
DEPOSIT = 10**24
SELECTORS = {
    name: "0x" + keccak(text=signature)[:4].hex()
    for name, signature in {
        "register": "registerParticipant(address,address)",
        "mint": "mint(address,uint256)",
        "approve": "approve(address,uint256)",
        "deposit": "deposit(uint256)",
    }.items()
}


@dataclass
class Phases:
    """Seconds, transactions and gas of each timed phase on one chain."""

    chain: str
    setup: float = 0.0
    intake: float = 0.0
    readings: float = 0.0
    settle: float = 0.0
    report: float = 0.0
    reading_txs: int = 0
    settle_txs: int = 0
    reading_gas: int = 0
    settle_gas: int = 0
    report_ok: bool = False

    @property
    def end_to_end(self) -> float:
        return self.intake + self.readings + self.settle


def _data(name: str, types: list[str], values: list[Any]) -> str:
    return SELECTORS[name] + abi_encode(types, values).hex()


def populate(
    chain: Chain, ledger: LedgerClient, n: int
) -> tuple[list[str], dict[str, LocalAccount]]:
    """Register, fund and deposit for ``n`` participants with their own meter keys."""
    people = [Account.from_key((SEED * 10**7 + i).to_bytes(32, "big")) for i in range(n)]
    meters = [Account.from_key((SEED * 10**7 + 10**6 + i).to_bytes(32, "big")) for i in range(n)]
    deployer, market, token = ledger.sender, ledger.address, ledger.token.address
    calls: list[list[tuple[str, dict[str, Any]]]] = [[], []]
    for who, meter in zip(people, meters, strict=True):
        a = who.address
        calls[0].append(
            (
                deployer,
                {
                    "to": market,
                    "data": _data("register", ["address", "address"], [a, meter.address]),
                },
            )
        )
        calls[0].append(
            (deployer, {"to": token, "data": _data("mint", ["address", "uint256"], [a, DEPOSIT])})
        )
        calls[1].append(
            (a, {"to": token, "data": _data("approve", ["address", "uint256"], [market, DEPOSIT])})
        )
        calls[1].append((a, {"to": market, "data": _data("deposit", ["uint256"], [DEPOSIT])}))
    if chain.is_embedded:
        _populate_tester(chain, people, calls)
    else:
        _populate_anvil(chain, people, calls)
    addresses = [p.address for p in people]
    assert ledger.balance_of(addresses[-1]).free == DEPOSIT
    return addresses, dict(zip(addresses, meters, strict=True))


def _populate_tester(
    chain: Chain, people: list[LocalAccount], calls: list[list[tuple[str, dict[str, Any]]]]
) -> None:
    tester = chain._tester
    fees = {"max_fee_per_gas": 10**10, "max_priority_fee_per_gas": 10**9}
    for who in people:
        tester.add_account("0x" + bytes(who.key).hex())
        tester.send_transaction(
            {"from": chain.accounts[0], "to": who.address, "value": 10**18, "gas": 21_000, **fees}
        )
    for k, phase in enumerate(calls):
        for i, (sender, call) in enumerate(phase):
            tester.send_transaction({"from": sender, "gas": 300_000, "value": 0, **call, **fees})
            if i % 500 == 499:
                print(f"  eth-tester set-up: phase {k + 1}, {i + 1} of {len(phase)}", flush=True)


def _populate_anvil(
    chain: Chain, people: list[LocalAccount], calls: list[list[tuple[str, dict[str, Any]]]]
) -> None:
    rpc = chain.w3.provider.make_request
    url = chain.rpc_url
    assert url is not None
    nonces: dict[str, int] = {}
    for who in people:
        rpc("anvil_setBalance", [who.address, hex(10**19)])  # type: ignore[arg-type]
    rpc("anvil_autoImpersonateAccount", [True])  # type: ignore[arg-type]
    rpc("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        with requests.Session() as http:
            for phase in calls:
                batch: list[dict[str, Any]] = []
                for sender, call in phase:
                    if sender not in nonces:
                        nonces[sender] = int(chain.w3.eth.get_transaction_count(sender))  # type: ignore[arg-type]
                    tx = {"from": sender, "gas": hex(300_000), "nonce": hex(nonces[sender]), **call}
                    nonces[sender] += 1
                    batch.append(
                        {
                            "jsonrpc": "2.0",
                            "id": len(batch),
                            "method": "eth_sendTransaction",
                            "params": [tx],
                        }
                    )
                for k in range(0, len(batch), 500):
                    answers = http.post(url, json=batch[k : k + 500], timeout=120).json()
                    assert not [a for a in answers if "error" in a], answers[:2]
                while True:
                    status = rpc("txpool_status", [])["result"]  # type: ignore[arg-type]
                    if int(status["pending"], 16) == 0 and int(status["queued"], 16) == 0:
                        break
                    rpc("evm_mine", [])  # type: ignore[arg-type]
    finally:
        rpc("evm_setAutomine", [True])  # type: ignore[arg-type]
        rpc("anvil_autoImpersonateAccount", [False])  # type: ignore[arg-type]


def ring_trades(participants: list[str], count: int) -> list[Trade]:
    """Half the participants buy, half sell; each buyer trades with two sellers."""
    rng = random.Random(SEED)
    half = len(participants) // 2
    buyers, sellers = participants[:half], participants[half:]
    return [
        Trade(
            buyers[(k // 2) % half],
            sellers[(k // 2 + k % 2) % half],
            rng.randint(100, 2_000),
            PRICE + rng.randint(-50_000, 50_000),
            buy_order_id=(2 * k + 1).to_bytes(32, "big"),
            sell_order_id=(2 * k + 2).to_bytes(32, "big"),
        )
        for k in range(count)
    ]


def run_chain(chain: Chain, name: str, trades_n: int, participants_n: int, tmp: Path) -> Phases:
    """Set up, then time intake, readings and settlement of one interval on ``chain``."""
    phases = Phases(name)
    began = time.perf_counter()
    deployment: Deployment = deploy_system(chain)
    ledger = LedgerClient.from_deployment(chain, deployment)
    participants, meters = populate(chain, ledger, participants_n)
    trades = ring_trades(participants, trades_n)
    t = ledger.current_interval() + 1
    keys = {
        Account.from_key(k).address: k
        for k in ((SEED * 10**7 + i).to_bytes(32, "big") for i in range(participants_n))
    }
    trades_backed, orders = back_trades(t, trades, ledger.domain(), keys)
    trades = list(trades_backed)
    receipt = ledger.commit_interval(t, b"\xbb" * 32, trades, orders)
    commit_block = int(receipt["blockNumber"])
    _, end = ledger.interval_window(t)
    chain.advance_time(end - chain.timestamp())
    rng = random.Random(SEED + 1)
    sold: dict[str, int] = {}
    for tr in trades:
        sold[tr.seller] = sold.get(tr.seller, 0) + tr.quantity_wh
    readings = [
        Reading(
            p,
            t,
            rng.randint(0, 3_000),
            rng.choice([sold[p], sold[p] * 9 // 10, 0]) if p in sold else 0,
        )
        for p in participants
    ]
    domain = Domain(chain.chain_id, ledger.address)
    bodies = [
        OrderSigner(meters[r.participant], domain).reading(
            r.participant, t, r.imported_wh, r.exported_wh
        )
        for r in readings
    ]
    # A running service has scanned the chain up to the commit already; eth-tester re-decodes
    # every block for each log query, so a scan from the deployment would time set-up.
    reader = ChainReader(ledger, start_block=commit_block)
    if chain.is_embedded:
        serialize_requests(chain.w3)  # eight intake threads share the in-process chain
    store = ReadingStore(tmp / f"{name}.db")
    sender = TxSender(reader, chain.signers[-1], store, TxPolicy())
    service = SettlementService(reader, store, sender)
    transport = AppTransport(create_settlement_app(service))
    service.tick()  # a running service found the interval when it was committed, long before
    phases.setup = time.perf_counter() - began
    print(f"  {name}: set up in {phases.setup:.1f} s; timing ...", flush=True)

    local = threading.local()

    def post(body: dict[str, Any]) -> int:
        if not hasattr(local, "http"):
            local.http = httpx.Client(transport=transport, base_url="http://settle.local")
        return int(local.http.post("/meter-readings", json=body, timeout=120).status_code)

    start = time.perf_counter()
    with ThreadPoolExecutor(METERS_AT_ONCE) as pool:
        codes = list(pool.map(post, bodies))
    phases.intake = time.perf_counter() - start
    assert codes == [202] * len(bodies), sorted(set(codes))

    start = time.perf_counter()
    while service.store.readings(t, "queued"):
        service.tick()
    phases.readings = time.perf_counter() - start

    chain.advance_time(ledger.interval_info(t).deadline - chain.timestamp())
    start = time.perf_counter()
    while ledger.interval_info(t).status != "settled":
        service.tick()
    phases.settle = time.perf_counter() - start

    start = time.perf_counter()
    checked = service.report(t, escrow=False)  # the escrow sum needs every registration
    phases.report = time.perf_counter() - start
    transport.close()
    phases.report_ok = checked.ok
    for tx in store.txs(t):
        receipt = chain.w3.eth.get_transaction_receipt(tx.hash)  # type: ignore[arg-type]
        if tx.state != "mined":
            continue
        if tx.kind == "readings":
            phases.reading_txs += 1
            phases.reading_gas += int(receipt["gasUsed"])
        else:
            phases.settle_txs += 1
            phases.settle_gas += int(receipt["gasUsed"])
    model = Ledger()
    for p in participants:
        model.register(p)
        model.deposit(p, DEPOSIT)
    model.commit(t, trades, Terms(*DEFAULT_MARKET_TERMS))
    for r in readings:
        model.submit_reading(t, r)
    model.settle(t, 10**9)
    for p in random.Random(SEED).sample(participants, min(25, len(participants))):
        balance = ledger.balance_of(p)
        assert (balance.free, balance.locked) == (model.balance(p).free, model.balance(p).locked)
    return phases


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description="settlement of one interval, end to end")
    parser.add_argument("--trades", type=int, default=1_000)
    parser.add_argument("--participants", type=int, default=1_000)
    parser.add_argument("--chains", default="eth-tester,anvil")
    args = parser.parse_args()
    chains = args.chains.split(",")
    results: dict[str, Phases] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in chains:
            print(
                f"{name}: {args.trades:,} trades among {args.participants:,} participants",
                flush=True,
            )
            if name == "anvil":
                with running_anvil() as url:
                    results[name] = run_chain(
                        connect(url), name, args.trades, args.participants, Path(tmp)
                    )
            else:
                results[name] = run_chain(
                    connect(), name, args.trades, args.participants, Path(tmp)
                )
    print(
        f"\nSettlement of one {args.trades:,}-trade interval with {args.participants:,} meter "
        "readings, end to end (seconds; seed fixed)"
    )
    head = f"{'phase':<12}" + "".join(f"{n:>14}" for n in chains)
    if len(chains) == 2:
        head += f"{'ratio':>10}"
    print(head)
    for phase in ("intake", "readings", "settle", "end_to_end", "report", "setup"):
        row = f"{phase.replace('_', ' '):<12}"
        values = [float(getattr(results[n], phase)) for n in chains]
        row += "".join(f"{v:>14.2f}" for v in values)
        if len(values) == 2 and values[1] > 0:
            row += f"{values[0] / values[1]:>9.1f}x"
        print(row)
    for n in chains:
        r = results[n]
        print(
            f"{n}: {r.reading_txs} submitReadings transactions ({r.reading_gas:,} gas, "
            f"{r.reading_gas // max(args.participants, 1):,} per reading), {r.settle_txs} settle "
            f"chunks ({r.settle_gas:,} gas, {r.settle_gas // max(args.trades, 1):,} per trade); "
            f"reconciliation report {'OK' if r.report_ok else 'MISMATCH'}"
        )
    return 0 if all(r.report_ok for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
