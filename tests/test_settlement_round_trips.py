"""The settlement service's requests to a node (anvil): fewer round trips, the same outcome.

* Independent reads go in one JSON-RPC batch (:meth:`ChainReader.rpc_batch`), answered as
  the calls one by one would be (a call the node refuses becomes its error, in place).
* The sender reads its account's nonce once and counts on from its own mined transactions;
  after another sender took the nonce, the next transaction reads it again.
* A tick reads chain time once, and the block gas limit from the same header.
* ``intervalInfo`` of an interval in its reading window is read once, not on every tick;
  once the deadline has passed it is read again and the interval settles as before.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from test_ledger_support import MarketEnv, trade
from test_settlement_service_support import FAST_POLICY, SettleEnv

from chain.connection import Chain
from settlement.batching import signed_reading
from settlement.chain_reader import ChainReader
from settlement.config import SettlementConfig
from settlement.contract_chain import ContractChain
from settlement.tx import NonceConsumed

pytestmark = pytest.mark.anvil

INTERVAL_INFO = "0x" + ChainReader._interval_call(0)[:4].hex()


class CountingReader(ChainReader):
    """A reader that counts each round trip to the node by the methods it carries."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trips: list[tuple[str, ...]] = []
        self.interval_reads = 0
        self.latest_block_reads = 0

    def rpc(self, method: str, params: Sequence[Any]) -> Any:
        self.trips.append((method,))
        if method == "eth_call" and str(params[0].get("data", "")).startswith(INTERVAL_INFO):
            self.interval_reads += 1
        if method == "eth_getBlockByNumber" and params[0] == "latest":
            self.latest_block_reads += 1
        return super().rpc(method, params)

    def rpc_batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        self.trips.append(tuple(method for method, _ in calls))
        return super().rpc_batch(calls)

    def methods(self) -> collections.Counter[str]:
        return collections.Counter(m for trip in self.trips for m in trip)


def counting_env(chain: Chain, tmp_path: Path, n: int = 4) -> tuple[SettleEnv, CountingReader]:
    market = MarketEnv.build(chain, n_participants=n)
    env = SettleEnv(market, tmp_path / "s.db", SettlementConfig(), FAST_POLICY)
    reader = CountingReader(market.ledger, sleep=lambda _s: None)
    env.service.store.close()
    env.new_service(reader=reader)
    return env, reader


def in_reading_window(chain: Chain, tmp_path: Path) -> tuple[SettleEnv, CountingReader, int]:
    """A counting environment with an interval of two trades committed and in its reading
    window."""
    env, reader = counting_env(chain, tmp_path)
    t = env.commit([trade(env.p(0), env.p(1), 100), trade(env.p(2), env.p(3), 50, n=1)])
    env.market.to_reading_window(t)
    return env, reader, t


def readings_data(env: SettleEnv, t: int, participant: str, exported_wh: int) -> bytes:
    body = env.body(t, participant, exported_wh)
    stored = env.service.accept_reading(body["reading"], body["signature"])
    chain = env.service.chain
    assert isinstance(chain, ContractChain)
    return chain.readings_calldata(t, [signed_reading(stored)])


def test_batch_answers_as_the_calls_one_by_one(anvil_chain: Chain, tmp_path: Path) -> None:
    env, reader = counting_env(anvil_chain, tmp_path, n=2)
    address = env.settler.address
    calls: list[tuple[str, list[Any]]] = [
        ("eth_getTransactionCount", [address, "latest"]),
        ("eth_getBalance", [address, "latest"]),
        ("eth_chainId", []),
        ("eth_noSuchMethod", []),
        ("eth_blockNumber", []),
    ]
    batched = reader.rpc_batch(calls)
    assert len(batched) == len(calls)
    for (method, params), answer in zip(calls, batched, strict=True):
        if method == "eth_noSuchMethod":
            assert isinstance(answer, RuntimeError) and "eth_noSuchMethod" in str(answer)
            with pytest.raises(RuntimeError):
                reader.rpc(method, params)
        else:
            assert answer == reader.rpc(method, params)


