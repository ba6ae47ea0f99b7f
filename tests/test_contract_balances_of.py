"""EnergyMarket.balancesOf against balanceOf, and LedgerClient.balances_of over it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ledger_support import DEPOSIT, MarketEnv, snapshot_env, trade

import chain.client as ledger_module
from chain.connection import Chain, connect
from chain.reverts import mapped_reverts
from ledger.calldata import balances_of_calldata, decode_balances
from ledger.contract_errors import LedgerRevert
from ledger.records import Balance

# Addresses that were never registered (no balance slot at all).
UNKNOWN = tuple(to_checksum_address(bytes([0xEE, i]) * 10) for i in range(4))


def _spread(env: MarketEnv) -> None:
    """Give the participants distinct free and locked balances."""
    env.commit([trade(env.p(0), env.p(1), 1_000), trade(env.p(2), env.p(1), 3_000, n=1)])
    env.ledger.withdraw(env.p(3), DEPOSIT // 3)


@pytest.fixture(scope="module")
def base_env() -> MarketEnv:
    env = MarketEnv.build(connect(), n_participants=5)
    _spread(env)
    return env


@pytest.fixture
def env(base_env: MarketEnv) -> Iterator[MarketEnv]:
    yield from snapshot_env(base_env)


def _one_by_one(env: MarketEnv, who: list[str]) -> tuple[list[int], list[int]]:
    pairs = [env.ledger.contract.functions.balanceOf(p).call() for p in who]
    return [int(f) for f, _ in pairs], [int(x) for _, x in pairs]


@settings(max_examples=40)
@given(data=st.data())
def test_balances_of_equals_balance_of_for_any_list(
    base_env: MarketEnv, data: st.DataObject
) -> None:
    """Registered, unknown and repeated addresses, in any order, as balanceOf answers each."""
    pool = [*base_env.participants, *UNKNOWN, base_env.admin]
    who = data.draw(st.lists(st.sampled_from(pool), max_size=12))
    free, locked = base_env.ledger.contract.functions.balancesOf(who).call()
    assert (list(free), list(locked)) == _one_by_one(base_env, who)


def test_balances_differ_so_the_comparison_means_something(env: MarketEnv) -> None:
    free, locked = env.ledger.contract.functions.balancesOf(env.participants).call()
    assert len(set(zip(free, locked, strict=True))) >= 4
    assert any(locked) and all(f > 0 for f in free)


def test_unknown_addresses_and_an_empty_list_give_zeros(env: MarketEnv) -> None:
    call = env.ledger.contract.functions.balancesOf
    assert call(list(UNKNOWN)).call() == [[0] * 4, [0] * 4]
    assert call([]).call() == [[], []]


def test_an_address_word_with_high_bits_reverts_like_the_abi_decoder(env: MarketEnv) -> None:
    data = bytearray(balances_of_calldata([env.p(0), env.p(1)]))
    data[4 + 32 * 3] = 1  # the second address word's top byte
    with pytest.raises(LedgerRevert), mapped_reverts():
        env.chain.w3.eth.call({"to": env.ledger.address, "data": bytes(data)})
    data[4 + 32 * 3] = 0
    raw = env.chain.w3.eth.call({"to": env.ledger.address, "data": bytes(data)})
    assert decode_balances(bytes(raw), 2) == _one_by_one(env, [env.p(0), env.p(1)])


def test_client_balances_of_reads_every_chunk_at_one_block(
    env: MarketEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_module, "BALANCES_CHUNK", 2)
    calls: list[int] = []
    real = env.chain.view_calls

    def counted(views, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(views))
        return real(views, **kwargs)

    monkeypatch.setattr(env.chain, "view_calls", counted)
    who = [env.p(0), env.p(1).lower(), UNKNOWN[0], env.p(0), env.p(2), env.p(3)]
    block, found = env.ledger.balances_of(who)
    assert calls == [3]  # five distinct addresses in chunks of two, one request
    assert block == env.chain.block_number()
    assert set(found) == {to_checksum_address(p) for p in who}
    for p in who:
        key = to_checksum_address(p)
        assert found[key] == env.ledger.balance_of(p)
    assert found[UNKNOWN[0]] == Balance(0, 0)
    assert found[env.p(1)].locked > 0


@pytest.mark.anvil
def test_client_balances_of_on_anvil_matches_balance_of(
    anvil_chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = MarketEnv.build(anvil_chain, n_participants=4)
    _spread(env)
    monkeypatch.setattr(ledger_module, "BALANCES_CHUNK", 3)
    who = [*env.participants, *UNKNOWN[:2]]
    block, found = env.ledger.balances_of(who)
    assert block == env.chain.block_number()
    assert [found[p] for p in who] == [env.ledger.balance_of(p) for p in who]
