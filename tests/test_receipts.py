"""Operator-signed receipts: every accepted order and cancel gets one, it verifies from
``GET /market``'s template alone, it is stored and survives a restart, and it is published.

The market runs on the in-memory ledger (``market_harness``) and is reached through its
HTTP API in-process; receipts are checked with eth_account only, as a participant would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from market_harness import OPERATOR, PRICE, Market, account, make_market

from deploy.assembly import OPERATOR_KEY_ENV, operator_key
from market.client import AppTransport
from market.http.app import create_app
from market.receipts import OperatorKeyMismatch
from market.service import MarketService
from market.store import OrderStore


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Market, httpx.Client]]:
    m = make_market(tmp_path, deposit=10_000 * PRICE)
    transport = AppTransport(create_app(m.service))
    http = httpx.Client(transport=transport, base_url="http://market.test")
    yield m, http
    http.close()
    transport.close()


def signer_of(market: dict[str, Any], kind: str, message: dict[str, Any], signature: str) -> str:
    """Who signed ``message`` of ``kind``, from GET /market's template and eth_account alone."""
    template = market["eip712"]["messages"][kind]["template"]
    typed = encode_typed_data(full_message={**template, "message": message})
    signer: str = Account.recover_message(typed, signature=signature)
    return signer


def order_receipt_signer(market: dict[str, Any], order: dict[str, Any]) -> str:
    receipt = order["receipt"]
    assert receipt["seq"] == order["seq"]
    message = {"orderId": order["id"], "seq": receipt["seq"], "receivedAt": receipt["receivedAt"]}
    return signer_of(market, "orderReceipt", message, receipt["signature"])


def test_an_order_and_a_batch_are_answered_with_the_operators_receipts(
    env: tuple[Market, httpx.Client],
) -> None:
    m, http = env
    market = http.get("/market").json()
    assert market["operator"] == OPERATOR.address
    messages = market["eip712"]["messages"]
    for kind in ("orderReceipt", "cancelReceipt"):
        assert messages[kind]["submit"] is None
        assert "operator" in messages[kind]["signer"]
        assert "GET /intervals/{t}/orders" in messages[kind]["returnedBy"]
    one = http.post("/orders", json=m.alice.order(m.t, "buy", 1_000, PRICE))
    assert one.status_code == 201, one.text
    placed = one.json()
    assert placed["receipt"]["receivedAt"] == placed["receivedAt"] == m.clock.now()
    assert order_receipt_signer(market, placed) == OPERATOR.address
    batch = http.post(
        "/orders:batch",
        json={"orders": [m.bob.order(m.t, "sell", 500 + i, PRICE + i) for i in range(3)]},
    )
    assert batch.status_code == 201, batch.text
    orders = batch.json()["orders"]
    assert [o["seq"] for o in orders] == [placed["seq"] + 1 + i for i in range(3)]
    assert {order_receipt_signer(market, o) for o in orders} == {OPERATOR.address}
    # A receipt binds its seq: the same signature over another seq is someone else's.
    forged = {**placed, "receipt": {**placed["receipt"], "seq": placed["seq"] + 1}}
    forged["seq"] = placed["seq"] + 1
    assert order_receipt_signer(market, forged) != OPERATOR.address
    assert http.get(f"/orders/{placed['id']}").json()["receipt"] == placed["receipt"]


def test_a_cancel_is_answered_with_its_receipt_in_the_one_arrival_sequence(
    env: tuple[Market, httpx.Client],
) -> None:
    m, http = env
    market = http.get("/market").json()
    placed = http.post("/orders", json=m.alice.order(m.t, "buy", 1_000, PRICE)).json()
    m.clock.advance(3)
    body = m.alice.cancel(placed["id"])
    gone = http.request("DELETE", f"/orders/{placed['id']}", json=body)
    assert gone.status_code == 200, gone.text
    record = gone.json()["cancel"]
    receipt = record["receipt"]
    assert receipt["seq"] == placed["seq"] + 1
    assert receipt["receivedAt"] == placed["receivedAt"] + 3 == record["at"]
    # cancelDigest is the digest of the participant's signed Cancel, as eth_account hashes it
    template = market["eip712"]["messages"]["cancel"]["template"]
    typed = encode_typed_data(full_message={**template, "message": body["cancel"]})
    signed = Account.sign_message(typed, m.alice.account.key)
    assert record["digest"] == signed.message_hash.to_0x_hex()
    message = {
        "orderId": placed["id"],
        "cancelDigest": record["digest"],
        "seq": receipt["seq"],
        "receivedAt": receipt["receivedAt"],
    }
    assert signer_of(market, "cancelReceipt", message, receipt["signature"]) == OPERATOR.address
    after = http.post("/orders", json=m.alice.order(m.t, "buy", 1_000, PRICE)).json()
    assert after["seq"] == receipt["seq"] + 1