def test_batch_on_the_embedded_chain_answers_one_by_one(chain: Chain, tmp_path: Path) -> None:
    env, reader = counting_env(chain, tmp_path, n=2)
    calls: list[tuple[str, list[Any]]] = [
        ("eth_getTransactionCount", [env.settler.address, "latest"]),
        ("eth_blockNumber", []),
    ]
    assert reader.rpc_batch(calls) == [reader.rpc(m, p) for m, p in calls]


def test_nonce_is_read_once_for_consecutive_transactions(
    anvil_chain: Chain, tmp_path: Path
) -> None:
    env, reader, t = in_reading_window(anvil_chain, tmp_path)
    first = env.settler_nonce()
    receipts = [
        env.service.sender.send(
            env.market.ledger.address,
            readings_data(env, t, who, 40),
            gas_limit=300_000,
            kind="readings",
            interval=t,
        )
        for who in (env.p(1), env.p(3))
    ]
    assert reader.methods()["eth_getTransactionCount"] == 2  # latest and pending, once
    assert all(int(r["status"]) == 1 for r in receipts)
    assert env.settler_nonce() == first + 2
    assert [tx.nonce for tx in env.service.store.txs(t)] == [first, first + 1]
    assert env.market.ledger.reading_of(t, env.p(3)) == (True, 40)


def test_nonce_is_read_again_after_another_sender_took_it(
    anvil_chain: Chain, tmp_path: Path
) -> None:
    env, reader, t = in_reading_window(anvil_chain, tmp_path)
    sender = env.service.sender
    market = env.market.ledger.address
    sender.send(market, readings_data(env, t, env.p(1), 40), gas_limit=300_000, kind="readings")
    # Another process with the same key spends the nonce the sender would count on.
    w3 = anvil_chain.w3
    taken = env.settler_nonce()
    signed = env.settler.sign_transaction(
        {
            "chainId": anvil_chain.chain_id,
            "nonce": taken,
            "to": env.settler.address,
            "value": 0,
            "gas": 21_000,
            "gasPrice": 2 * int(w3.eth.gas_price),
        }
    )
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
    data = readings_data(env, t, env.p(3), 40)
    with pytest.raises(NonceConsumed):
        sender.send(market, data, gas_limit=300_000, kind="readings")
    receipt = sender.send(market, data, gas_limit=300_000, kind="readings")
    assert int(receipt["status"]) == 1
    assert env.settler_nonce() == taken + 2
    assert reader.methods()["eth_getTransactionCount"] >= 4  # read again after the failure
    assert env.market.ledger.reading_of(t, env.p(3)) == (True, 40)


def test_interval_is_read_once_in_the_reading_window_and_again_at_the_deadline(
    anvil_chain: Chain, tmp_path: Path
) -> None:
    env, reader, t = in_reading_window(anvil_chain, tmp_path)
    env.accept(t, {env.p(1): 90, env.p(3): 10})
    reader.interval_reads = 0
    for _ in range(3):
        env.service.tick()
    assert reader.interval_reads == 0  # known from intake, the deadline not yet passed
    assert env.market.ledger.reading_of(t, env.p(1)) == (True, 90)
    before = len(reader.trips)
    env.service.tick()
    assert len(reader.trips) - before <= 2  # chain time and the readings on-chain
    env.market.to_deadline(t)
    reader.latest_block_reads = 0
    env.service.tick()
    assert reader.latest_block_reads == 0  # the gas limit came with chain time's header
    assert reader.interval_reads == 1  # once the deadline passed; the last chunk settles it
    assert env.market.ledger.interval_info(t).status == "settled"
    assert env.service.store.get_interval(t).state == "settled"  # type: ignore[union-attr]
    assert env.trade_settled_indices(t) == [0, 1]
    env.settle_model(t)
    env.assert_balances_match_model()


def test_a_tick_reads_chain_time_once(anvil_chain: Chain, tmp_path: Path) -> None:
    env, reader = counting_env(anvil_chain, tmp_path)
    t = env.commit([trade(env.p(0), env.p(1), 100)])
    env.service.tick()  # discovers the commit: the interval is waiting
    reader.trips.clear()
    env.service.tick()
    assert reader.methods()["eth_getBlockByNumber"] == 1
    assert env.service.store.get_interval(t).state == "waiting"  # type: ignore[union-attr]
