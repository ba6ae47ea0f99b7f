"""EnergyMarket escrow: deposit, withdraw, conservation, pause, reentrancy, odd tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account import Account
from test_ledger_support import DEPOSIT, MarketEnv, raises, snapshot_env, trade

from chain.client import LedgerClient
from chain.connection import connect
from deploy.deployment import DEFAULT_MARKET_TERMS, deploy_contract
from ledger.contract_errors import (
    BalanceOverflow,
    EnforcedPause,
    InsufficientFreeBalance,
    ParticipantNotRegistered,
    ReentrancyGuardReentrantCall,
    ZeroAmount,
)
from ledger.roles import REGISTRAR_ROLE


@pytest.fixture(scope="module")
def base_env() -> MarketEnv:
    return MarketEnv.build(connect(), n_participants=4)


@pytest.fixture
def env(base_env: MarketEnv) -> Iterator[MarketEnv]:
    yield from snapshot_env(base_env)


def test_deposit_credits_free_balance_and_emits_event(env: MarketEnv) -> None:
    receipt = env.ledger.deposit(env.p(0), 123)
    assert env.ledger.balance_of(env.p(0)).free == DEPOSIT + 123
    (event,) = env.ledger.events(receipt, "Deposited")
    assert event == {"participant": env.p(0), "amount": 123}
    assert env.ledger.total_escrowed() == env.token_balance() == 4 * DEPOSIT + 123


def test_deposit_of_zero_reverts(env: MarketEnv) -> None:
    with raises(ZeroAmount):
        env.ledger.deposit(env.p(0), 0)


def test_deposit_by_unregistered_address_reverts(env: MarketEnv) -> None:
    outsider = env.chain.accounts[9]
    env.ledger.token.functions.mint(outsider, 10).transact({"from": env.admin})
    with raises(ParticipantNotRegistered, participant=outsider):
        env.ledger.deposit(outsider, 10)


def test_deposit_above_uint128_reverts_with_balance_overflow(env: MarketEnv) -> None:
    big = 2**128
    env.ledger.token.functions.mint(env.p(1), big).transact({"from": env.admin})
    with raises(BalanceOverflow, participant=env.p(1), amount=DEPOSIT + big):
        env.ledger.deposit(env.p(1), big)


def test_withdraw_sends_tokens_and_debits_free(env: MarketEnv) -> None:
    before = env.ledger.token.functions.balanceOf(env.p(0)).call()
    env.ledger.withdraw(env.p(0), 1_000)
    assert env.ledger.token.functions.balanceOf(env.p(0)).call() == before + 1_000
    assert env.ledger.balance_of(env.p(0)).free == DEPOSIT - 1_000
    assert env.ledger.total_escrowed() == env.token_balance()


def test_withdraw_of_exactly_the_free_balance_succeeds(env: MarketEnv) -> None:
    env.ledger.withdraw(env.p(2), DEPOSIT)
    assert env.ledger.balance_of(env.p(2)).free == 0


def test_withdraw_above_free_balance_reverts(env: MarketEnv) -> None:
    with raises(InsufficientFreeBalance, participant=env.p(0), requested=DEPOSIT + 1, free=DEPOSIT):
        env.ledger.withdraw(env.p(0), DEPOSIT + 1)


def test_withdraw_cannot_touch_locked_balance(env: MarketEnv) -> None:
    env.commit([trade(env.p(0), env.p(1), 1_000_000)])
    free = env.ledger.balance_of(env.p(0)).free
    with raises(InsufficientFreeBalance, free=free):
        env.ledger.withdraw(env.p(0), free + 1)


def test_withdraw_of_zero_reverts(env: MarketEnv) -> None:
    with raises(ZeroAmount):
        env.ledger.withdraw(env.p(0), 0)


def test_pause_blocks_deposit_but_never_withdraw(env: MarketEnv) -> None:
    env.ledger.pause()
    with raises(EnforcedPause):
        env.ledger.deposit(env.p(0), 1)
    env.ledger.withdraw(env.p(0), 5)
    assert env.ledger.balance_of(env.p(0)).free == DEPOSIT - 5


def _market_with(chain, token_name: str):  # type: ignore[no-untyped-def]
    admin = chain.accounts[0]
    token, _ = deploy_contract(chain, token_name)
    _, record = deploy_contract(
        chain, "EnergyMarket", token.address, admin, 0, 900, DEFAULT_MARKET_TERMS
    )
    ledger = LedgerClient(chain, record.address)
    ledger.grant_role(REGISTRAR_ROLE, admin)
    user = chain.accounts[1]
    ledger.register_participant(user, Account.create().address)
    token.functions.mint(user, 10**21).transact({"from": admin})
    return ledger, token, user


def test_reentrant_token_cannot_reenter_withdraw() -> None:
    chain = connect()
    ledger, token, user = _market_with(chain, "ReentrantToken")
    ledger.deposit(user, 1_000)
    # The token calls market.withdraw(1) from inside the market's transfer to the user.
    token.functions.arm(ledger.address, ledger.contract.encode_abi("withdraw", args=[1])).transact(
        {"from": user}
    )
    with raises(ReentrancyGuardReentrantCall):
        ledger.withdraw(user, 500)
    assert ledger.balance_of(user).free == 1_000
    assert token.functions.balanceOf(ledger.address).call() == 1_000


def test_reentrant_token_cannot_reenter_deposit() -> None:
    chain = connect()
    ledger, token, user = _market_with(chain, "ReentrantToken")
    ledger.approve(user, 10**6)
    token.functions.arm(ledger.address, ledger.contract.encode_abi("deposit", args=[1])).transact(
        {"from": user}
    )
    with raises(ReentrancyGuardReentrantCall):
        ledger.deposit(user, 1_000, approve=False)
    assert ledger.total_escrowed() == 0


def test_fee_on_transfer_token_credits_what_arrived() -> None:
    chain = connect()
    ledger, token, user = _market_with(chain, "FeeOnTransferToken")
    ledger.deposit(user, 10_000)
    assert ledger.balance_of(user).free == 9_900
    assert ledger.total_escrowed() == token.functions.balanceOf(ledger.address).call() == 9_900
