"""POST /meter-readings:batch: every reading checked as POST /meter-readings checks one, all
stored in one transaction or none, and the chain read once per batch and interval.

Each refusal test sends a batch with one bad reading among good ones and checks that the whole
batch is refused as ``batch_rejected`` with the bad reading's index and code, that nothing was
stored and no gas spent, and that the bad reading alone gets the same code from
``POST /meter-readings`` (the two paths are one code path; this keeps them so).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from test_ledger_support import MarketEnv, trade
from test_settlement_service_support import SettleEnv, settle_env

from chain.connection import connect
from ledger.records import Reading
from market.client import AppTransport, MarketApiError, MarketClient
from settlement.api import create_settlement_app
from settlement.config import SettlementConfig
from settlement.store import DuplicateKey, ReadingStore, StoredReading

PROBLEM = "application/problem+json"
BATCH = "/meter-readings:batch"


@pytest.fixture(scope="module")
def base() -> MarketEnv:
    return MarketEnv.build(connect(), n_participants=6)


@dataclass
class BatchApi:
    env: SettleEnv
    http: httpx.Client
    t: int

    def post(self, bodies: list[dict[str, Any]]) -> httpx.Response:
        return self.http.post(BATCH, json={"readings": bodies})

    def snapshot(self) -> tuple[int, int, int]:
        """Readings stored, latest block, settlement account nonce."""
        store = self.env.service.store
        stored = sum(len(store.readings(t)) for t in range(self.t - 3, self.t + 4))
        return stored, int(self.env.chain.w3.eth.block_number), self.env.settler_nonce()

    def problem(self, response: httpx.Response, status: int, code: str) -> dict[str, Any]:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        problem: dict[str, Any] = response.json()
        assert problem["code"] == code and problem["status"] == status, problem
        assert problem["detail"]
        return problem

    def refused(
        self, bodies: list[dict[str, Any]], bad: dict[int, str], status: int
    ) -> dict[str, Any]:
        """The batch is refused with ``status``, listing exactly ``bad`` (index → code);
        nothing is stored and no gas spent."""
        before = self.snapshot()
        problem = self.problem(self.post(bodies), status, "batch_rejected")
        assert {e["index"]: e["code"] for e in problem["errors"]} == bad, problem
        first = min(bad)
        assert f"readings[{first}]" in problem["detail"]
        assert problem["errors"][0]["status"] == status
        assert self.snapshot() == before
        return problem

    def alone(self, body: dict[str, Any], status: int, code: str) -> None:
        """``POST /meter-readings`` refuses ``body`` with the same status and code."""
        before = self.snapshot()
        self.problem(self.http.post("/meter-readings", json=body), status, code)
        assert self.snapshot() == before


def _api(env: SettleEnv, t: int) -> Iterator[BatchApi]:
    transport = AppTransport(create_settlement_app(env.service))
    with httpx.Client(transport=transport, base_url="http://settle.local") as http:
        yield BatchApi(env, http, t)
    transport.close()


@pytest.fixture
def api(base: MarketEnv, tmp_path: Path) -> Iterator[BatchApi]:
    a = base.participants[0]
    config = SettlementConfig(meter_limits_wh={a.lower(): 5_000}, max_intake_readings=4)
    for env in settle_env(base, tmp_path, config):
        t = env.commit([trade(env.p(0), env.p(1), 600), trade(env.p(2), env.p(3), 400, n=1)])
        env.market.to_reading_window(t)
        yield from _api(env, t)


def good(api: BatchApi) -> list[dict[str, Any]]:
    """Three valid readings of interval ``t``."""
    env, t = api.env, api.t
    return [env.body(t, env.p(1), 580, 3), env.body(t, env.p(3), 400), env.body(t, env.p(0), 9)]


# --------------------------------------------------------------------------- accepted


def test_a_valid_batch_is_stored_durably_in_request_order_without_gas(api: BatchApi) -> None:
    env, t = api.env, api.t
    bodies = good(api)
    bodies[1]["reading"]["exportedWh"] = "400"  # decimal strings, as wallets send them
    _, block, nonce = api.snapshot()
    response = api.post(bodies)
    assert response.status_code == 202, response.text
    views = response.json()["readings"]
    assert [v["participant"] for v in views] == [env.p(1), env.p(3), env.p(0)]
    assert [(v["importedWh"], v["exportedWh"]) for v in views] == [(3, 580), (0, 400), (0, 9)]
    assert {v["status"] for v in views} == {"queued"}
    assert views[0]["meter"] == env.market.meters[env.p(1)].address
    assert views[0]["signature"] == bodies[0]["signature"].lower()
    # Durable: a second connection to the file (as after a crash) sees every one.
    reopened = ReadingStore(env.db)
    try:
        stored = {r.participant: r for r in reopened.readings(t)}
    finally:
        reopened.close()
    assert set(stored) == {env.p(i).lower() for i in (0, 1, 3)}
    assert stored[env.p(1).lower()].exported_wh == 580
    assert api.snapshot()[1:] == (block, nonce)  # no transaction, no gas
    # And they settle like readings that came one at a time.
    env.service.tick()
    env.market.to_deadline(t)
    env.service.tick()
    report = api.http.get(f"/intervals/{t}/settlement").json()
    assert report["ok"] is True
    counts = report["service"]["readings"]
    assert (counts["onchain"], counts["offchain"]) == (2, 1)  # buyer p(0)'s is kept off-chain


def test_readings_of_several_intervals_go_in_one_batch(api: BatchApi) -> None:
    env, t = api.env, api.t
    other = env.commit([trade(env.p(4), env.p(5), 50)], t + 1)
    env.market.to_reading_window(other)
    bodies = [env.body(t, env.p(1), 580), env.body(other, env.p(5), 50)]
    response = api.post(bodies)
    assert response.status_code == 202, response.text
    assert [v["interval"] for v in response.json()["readings"]] == [t, other]
    assert env.service.store.get_interval(other) is not None
    assert len(env.service.store.readings(t)) == len(env.service.store.readings(other)) == 1


def test_the_chain_is_read_once_per_batch_and_interval(api: BatchApi) -> None:
    env = api.env
    reader = env.service.reader
    calls: dict[str, int] = {}

    def counted(name: str) -> None:
        method: Callable[..., Any] = getattr(reader, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] = calls.get(name, 0) + 1
            return method(*args, **kwargs)

        setattr(reader, name, wrapper)

    for name in ("now_and_latest", "window", "submitted_readings", "interval"):
        counted(name)
    bodies = good(api)
    for body in bodies:  # registrations are cached from here on
        env.service.intake.meter(body["reading"]["participant"])
    assert api.post(bodies).status_code == 202
    assert calls["now_and_latest"] == 1
    assert calls["window"] == 1
    assert calls["submitted_readings"] == 1
    assert calls.get("interval", 0) <= 1  # intervalInfo, cached once committed


def test_client_helper_posts_a_batch(api: BatchApi) -> None:
    with MarketClient(app=create_settlement_app(api.env.service)) as client:
        stored = client.submit_readings(good(api))
        assert [s["status"] for s in stored] == ["queued"] * 3
        with pytest.raises(MarketApiError) as caught:
            client.submit_readings(good(api))
    assert caught.value.status == 409 and caught.value.code == "batch_rejected"


# --------------------------------------------------------------------------- refused


def test_bad_signature_refuses_the_batch(api: BatchApi) -> None:
    bodies = good(api)
    bodies[1] = {**bodies[1], "signature": "0x1234"}
    api.refused(bodies, {1: "bad_signature"}, 400)
    api.alone(bodies[1], 400, "bad_signature")


def test_reading_not_signed_by_the_meter_refuses_the_batch(api: BatchApi) -> None:
    env, t = api.env, api.t
    bodies = good(api)
    bodies[2] = env.body(t, env.p(0), 9, meter=Account.create())
    api.refused(bodies, {2: "meter_mismatch"}, 403)
    api.alone(bodies[2], 403, "meter_mismatch")
    nobody = Account.create()
    bodies[2] = env.body(t, nobody.address, 9, meter=nobody)
    api.refused(bodies, {2: "unregistered_meter"}, 403)
    api.alone(bodies[2], 403, "unregistered_meter")


def test_reading_out_of_bounds_refuses_the_batch(api: BatchApi) -> None:
    env, t = api.env, api.t
    bodies = good(api)
    bodies[0] = env.body(t, env.p(0), 5_001)  # participant 0's meter: 5 kWh at most
    api.refused(bodies, {0: "reading_out_of_bounds"}, 422)
    api.alone(bodies[0], 422, "reading_out_of_bounds")
    bodies[0] = env.body(t, env.p(1), 5)
    bodies[0]["reading"]["exportedWh"] = 2**64
    api.refused(bodies[:1] + bodies[1:2], {0: "out_of_bounds"}, 422)
    api.alone(bodies[0], 422, "out_of_bounds")


def test_reading_for_an_interval_not_ended_refuses_the_batch(api: BatchApi) -> None:
    env, t = api.env, api.t
    bodies = good(api)
    bodies.insert(1, env.body(t + 1, env.p(1), 10))
    api.refused(bodies, {1: "reading_too_early"}, 409)
    api.alone(bodies[1], 409, "reading_too_early")


def test_reading_for_an_interval_never_committed_refuses_the_batch(api: BatchApi) -> None:
    env, t = api.env, api.t
    bodies = good(api)
    bodies[2] = env.body(t - 1, env.p(1), 10)
    api.refused(bodies, {2: "interval_not_committed"}, 404)
    api.alone(bodies[2], 404, "interval_not_committed")


def test_readings_after_the_deadline_are_refused_each(api: BatchApi) -> None:
    env, t = api.env, api.t
    bodies = good(api)
    env.market.to_deadline(t)
    closed = {i: "reading_window_closed" for i in range(3)}
    problem = api.refused(bodies, closed, 409)
    assert str(env.market.ledger.interval_info(t).deadline) in problem["errors"][0]["detail"]
    api.alone(bodies[0], 409, "reading_window_closed")
    env.service.tick()
    assert env.market.ledger.interval_info(t).status == "settled"
    api.refused(bodies[:2], {0: "interval_settled", 1: "interval_settled"}, 409)
    api.alone(bodies[0], 409, "interval_settled")


def test_reading_already_stored_or_on_chain_refuses_the_batch(api: BatchApi) -> None:
    env, t = api.env, api.t
    bodies = good(api)
    assert api.http.post("/meter-readings", json=bodies[1]).status_code == 202
    problem = api.refused(bodies, {1: "reading_duplicate"}, 409)
    assert problem["errors"][0]["existing"]["status"] == "queued"
    api.alone(bodies[1], 409, "reading_duplicate")
    # Relayed straight to the contract by someone else: the chain already has it.
    relayed = env.market.sign(Reading(env.p(0), t, 0, 9))
    env.market.ledger.submit_readings(t, [relayed], sender=env.chain.accounts[8])
    api.refused([bodies[0], bodies[2]], {1: "reading_duplicate"}, 409)
    api.alone(bodies[2], 409, "reading_duplicate")


def test_two_readings_of_one_participant_refuse_the_batch(api: BatchApi) -> None:
    env, t = api.env, api.t
    bodies = good(api)
    bodies.append(env.body(t, env.p(1), 600))  # the same participant and interval as [0]
    problem = api.refused(bodies, {3: "reading_duplicate"}, 409)
    assert "readings[0]" in problem["errors"][0]["detail"]
    # The same reading twice is a duplicate too.
    api.refused([bodies[1], bodies[1]], {1: "reading_duplicate"}, 409)


def test_every_bad_reading_is_listed_and_the_status_is_the_first_ones(api: BatchApi) -> None:
    env, t = api.env, api.t
    bodies = good(api)
    bodies[0] = env.body(t - 1, env.p(1), 10)  # 404
    nobody = Account.create()
    bodies[2] = env.body(t, nobody.address, 9, meter=nobody)  # 403
    api.refused(bodies, {0: "interval_not_committed", 2: "unregistered_meter"}, 404)


def test_a_batch_with_a_reading_failing_the_checks_without_chain_lists_only_those(
    api: BatchApi,
) -> None:
    """Intended since the chain is read only for signed readings: a reading that fails a
    check needing no chain (here its signature) refuses the batch at once, and the others
    (one for an interval never committed) are not checked against the chain."""
    env, t = api.env, api.t
    bodies = good(api)
    bodies[0] = env.body(t - 1, env.p(1), 10)  # would be 404, but is not looked at
    bodies[2] = {**bodies[2], "signature": "0x12"}  # 400
    api.refused(bodies, {2: "bad_signature"}, 400)


def test_a_duplicate_found_only_by_the_store_refuses_the_batch(
    api: BatchApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests racing with the same reading: both pass the checks, the store's key
    refuses the second, and the answer still names the reading."""
    env = api.env
    bodies = good(api)
    assert api.http.post("/meter-readings", json=bodies[2]).status_code == 202
    monkeypatch.setattr(env.service.store, "readings_of", lambda _t, _p: {})
    before = api.snapshot()
    problem = api.problem(api.post(bodies), 409, "batch_rejected")
    assert [(e["index"], e["code"]) for e in problem["errors"]] == [(2, "reading_duplicate")]
    assert api.snapshot() == before
    api.problem(api.http.post("/meter-readings", json=bodies[2]), 409, "reading_duplicate")


