"""EnergyMarket participants, meter keys, terms, roles, pause and constructor checks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account import Account
from test_ledger_support import MarketEnv, raises, snapshot_env, trade

from chain.connection import connect
from chain.errors import DeploymentError
from deploy.deployment import DEFAULT_MARKET_TERMS, deploy_contract
from ledger.contract_errors import (
    AccessControlUnauthorizedAccount,
    EnforcedPause,
    ExpectedPause,
    InvalidTerms,
    ParticipantAlreadyRegistered,
    ParticipantNotRegistered,
    TermsChangePending,
    ZeroAddress,
)
from ledger.records import Terms
from ledger.roles import GUARDIAN_ROLE, OPERATOR_ROLE, REGISTRAR_ROLE


@pytest.fixture(scope="module")
def base_env() -> MarketEnv:
    return MarketEnv.build(connect(), n_participants=3)


@pytest.fixture
def env(base_env: MarketEnv) -> Iterator[MarketEnv]:
    yield from snapshot_env(base_env)


def test_deploy_system_grants_every_role_to_the_deployer(env: MarketEnv) -> None:
    for role in (OPERATOR_ROLE, REGISTRAR_ROLE, GUARDIAN_ROLE, b"\x00" * 32):
        assert env.ledger.has_role(role, env.admin)
    assert env.ledger.terms() == Terms(*DEFAULT_MARKET_TERMS)
    assert env.ledger.epoch() % 900 == 0 and env.ledger.interval_seconds() == 900


def test_register_assigns_dense_indices_and_emits_event(env: MarketEnv) -> None:
    new = env.chain.accounts[8]
    meter = Account.create().address
    receipt = env.ledger.register_participant(new, meter)
    (ev,) = env.ledger.events(receipt, "ParticipantRegistered")
    assert ev["participantIndex"] == 3 == env.ledger.participant_info(new).participant_index
    assert env.ledger.participant_count() == 4


def test_register_twice_reverts(env: MarketEnv) -> None:
    with raises(ParticipantAlreadyRegistered, participant=env.p(0)):
        env.ledger.register_participant(env.p(0), Account.create().address)


def test_register_zero_addresses_revert(env: MarketEnv) -> None:
    with raises(ZeroAddress):
        env.ledger.register_participant("0x" + "00" * 20, Account.create().address)
    with raises(ZeroAddress):
        env.ledger.register_participant(env.chain.accounts[8], "0x" + "00" * 20)


def test_register_by_non_registrar_reverts(env: MarketEnv) -> None:
    with raises(AccessControlUnauthorizedAccount, account=env.p(0), needed_role=REGISTRAR_ROLE):
        env.ledger.register_participant(env.chain.accounts[8], env.p(0), sender=env.p(0))


def test_rotate_meter_replaces_the_key(env: MarketEnv) -> None:
    new_meter = Account.create().address
    env.ledger.rotate_meter(env.p(0), new_meter)
    assert env.ledger.participant_info(env.p(0)).meter == new_meter
    with raises(ZeroAddress):
        env.ledger.rotate_meter(env.p(0), "0x" + "00" * 20)
    with raises(ParticipantNotRegistered, participant=env.chain.accounts[8]):
        env.ledger.rotate_meter(env.chain.accounts[8], new_meter)


def test_deregister_keeps_index_and_balance_and_allows_reregistration(env: MarketEnv) -> None:
    env.ledger.deregister_participant(env.p(1))
    info = env.ledger.participant_info(env.p(1))
    assert not info.registered
    env.ledger.withdraw(env.p(1), 7)
    with raises(ParticipantNotRegistered, participant=env.p(1)):
        env.ledger.deregister_participant(env.p(1))
    env.ledger.register_participant(env.p(1), Account.create().address)
    assert env.ledger.participant_info(env.p(1)).participant_index == info.participant_index
    assert env.ledger.participant_count() == 3


def test_set_terms_is_admin_only_and_validated(env: MarketEnv) -> None:
    new = Terms(1, 10_000, 1)
    old = env.ledger.terms()
    near = env.next_interval()
    receipt = env.ledger.set_terms(new)
    (changed,) = env.ledger.events(receipt, "TermsChanged")
    notice = env.ledger.contract.functions.TERMS_NOTICE_SECONDS().call()
    assert changed["effectiveFrom"] == env.chain.timestamp() + notice
    # Scheduled, not in force: an interval whose orders may already be signed keeps its terms.
    assert env.ledger.terms() == env.ledger.terms_for(near) == old != new
    far = near + (notice // env.ledger.interval_seconds()) + 1
    assert env.ledger.terms_for(far) == new
    with raises(TermsChangePending, effective_from=changed["effectiveFrom"]):
        env.ledger.set_terms(Terms(2, 0, 1))  # one change at a time
    t = env.commit([trade(env.p(0), env.p(1), 10)])
    assert env.ledger.interval_info(t).penalty_price_per_wh == old.penalty_price_per_wh
    env.chain.advance_time(notice + env.ledger.interval_seconds())
    assert env.ledger.terms() == new
    with raises(InvalidTerms, tolerance_bps=10_001):
        env.ledger.set_terms(Terms(1, 10_001, 1))
    with raises(InvalidTerms, reading_window_seconds=0):
        env.ledger.set_terms(Terms(1, 0, 0))
    with raises(AccessControlUnauthorizedAccount, account=env.p(0)):
        env.ledger.set_terms(new, sender=env.p(0))


def test_pause_is_guardian_only_and_unpause_admin_only(env: MarketEnv) -> None:
    with raises(AccessControlUnauthorizedAccount, needed_role=GUARDIAN_ROLE):
        env.ledger.pause(sender=env.p(0))
    env.ledger.pause()
    assert env.ledger.paused()
    with raises(EnforcedPause):
        env.ledger.pause()
    with raises(AccessControlUnauthorizedAccount, needed_role=b"\x00" * 32):
        env.ledger.unpause(sender=env.p(0))
    env.ledger.unpause()
    with raises(ExpectedPause):
        env.ledger.unpause()


def test_constructor_rejects_zero_token_zero_length_and_bad_terms() -> None:
    chain = connect()
    admin = chain.accounts[0]
    zero = "0x" + "00" * 20
    for args in (
        (zero, admin, 0, 900, DEFAULT_MARKET_TERMS),
        (admin, zero, 0, 900, DEFAULT_MARKET_TERMS),
        (admin, admin, 0, 0, DEFAULT_MARKET_TERMS),
        (admin, admin, 0, 900, (1, 10_001, 60)),
    ):
        with pytest.raises(DeploymentError):
            deploy_contract(chain, "EnergyMarket", *args)
