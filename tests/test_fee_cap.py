"""The settlement service never pays more per gas than its fee cap; above it, it waits.

* :func:`settlement.fees.priced` clamps the policy's fees to the cap, refuses to send while
  the base fee plus the tip is above it, and refuses a fee bump the cap leaves no room for;
* on anvil, with the base fee raised above ``--max-fee-gwei`` (``anvil_setNextBlockBaseFeePerGas``)
  ``wattledger settle`` sends nothing and says why (the base fee and the cap); with the base
  fee lowered it settles, every transaction's ``maxFeePerGas`` and paid price are within
  the cap, and the gas and fees paid are in the journal and the report;
* the market's own transactions (``LedgerClient.transact_data``: commits, registrations)
  wait the same way under the chain's fee cap (``serve --max-fee-gwei``).
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from pathlib import Path

import pytest
from eth_account import Account
from test_ledger_support import commit_backed, trade
from test_settlement_service_support import populate_anvil

from chain.client import LedgerClient
from chain.connection import Chain
from chain.deployment import write_deployment
from chain.fee_cap import FeeCap, format_gwei, gwei_to_wei
from deploy.cli import main
from deploy.deployment import deploy_system
from settlement.fees import Fees, priced
from settlement.journal import TX_MINED
from settlement.store import ReadingStore

GWEI = 10**9
CAP = FeeCap(max_fee_wei=10 * GWEI, priority_fee_wei=1 * GWEI)


def test_fees_under_the_cap_are_clamped_never_raised() -> None:
    policy = Fees(max_fee=2 * 4 * GWEI + 2 * GWEI, priority_fee=2 * GWEI, base_fee=4 * GWEI)
    assert priced(policy, None, CAP) == Fees(10 * GWEI, 1 * GWEI, None, 4 * GWEI)
    cheap = Fees(max_fee=3 * GWEI, priority_fee=GWEI // 2, base_fee=GWEI)
    assert priced(cheap, None, CAP) == cheap
    assert priced(policy, None, FeeCap()) == policy


def test_base_fee_plus_tip_above_the_cap_sends_nothing() -> None:
    exactly = Fees(max_fee=19 * GWEI, priority_fee=GWEI, base_fee=9 * GWEI)
    assert priced(exactly, None, CAP) == Fees(10 * GWEI, GWEI, None, 9 * GWEI)  # at the cap
    above = Fees(max_fee=19 * GWEI + 2, priority_fee=GWEI, base_fee=9 * GWEI + 1)
    assert priced(above, None, CAP) is None


def test_a_fee_bump_never_goes_above_the_cap() -> None:
    first = priced(Fees(max_fee=9 * GWEI, priority_fee=GWEI, base_fee=4 * GWEI), None, CAP)
    assert first == Fees(9 * GWEI, GWEI, None, 4 * GWEI)
    floor = Fees(max_fee=9 * GWEI, priority_fee=GWEI).bumped((9, 8))
    # The replacement must pay 9/8 of the tip: 1.125 gwei is above the 1 gwei tip cap.
    assert priced(Fees(max_fee=9 * GWEI, priority_fee=GWEI, base_fee=4 * GWEI), floor, CAP) is None
    roomy = FeeCap(max_fee_wei=20 * GWEI, priority_fee_wei=2 * GWEI)
    bumped = priced(Fees(max_fee=9 * GWEI, priority_fee=GWEI, base_fee=4 * GWEI), floor, roomy)
    assert bumped is not None and bumped.covers(floor)
    assert bumped.max_fee is not None and bumped.max_fee <= 20 * GWEI


def test_gwei_flags_are_exact() -> None:
    assert gwei_to_wei("25") == 25 * GWEI
    assert gwei_to_wei("0.000000001") == 1
    for bad in ("0", "-1", "abc", "0.0000000001", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            gwei_to_wei(bad)
    assert format_gwei(1_500_000_000) == "1.5 gwei" and format_gwei(10 * GWEI) == "10 gwei"


def _set_base_fee(chain: Chain, wei: int) -> None:
    """Make the next block's base fee ``wei`` and mine it, so the latest block shows it."""
    chain.w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(wei)])  # type: ignore[arg-type]
    chain.mine(1)
    assert int(chain.w3.eth.get_block("latest")["baseFeePerGas"]) == wei