def test_too_many_readings_are_refused_with_422(api: BatchApi) -> None:
    env, t = api.env, api.t
    bodies = [*good(api), env.body(t, env.p(2), 1), env.body(t, env.p(4), 1)]  # 5 > 4
    before = api.snapshot()
    problem = api.problem(api.post(bodies), 422, "batch_too_large")
    assert "at most 4" in problem["detail"]
    assert api.snapshot() == before
    assert api.post(bodies[:4]).status_code == 202  # exactly the limit is fine
    assert api.http.get("/settlement").json()["maxIntakeReadings"] == 4


def test_malformed_batches_are_refused_as_a_single_reading_would_be(api: BatchApi) -> None:
    bodies = good(api)
    before = api.snapshot()

    def shape(body: Any, status: int, code: str) -> dict[str, Any]:
        problem = api.problem(api.http.post(BATCH, json=body), status, code)
        assert api.snapshot() == before
        return problem

    shape({"readings": []}, 422, "invalid_request")
    shape({"readings": bodies[0]}, 422, "invalid_request")
    shape({"readings": bodies, "extra": 1}, 422, "invalid_request")
    shape({"reading": bodies}, 422, "invalid_request")
    missing = {
        "reading": {k: v for k, v in bodies[1]["reading"].items() if k != "importedWh"},
        "signature": bodies[1]["signature"],
    }
    problem = shape({"readings": [bodies[0], missing]}, 422, "invalid_request")
    assert "readings.1" in problem["detail"]
    fractional = {**bodies[1], "reading": {**bodies[1]["reading"], "exportedWh": 1.5}}
    shape({"readings": [bodies[0], fractional]}, 422, "invalid_request")
    # A negative value passes the JSON types, so the service refuses it by index.
    negative = {**bodies[1], "reading": {**bodies[1]["reading"], "exportedWh": -5}}
    api.refused([bodies[0], negative], {1: "invalid_request"}, 422)
    api.alone(negative, 422, "invalid_request")
    response = api.http.post(
        BATCH, content=b'{"readings": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["code"] == "malformed_json"
    assert api.snapshot() == before


# --------------------------------------------------------------------------- documented


def test_openapi_documents_the_batch_with_its_models_and_problems(api: BatchApi) -> None:
    document = api.http.get("/openapi.json").json()
    post = document["paths"][BATCH]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/ReadingBatch")
    answers = post["responses"]
    assert answers["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/ReadingList")
    for status in ("400", "403", "404", "409", "413", "422", "503"):
        assert PROBLEM in answers[status]["content"], status
    schemas = document["components"]["schemas"]
    assert schemas["ReadingBatch"]["properties"]["readings"]["items"]["$ref"].endswith(
        "/SignedReading"
    )
    assert schemas["ReadingList"]["properties"]["readings"]["items"]["$ref"].endswith(
        "/ReadingView"
    )


# --------------------------------------------------------------------------- the store


def _reading(t: int, i: int) -> StoredReading:
    return StoredReading(t, f"0x{i:040x}", 1, 2, "0x" + "ab" * 65, "0x" + "cd" * 20, i, 9)


def test_store_writes_many_readings_and_their_interval_all_or_none(tmp_path: Path) -> None:
    store = ReadingStore(tmp_path / "batch.db")
    store.insert_readings([_reading(5, i) for i in range(3)], {5: (2, 900)}, now=40)
    row = store.get_interval(5)
    assert row is not None and (row.state, row.trade_count, row.deadline) == ("waiting", 2, 900)
    with pytest.raises(DuplicateKey) as caught:
        store.insert_readings([_reading(6, 0), _reading(5, 7), _reading(5, 2)], {6: (1, 950)}, 41)
    assert (caught.value.interval, caught.value.participant) == (5, f"0x{2:040x}")
    assert store.readings(6) == [] and store.get_interval(6) is None
    assert [r.participant_index for r in store.readings(5)] == [0, 1, 2]
    assert set(store.readings_of(5, [f"0x{i:040x}" for i in (1, 2, 7)])) == {
        f"0x{1:040x}",
        f"0x{2:040x}",
    }
    store.close()
