"""LedgerClient.transact_data: the commit's calldata sent as built, with or without a fixed gas
limit, and a mined revert replayed so the contract's custom error surfaces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_ledger_support import BOOK_ROOT, MarketEnv, raises, snapshot_env, trade

from chain.client import LedgerClient
from chain.connection import connect
from ledger.commit_plan import commit_calldata, plan_commit
from ledger.contract_errors import IntervalAlreadyCommitted, ZeroQuantity
from ledger.order_backing import back_trades
from ledger.records import SignedOrder, Trade

GAS_LIMIT = 5_000_000


@pytest.fixture(scope="module")
def base_env() -> MarketEnv:
    return MarketEnv.build(connect(), n_participants=3)


@pytest.fixture
def env(base_env: MarketEnv) -> Iterator[MarketEnv]:
    yield from snapshot_env(base_env)


def _backed(
    env: MarketEnv, t: int, trades: list[Trade]
) -> tuple[list[Trade], dict[bytes, SignedOrder]]:
    backed, orders = back_trades(t, trades, env.ledger.domain(), env.keys)
    return list(backed), orders


def _fixed(env: MarketEnv) -> LedgerClient:
    return LedgerClient(env.chain, env.ledger.address, gas_limit=GAS_LIMIT)


def test_commit_sends_exactly_the_built_calldata(env: MarketEnv) -> None:
    t = env.next_interval()
    trades, orders = _backed(env, t, [trade(env.p(0), env.p(1), 10), trade(env.p(2), env.p(1), 7)])
    receipt = env.ledger.commit_interval(t, BOOK_ROOT, trades, orders)
    tx = env.chain.w3.eth.get_transaction(receipt["transactionHash"])
    indices = {p: env.ledger.participant_index(p) for p in env.participants}
    (chunk,) = plan_commit(t, trades, orders, indices).chunks
    assert bytes(tx["input"]) == commit_calldata(t, BOOK_ROOT, chunk)
    assert tx["to"] == env.ledger.address
    assert tx["gas"] != GAS_LIMIT  # estimated


def test_a_fixed_gas_limit_is_the_transactions_gas(env: MarketEnv) -> None:
    client = _fixed(env)
    t = env.next_interval()
    receipt = client.commit_interval(t, BOOK_ROOT, *_backed(env, t, [trade(env.p(0), env.p(1), 3)]))
    assert env.chain.w3.eth.get_transaction(receipt["transactionHash"])["gas"] == GAS_LIMIT
    receipt = client.withdraw(env.p(2), 1)
    assert env.chain.w3.eth.get_transaction(receipt["transactionHash"])["gas"] == GAS_LIMIT
    assert receipt["status"] == 1


@pytest.mark.parametrize("gas_limit", [None, GAS_LIMIT])
def test_a_reverting_commit_raises_the_contracts_error(
    env: MarketEnv, gas_limit: int | None
) -> None:
    client = LedgerClient(env.chain, env.ledger.address, gas_limit=gas_limit)
    t = client.current_interval() + 1
    client.commit_interval(t, BOOK_ROOT, *_backed(env, t, [trade(env.p(0), env.p(1), 3)]))
    with raises(IntervalAlreadyCommitted, interval=t):
        client.commit_interval(t, BOOK_ROOT, *_backed(env, t, [trade(env.p(0), env.p(1), 3)]))
    with raises(ZeroQuantity, trade_index=0):
        client.commit_interval(
            t + 1, BOOK_ROOT, *_backed(env, t + 1, [trade(env.p(0), env.p(1), 0)])
        )
    assert client.interval_info(t + 1).status == "none"
