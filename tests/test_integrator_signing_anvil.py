"""An outside client on a real anvil: every kind of message signed only from ``GET /market``'s
templates, once with eth_account and once by anvil itself (``eth_signTypedData_v4`` over
JSON-RPC, anvil's development accounts being unlocked), and the market and settlement APIs
accept each. One anvil (the session's), one market.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount

from chain.client import LedgerClient
from chain.connection import Chain
from deploy.assembly import operator_key
from deploy.deployment import deploy_system
from ledger.eip712 import compact_signature
from market.chain_ledger import ChainLedger
from market.client import AppTransport
from market.clock import SimulatedClock
from market.http.app import create_app
from market.service import MarketService
from market.store import OrderStore
from settlement.api import settlement_router
from settlement.chain_reader import ChainReader
from settlement.service import SettlementService
from settlement.store import ReadingStore
from settlement.tx import TxSender

pytestmark = pytest.mark.anvil

PRICE = 250_000_000_000_000
DEPOSIT = 1_000 * 10**18


def eth_account_signer(key: LocalAccount, *, compact: bool = False) -> Any:
    def sign(typed: dict[str, Any]) -> str:
        signed = key.sign_message(encode_typed_data(full_message=typed))
        signature = "0x" + bytes(signed.signature).hex()
        if compact:  # EIP-2098: 64 bytes r ‖ vs
            r, vs = compact_signature(signature)
            return "0x" + (r + vs).hex()
        return signature

    return sign


def anvil_signer(rpc_url: str, address: str) -> Any:
    def sign(typed: dict[str, Any]) -> str:
        payload: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_signTypedData_v4",
            "params": [address, typed],
        }
        answer = requests.post(rpc_url, json=payload, timeout=30).json()
        assert "result" in answer, answer
        result: str = answer["result"]
        return result

    return sign


def test_every_kind_signed_from_the_templates_by_eth_account_and_by_anvil_is_accepted(
    anvil_chain: Chain, tmp_path: Path
) -> None:
    chain = anvil_chain
    assert chain.rpc_url is not None
    deployment = deploy_system(chain)
    ledger = LedgerClient.from_deployment(chain, deployment)
    operator, p1, m1, p2, m2 = chain.signers[:5]
    clock = SimulatedClock(chain.timestamp())
    market = MarketService(
        OrderStore(tmp_path / "market.db"),
        ChainLedger(ledger),
        clock,
        operator_key=operator_key(chain, ledger.sender),
    )
    reader = ChainReader(ledger)
    readings = ReadingStore(tmp_path / "settlement.db")
    settlement = SettlementService(reader, readings, TxSender(reader, chain.signers[9], readings))
    transport = AppTransport(create_app(market, extra_routers=[settlement_router(settlement)]))
    http = httpx.Client(transport=transport, base_url="http://market.test")

    info = http.get("/market").json()
    messages = info["eip712"]["messages"]
    assert info["chainId"] == 31337

    def submit(kind: str, sign: Any, message: dict[str, Any], path: str, method: str) -> Any:
        """Sign ``message`` with ``{**template, "message": message}`` as published; send it."""
        signature = sign({**messages[kind]["template"], "message": message})
        body_key = {
            "order": "order",
            "cancel": "cancel",
            "closeGate": "close",
            "meterReading": "reading",
            "registration": "registration",
        }[kind]
        response = http.request(method, path, json={body_key: message, "signature": signature})
        assert response.status_code in (200, 201, 202), (kind, response.text)
        return response.json()

    expiry = clock.now() + 3_600
    by_eth_account = {a.address: eth_account_signer(a) for a in (operator, p1, m1)}
    by_anvil = {a.address: anvil_signer(chain.rpc_url, a.address) for a in (operator, p2, m2)}
    nonce = iter(range(100, 1_000))

    # registration: each participant registers itself with its meter key
    for who, meter, signers in ((p1, m1, by_eth_account), (p2, m2, by_anvil)):
        message = {
            "participant": who.address,
            "meter": meter.address,
            "nonce": next(nonce),
            "expiry": expiry,
        }
        answer = submit("registration", signers[who.address], message, "/registrations", "POST")
        assert answer["status"] == "registered"
        assert ledger.participant_info(who.address).meter == meter.address
        ledger.transact(ledger.token.functions.mint(who.address, DEPOSIT), ledger.sender)
        ledger.deposit(who.address, DEPOSIT)

    def order(who: LocalAccount, t: int, side: int, quantity: int, price: int) -> dict[str, Any]:
        return {
            "participant": who.address,
            "interval": t,
            "side": side,
            "quantityWh": quantity,
            "pricePerWh": price,
            "nonce": next(nonce),
            "expiry": expiry,
            "node": "root",
        }

    t1 = int(info["currentInterval"]) + 2
    t2 = t1 + 1
    placed = {}
    for t in (t1, t2):
        buy = submit(
            "order",
            by_eth_account[p1.address],
            order(p1, t, 0, 2_000, PRICE + 10),
            "/orders",
            "POST",
        )
        sell = submit(
            "order", by_anvil[p2.address], order(p2, t, 1, 2_000, PRICE - 10), "/orders", "POST"
        )
        placed[t] = (buy, sell)
        assert int(buy["signature"][130:], 16) in (27, 28)
    # cancel: one extra order each, cancelled by its participant
    for who, signers in ((p1, by_eth_account), (p2, by_anvil)):
        extra = submit("order", signers[who.address], order(who, t1, 0, 10, 1), "/orders", "POST")
        cancel = {
            "participant": who.address,
            "orderHash": extra["id"],
            "nonce": next(nonce),
            "expiry": expiry,
        }
        gone = submit("cancel", signers[who.address], cancel, f"/orders/{extra['id']}", "DELETE")
        assert gone["status"] == "cancelled"
    # closeGate: the operator closes t1 signing with eth_account, t2 signing through anvil
    for t, signers in ((t1, by_eth_account), (t2, by_anvil)):
        close = {"interval": t, "nonce": next(nonce), "expiry": expiry}
        clearing = submit(
            "closeGate", signers[operator.address], close, f"/intervals/{t}/close", "POST"
        )
        assert clearing["state"] == "committed" and clearing["volumeWh"] == 2_000
    published = http.get(f"/intervals/{t1}/orders").json()["orders"]
    assert {o["id"] for o in published} == {o["id"] for o in placed[t1]}
    # meterReading: after delivery, each meter signs its participant's reading
    _, end = ledger.interval_window(t1)
    chain.advance_time(end - chain.timestamp() + 1)
    # (m1 sends its signature in the 64-byte compact form; it is stored canonical, 65 bytes)
    by_eth_account[m1.address] = eth_account_signer(m1, compact=True)
    for who, meter, signers, imported, exported in (
        (p1, m1, by_eth_account, 2_100, 0),
        (p2, m2, by_anvil, 0, 1_900),
    ):
        reading = {
            "participant": who.address,
            "interval": t1,
            "importedWh": imported,
            "exportedWh": exported,
        }
        stored = submit("meterReading", signers[meter.address], reading, "/meter-readings", "POST")
        assert stored["status"] == "queued" and stored["meter"] == meter.address
        assert len(stored["signature"]) == 132 and int(stored["signature"][130:], 16) in (27, 28)
    http.close()
    transport.close()
