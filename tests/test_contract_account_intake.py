"""A contract account (ERC-1271) places, and cancels, orders through the API.

``commitInterval`` accepts a registered contract account's order when its ``isValidSignature``
does; intake asks the same, at the chain's head, for an order whose signature does not
recover to its participant. On eth-tester, a ``SmartAccount`` (``contracts/test``) whose owner
key signs its bid through ``POST /orders`` trades against an ordinary account's ask and the
interval commits; a stranger's signature for it is refused ``signer_mismatch``. On the memory
ledger (no contract accounts): a junk signature for a registered ordinary account costs one
ask of the chain, then none for a while; a chain that fails the ask answers
``chain_unavailable``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from market_harness import PRICE, account, make_market
from test_audit_support import DEPOSIT, AuditChain, Session
from web3 import Web3

from deploy.deployment import deploy_contract
from market.client import AppTransport, MarketApiError, MarketClient, OrderSigner
from market.http.app import create_app
from market.ledger_port import LedgerCallFailed, MemoryLedger

SELLER, STRANGER = 2, 3
BID = (1_000, 260_000_000_000_000)
ASK = (1_000, 240_000_000_000_000)


@pytest.fixture(scope="module")
def base() -> AuditChain:
    return AuditChain()


@pytest.fixture
def session(base: AuditChain) -> Iterator[Session]:
    with base.session() as s:
        yield s


def _smart_account(session: Session) -> tuple[str, LocalAccount]:
    """Deploy, register and fund a SmartAccount; its address and owner key. The market
    sees the registration at its next check of the chain's facts; the test does not wait."""
    chain, ledger = session.chain, session.ledger
    owner = Account.create()
    contract, _ = deploy_contract(chain, "SmartAccount", owner.address)
    ledger.register_participant(contract.address, Account.create().address)
    admin = chain.accounts[0]
    ledger.token.functions.mint(contract.address, DEPOSIT).transact({"from": admin})
    chain.w3.eth.send_transaction(
        {"from": admin, "to": owner.address, "value": Web3.to_wei(1, "ether")}
    )
    chain.add_signer(owner)
    contract.functions.deposit(ledger.token.address, ledger.address, DEPOSIT).transact(
        {"from": owner.address}
    )
    session.service.refresh_facts()
    return str(contract.address), owner


def _refusal(call: Any) -> MarketApiError:
    with pytest.raises(MarketApiError) as caught:
        call()
    return caught.value


def test_a_smart_account_bids_through_the_api_and_its_trade_commits(session: Session) -> None:
    address, owner = _smart_account(session)
    t = session.next_interval()
    with MarketClient(app=session.app, account=owner, participant=address) as api:
        bid = api.submit_order(t, "buy", *BID, expiry=session.expiry)
        assert bid["participant"] == address and bid["status"] == "open"
        assert bid["order"]["participant"] == address
    assert session.submit(t, SELLER, "sell", *ASK)
    gate = session.service.gate_closure_at(t)
    if session.chain.timestamp() <= gate:
        session.chain.advance_time(gate - session.chain.timestamp() + 1)
    session.close_gate(t)
    assert session.committed == [t]
    trades = session.ledger.committed_trades(t)
    assert [(x.buyer, x.seller, x.quantity_wh) for x in trades] == [
        (address, session.address(SELLER), BID[0])
    ]
    assert session.ledger.balance_of(address).locked > 0
    published = session.api.interval_orders(t)
    mine = next(o for o in published["orders"] if o["id"] == bid["id"])
    assert mine["filledWh"] == BID[0]
    assert published["defaulters"] == []


