"""POST /meter-readings and GET /intervals/{t}/settlement: every refusal costs nothing.

Each bad reading is refused with ``application/problem+json`` and a stable ``code`` before it
is stored and before any gas is spent: the reading store, the chain's block number and the
settlement account's nonce are the same afterwards. The last test runs the settlement router
inside the market API, from signed orders to the settlement report.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from market_harness import fund_participants
from test_ledger_support import PRICE, MarketEnv, trade
from test_settlement_service_support import SettleEnv, settle_env

from chain.client import LedgerClient
from chain.connection import Chain, connect
from deploy.assembly import operator_key
from deploy.deployment import deploy_system
from ledger.eip712 import Domain
from ledger.records import Reading
from market.chain_ledger import ChainLedger
from market.client import AppTransport, MarketClient, OrderSigner
from market.clock import SimulatedClock
from market.http.app import create_app
from market.service import MarketService
from market.store import OrderStore
from settlement.api import create_settlement_app, settlement_router
from settlement.chain_reader import ChainReader
from settlement.config import SettlementConfig
from settlement.service import SettlementService
from settlement.store import ReadingStore
from settlement.tx import TxSender

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def base() -> MarketEnv:
    return MarketEnv.build(connect(), n_participants=6)


@dataclass
class Api:
    env: SettleEnv
    http: httpx.Client
    t: int

    def post(self, body: Any) -> httpx.Response:
        return self.http.post("/meter-readings", json=body)

    def snapshot(self) -> tuple[int, int, int]:
        """Readings stored, latest block, settlement account nonce."""
        stored = sum(len(self.env.service.store.readings(t)) for t in range(self.t - 3, self.t + 3))
        return stored, int(self.env.chain.w3.eth.block_number), self.env.settler_nonce()

    def refused(self, body: Any, status: int, code: str) -> dict[str, Any]:
        before = self.snapshot()
        response = self.post(body)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        problem: dict[str, Any] = response.json()
        assert problem["code"] == code, problem
        assert problem["status"] == status and problem["detail"]
        assert self.snapshot() == before  # nothing stored, no transaction, no gas
        return problem


@pytest.fixture
def api(base: MarketEnv, tmp_path: Path) -> Iterator[Api]:
    a = base.participants[0]
    config = SettlementConfig(meter_limits_wh={a.lower(): 5_000})
    for env in settle_env(base, tmp_path, config):
        t = env.commit([trade(env.p(0), env.p(1), 600), trade(env.p(2), env.p(3), 400, n=1)])
        env.market.to_reading_window(t)
        transport = AppTransport(create_settlement_app(env.service))
        with httpx.Client(transport=transport, base_url="http://settle.local") as http:
            yield Api(env, http, t)
        transport.close()


def test_a_good_reading_is_accepted_as_queued(api: Api) -> None:
    env, t = api.env, api.t
    response = api.post(env.body(t, env.p(1), 580, 3))
    assert response.status_code == 202, response.text
    view = response.json()
    assert view["status"] == "queued" and view["exportedWh"] == 580 and view["importedWh"] == 3
    assert view["meter"] == env.market.meters[env.p(1)].address
    assert view["participant"] == env.p(1)
    # Energy may come as decimal strings, as wallets produce them.
    body = env.body(t, env.p(3), 400)
    body["reading"]["exportedWh"] = "400"
    assert api.post(body).status_code == 202


def test_malformed_signature_is_refused(api: Api) -> None:
    env, t = api.env, api.t
    body = env.body(t, env.p(1), 580)
    api.refused({**body, "signature": "0x1234"}, 400, "bad_signature")
    raw = bytes.fromhex(body["signature"][2:])
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high_s = (n - int.from_bytes(raw[32:64], "big")).to_bytes(32, "big")
    flipped = raw[:32] + high_s + bytes([55 - raw[64]])  # the same key, malleated (EIP-2)
    # Well-formed (the schema's pattern) but malleated: it verifies as no key, 403.
    api.refused({**body, "signature": "0x" + flipped.hex()}, 403, "unverifiable_signature")
    api.refused({**body, "signature": 17}, 400, "bad_signature")


def test_reading_signed_by_another_key_is_refused(api: Api) -> None:
    env, t = api.env, api.t
    stranger = Account.create()
    api.refused(env.body(t, env.p(1), 580, meter=stranger), 403, "meter_mismatch")
    # The participant's own trading key is not its meter key either.
    own_key = env.chain.signers[env.chain.accounts.index(env.p(1))]
    api.refused(env.body(t, env.p(1), 580, meter=own_key), 403, "meter_mismatch")
    # A reading signed for another market (another domain) recovers another address.
    other = OrderSigner(env.market.meters[env.p(1)], Domain(env.chain.chain_id, "0x" + "11" * 20))
    api.refused(other.reading(env.p(1), t, 0, 580), 403, "meter_mismatch")


def test_reading_for_an_unregistered_meter_is_refused(api: Api) -> None:
    env, t = api.env, api.t
    nobody = Account.create()
    api.refused(env.body(t, nobody.address, 10, meter=nobody), 403, "unregistered_meter")
    env.market.ledger.deregister_participant(env.p(5))
    api.refused(env.body(t, env.p(5), 10), 403, "unregistered_meter")


def test_reading_for_a_future_interval_is_refused(api: Api) -> None:
    env, t = api.env, api.t
    api.refused(env.body(t + 1, env.p(1), 10), 409, "reading_too_early")
    later = env.commit([trade(env.p(0), env.p(1), 5)], t + 2)
    api.refused(env.body(later, env.p(1), 5), 409, "reading_too_early")


def test_reading_for_an_interval_never_committed_is_refused(api: Api) -> None:
    env, t = api.env, api.t
    api.refused(env.body(t - 1, env.p(1), 10), 404, "interval_not_committed")


def test_reading_after_the_deadline_is_refused(api: Api) -> None:
    env, t = api.env, api.t
    env.market.to_deadline(t)
    problem = api.refused(env.body(t, env.p(1), 580), 409, "reading_window_closed")
    assert str(env.market.ledger.interval_info(t).deadline) in problem["detail"]


def test_reading_for_a_settled_interval_is_refused(api: Api) -> None:
    env, t = api.env, api.t
    env.market.to_deadline(t)
    env.service.tick()
    assert env.market.ledger.interval_info(t).status == "settled"
    api.refused(env.body(t, env.p(1), 580), 409, "interval_settled")


def test_duplicate_reading_is_refused_queued_or_on_chain(api: Api) -> None:
    env, t = api.env, api.t
    body = env.body(t, env.p(1), 580)
    assert api.post(body).status_code == 202
    problem = api.refused(body, 409, "reading_duplicate")
    assert problem["existing"]["status"] == "queued"
    api.refused(env.body(t, env.p(1), 600), 409, "reading_duplicate")  # a different value
    # Relayed straight to the contract by someone else: the chain already has it.
    relayed = env.market.sign(Reading(env.p(3), t, 0, 400))
    env.market.ledger.submit_readings(t, [relayed], sender=env.chain.accounts[8])
    api.refused(env.body(t, env.p(3), 400), 409, "reading_duplicate")


def test_physically_absurd_readings_are_refused(api: Api) -> None:
    env, t = api.env, api.t
    api.refused(env.body(t, env.p(1), 10_000_001), 422, "reading_out_of_bounds")
    api.refused(env.body(t, env.p(1), 5, imported_wh=10**9), 422, "reading_out_of_bounds")
    # Participant 0's meter has its own, lower limit (5 kWh per interval).
    api.refused(env.body(t, env.p(0), 5_001), 422, "reading_out_of_bounds")
    assert api.post(env.body(t, env.p(0), 5_000)).status_code == 202
    body = env.body(t, env.p(1), 5)
    body["reading"]["exportedWh"] = 2**64
    api.refused(body, 422, "out_of_bounds")


def test_malformed_bodies_are_refused(api: Api) -> None:
    env, t = api.env, api.t
    body = env.body(t, env.p(1), 580)
    missing = {"reading": {k: v for k, v in body["reading"].items() if k != "importedWh"}}
    api.refused({**missing, "signature": body["signature"]}, 422, "invalid_request")
    api.refused({**body, "extra": 1}, 422, "invalid_request")
    negative = {**body, "reading": {**body["reading"], "exportedWh": -5}}
    api.refused(negative, 422, "invalid_request")
    fractional = {**body, "reading": {**body["reading"], "exportedWh": 1.5}}
    api.refused(fractional, 422, "invalid_request")
    before = api.snapshot()
    response = api.http.post(
        "/meter-readings", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["code"] == "malformed_json"
    assert api.snapshot() == before


def test_unknown_paths_and_methods_are_refused_as_the_market_api_refuses_them(api: Api) -> None:
    before = api.snapshot()
    wrong_method = api.http.put("/meter-readings")
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == "method_not_allowed"
    assert wrong_method.headers["content-type"].startswith(PROBLEM)
    assert wrong_method.headers["allow"] == "POST"
    unknown = api.http.get("/nowhere")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    assert unknown.json()["instance"] == "/nowhere"
    assert api.snapshot() == before


def test_settlement_report_and_overview(api: Api) -> None:
    env, t = api.env, api.t
    assert api.post(env.body(t, env.p(1), 580)).status_code == 202
    env.service.tick()
    env.market.to_deadline(t)
    env.service.tick()
    response = api.http.get(f"/intervals/{t}/settlement")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["status"] == "settled" and report["ok"] is True
    assert report["service"]["state"] == "settled"
    assert report["service"]["readings"]["onchain"] == 1
    first, second = report["trades"]
    assert (first["deliveredWh"], second["deliveredWh"]) == (580, 0)
    assert first["paid"] == str(580 * PRICE) and first["paid"] == first["model"]["paid"]
    assert int(second["penalty"]) == 400 * env.market.ledger.terms().penalty_price_per_wh
    assert sum(int(p["netChange"]) for p in report["participants"]) == 0
    overview = api.http.get("/settlement").json()
    assert overview["settler"] == env.settler.address
    assert [(i["interval"], i["state"]) for i in overview["intervals"]] == [(t, "settled")]
    missing = api.http.get(f"/intervals/{t - 1}/settlement")
    assert missing.status_code == 404 and missing.json()["code"] == "interval_not_committed"


def test_only_the_sellers_reading_goes_on_chain_and_every_reading_is_published(api: Api) -> None:
    """On the contract: buyer p(0) and seller p(1) send readings; only the seller's is
    submitted; both are published, signed, with whether each is on-chain, and the report
    shows the buyer's import from the off-chain reading."""
    env, t = api.env, api.t
    buyer, seller = env.p(0), env.p(1)
    response = api.http.post(
        "/meter-readings:batch",
        json={"readings": [env.body(t, buyer, 0, 640), env.body(t, seller, 580, 3)]},
    )
    assert response.status_code == 202, response.text
    env.service.tick()
    onchain = env.service.chain.submitted_readings(t)
    assert set(onchain) == {seller.lower()}
    published = api.http.get(f"/intervals/{t}/readings")
    assert published.status_code == 200, published.text
    body = published.json()
    assert (body["interval"], body["market"]) == (t, env.service.market)
    views = {r["participant"]: r for r in body["readings"]}
    assert {w: (v["status"], v["onChain"]) for w, v in views.items()} == {
        buyer: ("offchain", False),
        seller: ("onchain", True),
    }
    assert views[buyer]["importedWh"] == 640 and views[buyer]["signature"].startswith("0x")
    assert views[buyer]["meter"] == env.market.meters[buyer].address
    env.market.to_deadline(t)
    env.service.tick()
    report = api.http.get(f"/intervals/{t}/settlement").json()
    assert report["ok"] is True and report["status"] == "settled"
    assert report["service"]["readings"]["offchain"] == 1
    lines = {p["participant"]: p for p in report["participants"]}
    assert (lines[buyer]["importedWh"], lines[buyer]["reading"]) == (640, "offchain")
    assert (lines[seller]["exportedWh"], lines[seller]["reading"]) == (580, "onchain")
    assert api.http.get(f"/intervals/{t + 5}/readings").json()["readings"] == []