@pytest.mark.anvil
def test_settle_waits_while_the_base_fee_is_above_the_cap_then_pays_within_it(
    anvil_chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = deploy_system(anvil_chain)
    write_deployment(deployment, tmp_path / "dep")
    ledger = LedgerClient.from_deployment(anvil_chain, deployment)
    people = populate_anvil(anvil_chain, ledger, 2, 10**24, seed=41)
    a, b = people.participants
    t = ledger.current_interval() + 1
    commit_backed(ledger, people.keys, t, [trade(a, b, 700)])
    anvil_chain.advance_time(ledger.interval_info(t).deadline - anvil_chain.timestamp())
    url = anvil_chain.rpc_url
    assert url is not None
    db = tmp_path / "settle.db"
    settle = ["settle", "--rpc-url", url, "--deployments-dir", str(tmp_path / "dep")]
    settle += ["--db", str(db), "--max-fee-gwei", "10", "--max-priority-fee-gwei", "1"]
    settler = anvil_chain.signers[-1].address
    nonce = anvil_chain.w3.eth.get_transaction_count(settler)

    _set_base_fee(anvil_chain, 100 * GWEI)
    assert main(settle) == 0
    captured = capsys.readouterr()
    assert f"interval {t}: waiting: the base fee is 100 gwei" in captured.err
    assert "above the fee cap (max fee 10 gwei, tip 1 gwei)" in captured.err
    assert f"interval {t}: settling" in captured.out and "fee_above_cap" in captured.out
    assert anvil_chain.w3.eth.get_transaction_count(settler) == nonce  # nothing sent
    store = ReadingStore(db)
    assert store.txs(t) == []
    store.close()
    assert ledger.interval_info(t).status != "settled"

    _set_base_fee(anvil_chain, GWEI)
    assert main(settle) == 0
    captured = capsys.readouterr()
    assert f"interval {t}: settled, 1 trades" in captured.out
    assert ledger.interval_info(t).status == "settled"
    store = ReadingStore(db)
    txs = store.txs(t)
    costs = store.costs(t)
    store.close()
    assert txs and all(tx.state == TX_MINED for tx in txs)
    for tx in txs:
        sent = anvil_chain.w3.eth.get_transaction(tx.hash)  # type: ignore[arg-type]
        assert sent["maxFeePerGas"] <= 10 * GWEI and sent["maxPriorityFeePerGas"] <= GWEI
        assert tx.max_fee == sent["maxFeePerGas"]
        assert tx.gas_price_paid is not None and tx.gas_price_paid <= 10 * GWEI
        receipt = anvil_chain.w3.eth.get_transaction_receipt(tx.hash)  # type: ignore[arg-type]
        assert tx.gas_used == receipt["gasUsed"]
        assert tx.fee_paid_wei == receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert sum(c.fees_paid_wei for c in costs) == sum(tx.fee_paid_wei or 0 for tx in txs) > 0
    assert f"fees paid {sum(c.fees_paid_wei for c in costs):,} wei" in captured.out

    assert main([*settle, "--report", str(t), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["costs"] == [c.to_json() for c in costs]
    assert main([*settle, "--report", str(t)]) == 0
    assert "transaction costs of this service" in capsys.readouterr().out


@pytest.mark.anvil
def test_market_transactions_wait_for_the_base_fee_and_pay_within_the_cap(
    anvil_chain: Chain, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("chain.connection.FEE_CAP_POLL_SECONDS", 0.02)
    caplog.set_level(logging.WARNING, logger="wattledger.chain")
    deployment = deploy_system(anvil_chain)
    ledger = LedgerClient.from_deployment(anvil_chain, deployment)
    anvil_chain.fee_cap = CAP
    newcomer = Account.create().address
    nonce = anvil_chain.w3.eth.get_transaction_count(ledger.sender)
    _set_base_fee(anvil_chain, 50 * GWEI)
    done: list[str] = []
    worker = threading.Thread(
        target=lambda: done.append(
            ledger.register_participant(newcomer, newcomer)["transactionHash"].hex()
        )
    )
    worker.start()
    worker.join(0.5)
    assert worker.is_alive() and not done  # held back: nothing sent
    assert anvil_chain.w3.eth.get_transaction_count(ledger.sender) == nonce
    assert "waiting: the base fee is 50 gwei" in caplog.text and "max fee 10 gwei" in caplog.text
    _set_base_fee(anvil_chain, 2 * GWEI)
    worker.join(10)
    assert done and ledger.participant_info(newcomer).registered
    sent = anvil_chain.w3.eth.get_transaction(done[0])  # type: ignore[arg-type]
    assert sent["maxFeePerGas"] <= 10 * GWEI and sent["maxPriorityFeePerGas"] <= GWEI


def test_a_journal_written_before_prices_were_recorded_gains_the_column(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.db"
    old = sqlite3.connect(db)
    old.executescript(
        "CREATE TABLE txs (hash TEXT PRIMARY KEY, sender TEXT NOT NULL, nonce INTEGER NOT NULL,"
        " kind TEXT NOT NULL, interval INTEGER, gas_limit INTEGER NOT NULL, max_fee TEXT,"
        " priority_fee TEXT, gas_price TEXT, sent_at REAL NOT NULL, state TEXT NOT NULL,"
        " block_number INTEGER, status INTEGER, gas_used INTEGER);"
        "INSERT INTO txs VALUES ('0x01', '0xa', 0, 'settle', 7, 100000, '3', '1', NULL, 1.0,"
        " 'mined', 5, 1, 50000);"
    )
    old.commit()
    old.close()
    store = ReadingStore(db)
    (tx,) = store.txs(7)
    assert tx.gas_used == 50_000 and tx.gas_price_paid is None and tx.fee_paid_wei is None
    (costs,) = store.costs(7)
    assert (costs.transactions, costs.gas_used, costs.fees_paid_wei, costs.unpriced) == (
        1,
        50_000,
        0,
        1,
    )
    store.close()
