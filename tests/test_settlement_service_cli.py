"""``wattledger settle`` and the settlement service inside ``wattledger serve``.

* ``settle`` without ``--watch`` does what is due once and exits; ``--report T`` prints the
  reconciliation as a table or JSON (exit 0 when every check passes).
* Inside ``serve`` on the embedded chain the service runs on its own thread beside the
  market (requests to the in-process chain are serialised) and keeps chain time moving.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from market_harness import fund_participants
from test_ledger_support import chain_keys, commit_backed, trade
from test_settlement_service_support import populate_anvil

from chain.client import LedgerClient
from chain.connection import Chain, connect
from chain.deployment import write_deployment
from chain.rpc import request_lock
from deploy.cli import build_parser, main
from deploy.cli_settle import _embedded_heartbeat, settlement_for_serve
from deploy.deployment import deploy_system
from ledger.commit_plan import commit_calldata, plan_commit
from ledger.eip712 import Domain, sign_reading
from ledger.order_backing import back_trades
from ledger.records import Reading
from market.client import AppTransport, OrderSigner


def test_settle_needs_an_rpc_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settle"]) == 2
    err = capsys.readouterr().err
    assert "needs --rpc-url" in err and "wattledger serve" in err


def test_settle_serves_its_api_only_while_watching(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settle", "--rpc-url", "http://127.0.0.1:9", "--port", "8001"]) == 2
    assert "add --watch" in capsys.readouterr().err


@pytest.mark.anvil
def test_settle_once_settles_what_is_due_and_reports_it(
    anvil_chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = deploy_system(anvil_chain)
    write_deployment(deployment, tmp_path / "dep")
    ledger = LedgerClient.from_deployment(anvil_chain, deployment)
    people = populate_anvil(anvil_chain, ledger, 4, 10**24, seed=21)
    a, b, c, d = people.participants
    t = ledger.current_interval() + 1
    commit_backed(ledger, people.keys, t, [trade(a, b, 600), trade(c, d, 300, n=1)])
    _, end = ledger.interval_window(t)
    anvil_chain.advance_time(end - anvil_chain.timestamp())
    signed = sign_reading(people.meters[b], Reading(b, t, 0, 500), ledger.domain())
    ledger.submit_readings(t, [signed], sender=anvil_chain.accounts[5])  # relayed by anyone
    url = anvil_chain.rpc_url
    assert url is not None
    common = ["--rpc-url", url, "--deployments-dir", str(tmp_path / "dep")]
    db = ["--db", str(tmp_path / "settle.db")]
    assert main(["settle", *common, *db]) == 0  # reading window open: nothing to settle yet
    assert f"interval {t}: reading" in capsys.readouterr().out
    anvil_chain.advance_time(ledger.interval_info(t).deadline - anvil_chain.timestamp())
    assert main(["settle", *common, *db]) == 0
    captured = capsys.readouterr()
    assert f"interval {t}: settled, 2 trades" in captured.out
    assert f"interval {t}: settled trades 0..1 of 2" in captured.err
    assert ledger.interval_info(t).status == "settled"
    assert main(["settle", *common, "--report", str(t), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and [x["deliveredWh"] for x in report["trades"]] == [500, 0]
    assert main(["settle", *common, "--report", str(t)]) == 0
    table = capsys.readouterr().out
    assert f"Interval {t}" in table and "OK" in table and "value_conserved" in table
    assert main(["settle", *common, "--report", str(t + 5)]) == 2
    assert "never committed" in capsys.readouterr().err


def test_serve_runs_the_settlement_service_beside_the_market_on_the_embedded_chain(
    tmp_path: Path,
) -> None:
    chain = connect()
    deployment = deploy_system(chain)
    client = LedgerClient.from_deployment(chain, deployment)
    alice, bob = chain.signers[1], chain.signers[2]
    fund_participants(client, [alice, bob], 10**21)  # each participant is its own meter
    t = client.current_interval() + 1
    commit_backed(client, chain_keys(chain), t, [trade(alice.address, bob.address, 700)])
    args = build_parser().parse_args(
        ["serve", "--settle-poll-seconds", "0.05", "--settlement-db", str(tmp_path / "s.db")]
    )
    routers, stop = settlement_for_serve(args, chain, client, deployment, tmp_path / "m.db")
    app = FastAPI()
    for router in routers:
        app.include_router(router)
    transport = AppTransport(app)
    try:
        with request_lock(chain.w3):  # the service thread uses the chain meanwhile
            _, end = client.interval_window(t)
            chain.advance_time(end - chain.timestamp())
        body = OrderSigner(bob, Domain(chain.chain_id, client.address)).reading(
            bob.address, t, 0, 650
        )
        with httpx.Client(transport=transport, base_url="http://serve.local") as http:
            assert http.post("/meter-readings", json=body).status_code == 202
            deadline = time.monotonic() + 30
            while client.reading_of(t, bob.address) != (True, 650):
                assert time.monotonic() < deadline, "the reading never reached the chain"
                time.sleep(0.05)
            with request_lock(chain.w3):
                chain.advance_time(client.interval_info(t).deadline - chain.timestamp())
            while client.interval_info(t).status != "settled":
                assert time.monotonic() < deadline, "the interval never settled"
                time.sleep(0.05)
            report = http.get(f"/intervals/{t}/settlement").json()
        assert report["ok"] and report["trades"][0]["deliveredWh"] == 650
    finally:
        stop()
        transport.close()


def test_embedded_heartbeat_lets_chain_time_follow_the_wall_clock() -> None:
    chain = connect()
    # eth-tester stamps the next block with the time the last one was mined, rounded up to the
    # next second: after 2.5 s that stamp lags the wall clock by at least one whole second.
    time.sleep(2.5)
    before = chain.w3.eth.block_number
    assert int(chain.w3.eth.get_block("pending")["timestamp"]) < int(time.time())
    _embedded_heartbeat(chain)()
    assert chain.w3.eth.block_number > before
    assert int(chain.w3.eth.get_block("pending")["timestamp"]) >= int(time.time()) - 1


@pytest.mark.anvil
def test_settle_interval_settles_a_commit_the_operator_left_unfinished(
    anvil_chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator sends the first chunk of a two-chunk commit and vanishes. After the
    deadline anyone runs ``settle --interval T``: the committed prefix settles and every lock
    it took is released."""
    deployment = deploy_system(anvil_chain)
    write_deployment(deployment, tmp_path / "dep")
    ledger = LedgerClient.from_deployment(anvil_chain, deployment)
    people = populate_anvil(anvil_chain, ledger, 4, 10**24, seed=23)
    a, b, c, d = people.participants
    t = ledger.current_interval() + 1
    trades, orders = back_trades(
        t, [trade(a, b, 600), trade(c, d, 300, n=1)], ledger.domain(), people.keys
    )
    indices = {p: ledger.participant_index(p) for p in people.participants}
    plan = plan_commit(t, trades, orders, indices, max_bytes=900)
    assert len(plan.chunks) == 2
    ledger.transact_data(commit_calldata(t, b"\xbb" * 32, plan.chunks[0]))
    assert ledger.balance_of(plan.trades[0].buyer).locked > 0
    url = anvil_chain.rpc_url
    assert url is not None
    common = ["--rpc-url", url, "--deployments-dir", str(tmp_path / "dep")]
    assert main(["settle", *common, "--interval", str(t)]) == 2  # the reading window is open
    assert "reading window is open" in capsys.readouterr().err
    anvil_chain.advance_time(ledger.interval_info(t).deadline - anvil_chain.timestamp())
    assert main(["settle", *common, "--interval", str(t)]) == 0
    assert "settled 1 trades of an unfinished commit" in capsys.readouterr().out
    assert ledger.interval_info(t).status == "settled"
    assert all(ledger.balance_of(p).locked == 0 for p in people.participants)
    assert main(["settle", *common, "--interval", str(t)]) == 0
    assert "already settled" in capsys.readouterr().out