def test_a_forged_signature_for_a_smart_account_is_refused(session: Session) -> None:
    address, owner = _smart_account(session)
    t = session.next_interval()
    stranger = OrderSigner(session.base.participants[STRANGER], session.service.domain, address)
    forged = stranger.order(t, "buy", *BID, expiry=session.expiry)
    err = _refusal(lambda: session.api.post_signed_order(forged))
    assert (err.status, err.code) == (403, "signer_mismatch")
    assert "does not accept it" in str(err.problem.get("detail"))
    # In a batch with the owner's own order: all or nothing, the forged one named.
    owned = OrderSigner(owner, session.service.domain, address)
    good = owned.order(t, "buy", *BID, expiry=session.expiry)
    err = _refusal(lambda: session.api.submit_orders([good, forged]))
    assert err.code == "batch_rejected"
    assert [(e["index"], e["code"]) for e in err.problem["errors"]] == [(1, "signer_mismatch")]
    assert session.api.participant_orders(address) == []
    # The owner's batch alone is taken.
    with MarketClient(app=session.app, account=owner, participant=address) as api:
        placed = api.submit_orders([good, owned.order(t, "buy", *BID, expiry=session.expiry)])
    assert [o["status"] for o in placed] == ["open", "open"]


def test_a_smart_account_cancels_with_its_owner_key_and_a_stranger_cannot(
    session: Session,
) -> None:
    address, owner = _smart_account(session)
    t = session.next_interval()
    with MarketClient(app=session.app, account=owner, participant=address) as api:
        bid = api.submit_order(t, "buy", *BID, expiry=session.expiry)
        stranger = session.base.participants[STRANGER]
        forged = OrderSigner(stranger, session.service.domain, address).cancel(bid["id"])
        err = _refusal(lambda: api._request("DELETE", f"/orders/{bid['id']}", forged))
        assert (err.status, err.code) == (403, "signer_mismatch")
        assert api.cancel_order(bid["id"])["status"] == "cancelled"


# ------------------------------------------------------------------- the memory ledger


def _post(service: Any, body: dict[str, Any]) -> httpx.Response:
    transport = AppTransport(create_app(service))
    try:
        with httpx.Client(transport=transport, base_url="http://market.test") as http:
            return http.post("/orders", json=body)
    finally:
        transport.close()


def _counting(ledger: MemoryLedger) -> list[str]:
    asked: list[str] = []
    for name in ("balances_at_head", "has_code", "accepts_signature"):
        original = getattr(ledger, name)

        def counting(*args: Any, _name: str = name, _original: Any = original) -> Any:
            asked.append(_name)
            return _original(*args)

        setattr(ledger, name, counting)
    return asked


def test_a_junk_signature_for_a_registered_account_asks_the_chain_once_then_not(
    tmp_path: Path,
) -> None:
    m = make_market(tmp_path)
    m.service.refresh_facts()  # the harness registered its participants after the start
    asked = _counting(m.ledger)
    forger = OrderSigner(account(666), m.service.domain, m.bob.account.address)
    for _ in range(3):
        answer = _post(m.service, forger.order(m.t, "buy", 10, PRICE))
        assert answer.status_code == 403 and answer.json()["code"] == "signer_mismatch"
    assert asked == ["balances_at_head", "has_code"]  # no code: not asked again for a while
    # An address never registered is refused without a question, as before.
    stranger = OrderSigner(account(666), m.service.domain, "0x" + "ab" * 20)
    answer = _post(m.service, stranger.order(m.t, "buy", 10, PRICE))
    assert answer.json()["code"] == "signer_mismatch"
    assert asked == ["balances_at_head", "has_code"]
    # Bob's own signature never asks.
    assert _post(m.service, m.bob.order(m.t, "buy", 10, PRICE)).status_code == 201
    assert asked == ["balances_at_head", "has_code"]
    assert m.service.open_order_count() == 1


def test_a_chain_that_fails_the_erc1271_ask_answers_chain_unavailable(tmp_path: Path) -> None:
    m = make_market(tmp_path)
    m.service.refresh_facts()  # the harness registered its participants after the start

    def down(*_args: Any) -> Any:
        raise LedgerCallFailed("the node did not answer")

    m.ledger.balances_at_head = down  # type: ignore[method-assign,assignment]
    forger = OrderSigner(account(666), m.service.domain, m.carol.account.address)
    answer = _post(m.service, forger.order(m.t, "buy", 10, PRICE))
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "chain_unavailable"
    assert m.service.open_order_count() == 0
