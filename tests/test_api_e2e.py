"""End to end on the embedded chain: sign, submit over HTTP, close the gate, check the chain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from market_harness import fund_participants

from chain.client import LedgerClient
from chain.connection import Chain
from deploy.assembly import operator_key
from deploy.deployment import deploy_system
from ledger.eip712 import Domain, digest, recover
from ledger.merkle import MerkleTree, leaf_hash, verify
from market.chain_ledger import ChainLedger
from market.client import MarketApiError, MarketClient
from market.clock import SimulatedClock
from market.http.app import create_app
from market.service import MarketService
from market.store import OrderStore

TOKEN = 10**18
PRICE = 250_000_000_000_000


@pytest.fixture
def deployed(chain: Chain, tmp_path: Path) -> Any:
    deployment = deploy_system(chain)
    ledger_client = LedgerClient.from_deployment(chain, deployment)
    participants = chain.signers[1:4]
    fund_participants(ledger_client, participants, 1_000 * TOKEN)
    clock = SimulatedClock(chain.timestamp())
    service = MarketService(
        OrderStore(tmp_path / "m.db"),
        ChainLedger(ledger_client),
        clock,
        operator_key=operator_key(chain, ledger_client.sender),
    )
    app = create_app(service)
    clients = [MarketClient(app=app, account=who) for who in participants]
    yield service, ledger_client, clock, clients
    for client in clients:
        client.close()


def test_market_publishes_the_contracts_domain_timing_and_terms(deployed: Any) -> None:
    _service, ledger, _, (alice, *_) = deployed
    market = alice.market()
    assert market["chainId"] == ledger.chain.chain_id
    assert market["contracts"]["EnergyMarket"] == ledger.address
    assert market["intervalSeconds"] == ledger.interval_seconds()
    assert market["epoch"] == ledger.epoch()
    assert market["terms"]["penaltyPricePerWh"] == str(ledger.terms().penalty_price_per_wh)
    # The order domain is the contract's own EIP-712 domain (EIP-5267).
    _, name, version, chain_id, contract, _, _ = ledger.contract.functions.eip712Domain().call()
    assert market["eip712"]["domain"] == {
        "name": name,
        "version": version,
        "chainId": chain_id,
        "verifyingContract": contract,
    }


def test_signed_orders_clear_at_gate_closure_and_the_chain_holds_the_published_result(
    deployed: Any,
) -> None:
    service, ledger, clock, (alice, bob, carol) = deployed
    t = alice.next_interval()
    bid = alice.submit_order(t, "buy", 3_000, PRICE + 10_000)
    bid2 = carol.submit_order(t, "buy", 1_000, PRICE - 50_000)
    ask = bob.submit_order(t, "sell", 2_500, PRICE - 10_000)
    cancelled = carol.submit_order(t, "buy", 70, PRICE)
    carol.cancel_order(cancelled["id"])
    assert alice.book(t)["bids"][0] == {
        "pricePerWh": str(PRICE + 10_000),
        "quantityWh": 3_000,
        "orders": 1,
    }
    with pytest.raises(MarketApiError) as caught:
        alice.interval_orders(t)
    assert caught.value.code == "interval_not_closed"

    before = {c.account.address: ledger.balance_of(c.account.address) for c in (alice, bob)}
    clock.set(service.gate_closure_at(t))
    assert service.tick() == [t]

    published = alice.interval_orders(t)
    clearing = alice.clearing(t)
    assert {o["id"] for o in published["orders"]} == {bid["id"], bid2["id"], ask["id"]}
    # Anyone can re-verify every published signature against the published domain.
    d = published["domain"]
    domain = Domain(d["chainId"], d["verifyingContract"], d["name"], d["version"])
    for o in published["orders"]:
        order_hash = digest(domain.separator, "Order", o["order"])
        assert "0x" + order_hash.hex() == o["id"]
        assert recover(order_hash, o["signature"]) == o["order"]["participant"].lower()

    info = ledger.interval_info(t)
    assert info.status == "committed"
    assert "0x" + info.book_root.hex() == published["bookRoot"] == clearing["bookRoot"]
    root = MerkleTree.of([bytes.fromhex(o["id"][2:]) for o in published["orders"]]).root
    assert info.book_root == root
    assert info.trade_count == len(clearing["trades"]) == 1
    assert clearing["volumeWh"] == 2_500
    price = int(clearing["pricePerWh"])
    assert PRICE - 10_000 <= price <= PRICE + 10_000

    on_chain = ledger.committed_trades(t)
    assert [
        (
            tr.buyer,
            tr.seller,
            tr.quantity_wh,
            tr.price_per_wh,
            "0x" + tr.buy_order_id.hex(),
            "0x" + tr.sell_order_id.hex(),
        )
        for tr in on_chain
    ] == [
        (
            x["buyer"],
            x["seller"],
            x["quantityWh"],
            int(x["pricePerWh"]),
            x["buyOrder"],
            x["sellOrder"],
        )
        for x in clearing["trades"]
    ]
    assert clearing["commit"]["txHash"].startswith("0x")

    # Collateral locked on-chain is exactly what the trades need.
    penalty = ledger.terms().penalty_price_per_wh
    after = {c.account.address: ledger.balance_of(c.account.address) for c in (alice, bob)}
    a, b = alice.account.address, bob.account.address
    assert after[a].locked - before[a].locked == 2_500 * price
    assert after[b].locked - before[b].locked == 2_500 * penalty
    assert alice.participant()["lockedBalance"] == str(after[a].locked)

    for o in published["orders"]:
        proof = alice.order_proof(o["id"])
        leaf = leaf_hash(bytes.fromhex(o["id"][2:]))
        assert proof["leaf"] == "0x" + leaf.hex()
        assert verify([bytes.fromhex(p[2:]) for p in proof["proof"]], info.book_root, leaf)
    assert alice.get_order(bid["id"])["filledWh"] == 2_500
    assert alice.get_order(cancelled["id"])["status"] == "cancelled"


def test_orders_of_an_unfunded_participant_and_a_stranger_are_refused(
    deployed: Any, chain: Chain
) -> None:
    _, _ledger, _, (alice, *_) = deployed
    t = alice.next_interval()
    with pytest.raises(MarketApiError) as caught:
        alice.submit_order(t, "buy", 10**9, PRICE)
    assert caught.value.code == "insufficient_collateral"
    stranger = chain.signers[7]
    with pytest.raises(MarketApiError) as caught:
        alice.submit_order(t, "buy", 10, PRICE, account=stranger)
    assert caught.value.code == "unregistered_participant"


def test_operator_closes_a_gate_early_over_http_and_others_cannot(
    deployed: Any, chain: Chain
) -> None:
    _service, ledger, _, (alice, bob, _) = deployed
    t = alice.next_interval()
    alice.submit_order(t, "buy", 100, PRICE)
    bob.submit_order(t, "sell", 100, PRICE)
    with pytest.raises(MarketApiError) as caught:
        alice.close_gate(t, alice.account)
    assert caught.value.code == "not_operator"
    operator = chain.signers[0]
    result = alice.close_gate(t, operator)
    assert result["state"] == "committed" and result["volumeWh"] == 100
    assert ledger.interval_info(t).status == "committed"