def test_stored_receipts_survive_a_restart(env: tuple[Market, httpx.Client]) -> None:
    m, http = env
    placed = http.post("/orders", json=m.alice.order(m.t, "buy", 1_000, PRICE)).json()
    kept = http.post("/orders", json=m.bob.order(m.t, "sell", 1_000, PRICE * 2)).json()
    gone = http.request("DELETE", f"/orders/{placed['id']}", json=m.alice.cancel(placed["id"]))
    cancel = gone.json()["cancel"]
    service = m.reopen()
    with httpx.Client(
        transport=AppTransport(create_app(service)), base_url="http://market.test"
    ) as again:
        assert again.get(f"/orders/{kept['id']}").json()["receipt"] == kept["receipt"]
        assert again.get(f"/orders/{placed['id']}").json()["cancel"] == cancel
        fresh = again.post("/orders", json=m.carol.order(m.t, "buy", 10, PRICE)).json()
    assert fresh["seq"] == cancel["receipt"]["seq"] + 1  # the sequence counts the cancel


def test_the_published_set_carries_receipts_cancels_and_refusals(
    env: tuple[Market, httpx.Client],
) -> None:
    m, http = env
    market = http.get("/market").json()
    t = m.t
    bid = http.post("/orders", json=m.alice.order(t, "buy", 1_000, PRICE)).json()
    ask = http.post("/orders", json=m.bob.order(t, "sell", 1_000, PRICE)).json()
    spare = http.post("/orders", json=m.alice.order(t, "buy", 10, PRICE - 1)).json()
    gone = http.request("DELETE", f"/orders/{spare['id']}", json=m.alice.cancel(spare["id"]))
    short = http.post("/orders", json=m.carol.order(t, "buy", 100, PRICE)).json()
    m.ledger.free[m.carol.account.address.lower()] = 0  # carol withdrew everything
    m.close_due(t)
    book = http.get(f"/intervals/{t}/orders").json()
    assert [o["id"] for o in book["orders"]] == [bid["id"], ask["id"]]
    assert [o["receipt"] for o in book["orders"]] == [bid["receipt"], ask["receipt"]]
    assert {order_receipt_signer(market, o) for o in book["orders"]} == {OPERATOR.address}
    (cancelled,) = book["cancels"]
    assert cancelled["id"] == spare["id"] and cancelled["receipt"] == spare["receipt"]
    assert cancelled["cancelReceipt"] == gone.json()["cancel"]["receipt"]
    assert cancelled["cancelReceipt"]["receivedAt"] < book["closedAt"]
    (refused,) = book["refused"]
    assert refused["id"] == short["id"] and refused["receipt"] == short["receipt"]
    assert refused["reason"].startswith("insufficient_collateral: free 0 < needed ")


def test_a_cancel_at_the_gate_closure_time_is_refused_before_the_tick(
    env: tuple[Market, httpx.Client],
) -> None:
    m, http = env
    placed = http.post("/orders", json=m.alice.order(m.t, "buy", 1_000, PRICE)).json()
    m.clock.set(m.service.gate_closure_at(m.t))  # the gate has closed; no tick has run yet
    late = http.request("DELETE", f"/orders/{placed['id']}", json=m.alice.cancel(placed["id"]))
    assert late.status_code == 409, late.text
    assert late.json()["code"] == "interval_closed"


def test_the_service_does_not_start_without_the_operators_key(tmp_path: Path) -> None:
    m = make_market(tmp_path)
    m.service.store.close()
    for key in (None, account(5).key):
        with pytest.raises(OperatorKeyMismatch):
            MarketService(OrderStore(m.db), m.ledger, m.clock, operator_key=key)
    assert MarketService(OrderStore(m.db), m.ledger, m.clock, operator_key=OPERATOR.key)


def test_the_operator_key_comes_from_the_chains_signers_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Signers:  # a dev chain: raw keys from the environment are read
        signers = (account(7),)

        def env_key(self, name: str) -> str | None:
            return os.environ.get(name)

    chain: Any = Signers()
    assert operator_key(chain, account(7).address) == bytes(account(7).key)
    monkeypatch.delenv(OPERATOR_KEY_ENV, raising=False)
    with pytest.raises(OperatorKeyMismatch, match=OPERATOR_KEY_ENV):
        operator_key(chain, OPERATOR.address)
    monkeypatch.setenv(OPERATOR_KEY_ENV, OPERATOR.key.hex())
    assert operator_key(chain, OPERATOR.address) == OPERATOR.key.hex()