# --------------------------------------------------------------------------- inside the market


def test_market_api_with_the_settlement_router_from_orders_to_report(
    chain: Chain, tmp_path: Path
) -> None:
    deployment = deploy_system(chain)
    ledger = LedgerClient.from_deployment(chain, deployment)
    alice, bob = chain.signers[1], chain.signers[2]
    fund_participants(ledger, [alice, bob], 1_000 * 10**18)  # each is its own meter
    clock = SimulatedClock(chain.timestamp())
    market = MarketService(
        OrderStore(tmp_path / "market.db"),
        ChainLedger(ledger),
        clock,
        operator_key=operator_key(chain, ledger.sender),
    )
    reader = ChainReader(ledger)
    store = ReadingStore(tmp_path / "settlement.db")
    settlement = SettlementService(reader, store, TxSender(reader, chain.signers[9], store))
    app = create_app(market, extra_routers=[settlement_router(settlement)])
    with (
        MarketClient(app=app, account=alice) as buyer,
        MarketClient(app=app, account=bob) as seller,
    ):
        t = buyer.next_interval()
        buyer.submit_order(t, "buy", 2_000, PRICE + 10)
        seller.submit_order(t, "sell", 2_000, PRICE - 10)
        clock.set(market.gate_closure_at(t))
        assert market.tick() == [t]
        _, end = ledger.interval_window(t)
        chain.advance_time(end - chain.timestamp())
        queued = seller.submit_reading(bob, bob.address, t, 0, 1_500)
        assert queued["status"] == "queued"
        buyer.submit_reading(alice, alice.address, t, 2_100, 0)
        settlement.tick()
        chain.advance_time(ledger.interval_info(t).deadline - chain.timestamp())
        settlement.tick()
        report = buyer._http.get(f"/intervals/{t}/settlement").json()
    assert report["ok"] is True and report["status"] == "settled", report["checks"]
    (only,) = report["trades"]
    assert only["deliveredWh"] == 1_500 and only["model"]["deliveredWh"] == 1_500
    price = int(only["pricePerWh"])
    assert ledger.balance_of(bob.address).locked == 0
    assert only["paid"] == str(1_500 * price)
    assert {p["participant"]: p["importedWh"] for p in report["participants"]} == {
        alice.address: 2_100,
        bob.address: 0,
    }
