"""``GET /market`` and intake follow the chain: the terms, the pause, the operator's role
and registrations are read again after the contract's events change them (checked at most
every ``chain_facts_seconds``), never frozen at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from market_harness import PRICE, fund_participants, make_market, signed

from chain.client import LedgerClient
from chain.connection import Chain
from deploy.assembly import operator_key
from deploy.deployment import deploy_system
from ledger.records import Terms
from ledger.roles import OPERATOR_ROLE
from market.chain_ledger import ChainLedger
from market.client import MarketApiError, MarketClient
from market.clock import SimulatedClock
from market.http.app import create_app
from market.service import MarketConfig, MarketService
from market.store import OrderStore

TOKEN = 10**18
DEPOSIT = 1_000 * TOKEN


@pytest.fixture
def on_chain(chain: Chain, tmp_path: Path) -> Any:
    """A market service over the EnergyMarket on eth-tester that checks the chain's facts on
    every request (``chain_facts_seconds=0``), and an API client per participant."""
    deployment = deploy_system(chain)
    ledger = LedgerClient.from_deployment(chain, deployment)
    participants = chain.signers[1:4]
    fund_participants(ledger, participants, DEPOSIT)
    clock = SimulatedClock(chain.timestamp())
    config = MarketConfig(chain_facts_seconds=0.0)
    service = MarketService(
        OrderStore(tmp_path / "m.db"),
        ChainLedger(ledger),
        clock,
        config,
        operator_key=operator_key(chain, ledger.sender),
    )
    clients = [MarketClient(app=create_app(service), account=who) for who in participants]
    yield service, ledger, clients
    for client in clients:
        client.close()


def _terms_in_force(ledger: LedgerClient, terms: Terms) -> None:
    """Schedule ``terms`` and move the chain past their notice (the service's clock stays)."""
    ledger.set_terms(terms)
    notice = int(ledger.contract.functions.TERMS_NOTICE_SECONDS().call())
    ledger.chain.advance_time(notice + ledger.interval_seconds())


def test_market_follows_set_terms_pause_and_the_operator_role_on_chain(on_chain: Any) -> None:
    _service, ledger, (alice, *_) = on_chain
    before = alice.market(refresh=True)
    old = ledger.terms()
    assert before["terms"]["readingWindowSeconds"] == old.reading_window_seconds != 90

    _terms_in_force(ledger, Terms(old.penalty_price_per_wh * 2, 250, 90))
    after = alice.market(refresh=True)
    assert after["terms"] == {
        "penaltyPricePerWh": str(old.penalty_price_per_wh * 2),
        "toleranceBps": 250,
        "readingWindowSeconds": 90,
    }
    assert after["chainFactsBlock"] > before["chainFactsBlock"]

    assert after["paused"] is False and after["operatorActive"] is True
    ledger.pause()
    assert alice.market(refresh=True)["paused"] is True
    ledger.unpause()
    assert alice.market(refresh=True)["paused"] is False
    operator = ledger.sender
    ledger.transact(ledger.contract.functions.revokeRole(OPERATOR_ROLE, operator))
    assert alice.market(refresh=True)["operatorActive"] is False


def test_intake_checks_collateral_at_the_penalty_price_now_on_chain(on_chain: Any) -> None:
    _service, ledger, (alice, bob, _carol) = on_chain
    t = alice.next_interval()
    old = ledger.terms()
    # An ask locks quantity * penalty price: half of bob's deposit at the old price.
    half = DEPOSIT // (2 * old.penalty_price_per_wh)
    bob.submit_order(t, "sell", half, PRICE)
    # At the old price the same ask again would use the other half: acceptable. At three
    # times the price it would lock 1.5 deposits: refused, with the usual collateral code.
    _terms_in_force(ledger, Terms(old.penalty_price_per_wh * 3, old.tolerance_bps, 90))
    with pytest.raises(MarketApiError) as caught:
        bob.submit_order(t, "sell", half, PRICE)
    assert caught.value.code == "insufficient_collateral"
    # And the other way: an ask too big at the raised price is accepted once it falls again.
    big = DEPOSIT // old.penalty_price_per_wh
    with pytest.raises(MarketApiError) as caught:
        alice.submit_order(t, "sell", big, PRICE)
    assert caught.value.code == "insufficient_collateral"
    _terms_in_force(ledger, Terms(old.penalty_price_per_wh, old.tolerance_bps, 90))
    assert alice.submit_order(t, "sell", big, PRICE)["status"] == "open"


def test_intake_sees_a_deregistration_on_chain(on_chain: Any) -> None:
    _service, ledger, (alice, *_) = on_chain
    t = alice.next_interval()
    alice.submit_order(t, "buy", 10, PRICE)
    ledger.deregister_participant(alice.account.address)
    with pytest.raises(MarketApiError) as caught:
        alice.submit_order(t, "buy", 10, PRICE)
    assert caught.value.code == "unregistered_participant"


def test_chain_facts_are_checked_at_most_once_per_period(tmp_path: Path) -> None:
    m = make_market(tmp_path, config=MarketConfig(chain_facts_seconds=3600.0))
    calls: list[int] = []
    original = m.ledger.facts

    def counting() -> Any:
        calls.append(1)
        return original()

    m.ledger.facts = counting  # type: ignore[method-assign]
    old = m.service.terms()
    m.ledger.set_terms(Terms(old.penalty_price_per_wh + 1, 0, 90))
    for i in range(50):  # over several intervals: one holds at most 16 orders of one key
        m.service.submit_order(signed(m.alice.order(m.t + i % 5, "buy", 10, PRICE)))
        assert m.service.terms() == old
    assert calls == []
    assert m.service.refresh_facts().terms.reading_window_seconds == 90
    assert m.service.terms().reading_window_seconds == 90
    assert m.service.collateral.terms.penalty_price_per_wh == old.penalty_price_per_wh + 1
