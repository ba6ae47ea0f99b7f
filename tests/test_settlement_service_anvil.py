"""The settlement service's transactions on a real node (anvil): replacement and chain time.

* A transaction that is not mined in time is replaced: same nonce, fees up by at least 9/8,
  one of them mined, the others dropped, the effect applied once (automine off, the test
  mines by hand after the service has replaced).
* On an idle node the latest block is old; the service judges the reading window and the
  deadline by the pending block's time and preflights with that time, so it settles as soon
  as the deadline has passed even when no block has been mined since.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest
from test_ledger_support import MarketEnv, trade
from test_settlement_service_support import SettleEnv

from chain.connection import Chain
from ledger.records import Reading
from settlement.config import SettlementConfig
from settlement.tx import TxPolicy

pytestmark = pytest.mark.anvil


def test_unmined_transaction_is_replaced_with_the_same_nonce_and_higher_fees(
    anvil_chain: Chain, tmp_path: Path
) -> None:
    market = MarketEnv.build(anvil_chain, n_participants=2)
    policy = TxPolicy(receipt_timeout_seconds=0.4, poll_seconds=0.05)
    env = SettleEnv(market, tmp_path / "s.db", SettlementConfig(), policy)
    t = env.commit([trade(env.p(0), env.p(1), 100)])
    market.to_reading_window(t)
    signed = market.sign(Reading(env.p(1), t, 0, 80))
    data = bytes.fromhex(
        market.ledger.contract.encode_abi(
            "submitReadings", args=[t, [signed.as_tuple()]]
        ).removeprefix("0x")
    )
    rpc = anvil_chain.w3.provider.make_request
    rpc("evm_setAutomine", [False])  # type: ignore[arg-type]
    mined = threading.Event()

    def mine_after_replacements() -> None:
        while env.service.sender.replacements < 2:
            if mined.wait(0.05):
                return
        rpc("evm_mine", [])  # type: ignore[arg-type]
        mined.set()

    miner = threading.Thread(target=mine_after_replacements, daemon=True)
    miner.start()
    try:
        receipt = env.service.sender.send(
            market.ledger.address, data, gas_limit=300_000, kind="readings", interval=t
        )
    finally:
        mined.set()
        miner.join(5)
        rpc("evm_setAutomine", [True])  # type: ignore[arg-type]
    txs = env.service.store.txs(t)
    assert len(txs) >= 3 and len({tx.nonce for tx in txs}) == 1
    assert [tx.state for tx in txs].count("mined") == 1
    winner = next(tx for tx in txs if tx.state == "mined")
    assert winner.hash == "0x" + bytes(receipt["transactionHash"]).hex().removeprefix("0x")
    assert {tx.state for tx in txs if tx is not winner} == {"dropped"}
    for older, newer in itertools.pairwise(txs):
        assert newer.priority_fee is not None and older.priority_fee is not None
        assert newer.max_fee is not None and older.max_fee is not None
        assert newer.priority_fee * 8 >= older.priority_fee * 9
        assert newer.max_fee * 8 >= older.max_fee * 9
    assert market.ledger.reading_of(t, env.p(1)) == (True, 80)
    event = market.ledger.contract.events.ReadingSubmitted
    assert len(event.get_logs(from_block=0, argument_filters={"interval": t})) == 1


def test_settles_at_the_deadline_on_an_idle_node(anvil_chain: Chain, tmp_path: Path) -> None:
    market = MarketEnv.build(anvil_chain, n_participants=4)
    env = SettleEnv(market, tmp_path / "s.db", SettlementConfig(max_settle_trades=1), TxPolicy())
    t = env.commit([trade(env.p(0), env.p(1), 100), trade(env.p(2), env.p(3), 50, n=1)])
    market.to_reading_window(t)
    env.accept(t, {env.p(1): 90, env.p(3): 10})
    env.service.tick()
    deadline = market.ledger.interval_info(t).deadline
    rpc = anvil_chain.w3.provider.make_request
    rpc("evm_increaseTime", [deadline - anvil_chain.timestamp()])  # type: ignore[arg-type]
    assert anvil_chain.timestamp() < deadline  # no block since: the latest one is old
    env.service.tick()
    assert market.ledger.interval_info(t).status == "settled"
    assert env.trade_settled_indices(t) == [0, 1]
    env.settle_model(t)
    env.assert_balances_match_model()
