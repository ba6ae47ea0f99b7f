"""Every kind of bad input gets a 4xx problem+json with a stable code and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from market_harness import PRICE, Market, account, make_market

from ledger.eip712 import Domain
from market.client import AppTransport, OrderSigner
from market.http.app import create_app
from market.service import MarketConfig


@pytest.fixture(params=["intake", "fastapi"])
def env(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    m = make_market(tmp_path, deposit=10_000 * PRICE, config=MarketConfig(max_ahead_intervals=8))
    app = create_app(m.service, max_body_bytes=64 * 1024)
    if request.param == "fastapi":
        app.intake = None  # POST /orders and /orders:batch through FastAPI's routes instead
    transport = AppTransport(app)
    http = httpx.Client(transport=transport, base_url="http://market.test")
    # Some state to protect: an open order of Alice and one of Bob in an interval that closes.
    m.open = http.post("/orders", json=m.alice.order(m.t, "buy", 100, PRICE)).json()
    m.closing_t = m.t
    m.bob_open = http.post("/orders", json=m.bob.order(m.t + 1, "sell", 10, PRICE)).json()
    yield m, http
    http.close()
    transport.close()


def state(m: Market) -> tuple[Any, ...]:
    """Everything a refused request must leave untouched."""
    store = m.service.store
    rows = store._read("SELECT id, status, filled_wh, cancel FROM orders ORDER BY seq")
    nonces = sorted(store.used_nonces())
    intervals = store._read("SELECT * FROM intervals ORDER BY interval")
    return (
        rows,
        nonces,
        intervals,
        sorted(m.service.intake.nonces),
        dict(m.service.book.reserved),
        m.service.intake.seq,
        dict(m.ledger.free),
        dict(m.ledger.commits),
    )


def expect(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code and problem["status"] == status
    assert problem["type"] == f"urn:wattledger:problem:{code}"
    assert problem["detail"] and problem["title"]
    return problem


def order_with(
    m: Market, signer: Any = None, sign_after: Any = True, **changes: Any
) -> dict[str, Any]:
    """An order body with message fields changed, re-signed unless ``sign_after`` is False."""
    signer = signer or m.alice
    body = signer.order(m.t + 1, "buy", 10, PRICE)
    message = {**body["order"], **changes}
    if sign_after:
        from ledger import eip712 as signing

        digest = signing.digest(signer.domain.separator, "Order", message)
        body = {"order": message, "signature": signing.sign_digest(signer._key, digest)}
    else:
        body = {"order": message, "signature": body["signature"]}
    return body


def post(http: httpx.Client, body: Any, path: str = "/orders") -> httpx.Response:
    return http.post(path, json=body)


_json_ct: dict[str, str] = {"content-type": "application/json"}

CASES: dict[str, tuple[Any, int, str]] = {
    # name: (build the request, status, code)
    "malformed_json": (
        lambda m, h: h.post("/orders", content=b'{"order": ', headers=_json_ct),
        400,
        "malformed_json",
    ),
    "not_an_object": (lambda m, h: post(h, [1, 2]), 422, "invalid_request"),
    "empty_body": (
        lambda m, h: h.post("/orders", content=b"", headers=_json_ct),
        422,
        "invalid_request",
    ),
    "not_utf8": (
        lambda m, h: h.post("/orders", content=b'{"order": "\xff"}', headers=_json_ct),
        400,
        "malformed_json",
    ),
    "integer_beyond_the_json_parser": (
        lambda m, h: h.post("/orders", content=b"1" * 5000, headers=_json_ct),
        400,
        "malformed_json",
    ),
    "batch_not_a_list": (
        lambda m, h: post(h, {"orders": 5}, "/orders:batch"),
        422,
        "invalid_request",
    ),
    "batch_with_a_wrong_type": (
        lambda m, h: post(
            h,
            {
                "orders": [
                    m.alice.order(m.t, "buy", 10, PRICE),
                    order_with(m, sign_after=False, quantityWh=1.5),
                ]
            },
            "/orders:batch",
        ),
        422,
        "invalid_quantity",
    ),
    "batch_with_an_extra_field": (
        lambda m, h: post(
            h, {"orders": [m.alice.order(m.t, "buy", 10, PRICE)], "x": 1}, "/orders:batch"
        ),
        422,
        "invalid_request",
    ),
    "wrong_type_reported_before_a_later_missing_field": (
        lambda m, h: post(
            h,
            {
                "order": _drop(order_with(m, sign_after=False, side=[1])["order"], "nonce"),
                "signature": "0x",
            },
        ),
        422,
        "invalid_side",
    ),
    "not_json_content_type": (
        lambda m, h: h.post("/orders", content=b"hello", headers={"content-type": "text/plain"}),
        422,
        "invalid_request",
    ),
    "missing_field": (
        lambda m, h: post(
            h,
            {
                "order": _drop(m.alice.order(m.t, "buy", 10, PRICE)["order"], "nonce"),
                "signature": "0x",
            },
        ),
        422,
        "invalid_request",
    ),
    "missing_signature": (
        lambda m, h: post(h, {"order": m.alice.order(m.t, "buy", 10, PRICE)["order"]}),
        422,
        "invalid_request",
    ),
    "extra_field_in_order": (
        lambda m, h: post(h, order_with(m, sign_after=False, zone="north")),
        422,
        "invalid_request",
    ),
    "extra_top_level_field": (
        lambda m, h: post(h, {**m.alice.order(m.t, "buy", 10, PRICE), "priority": 1}),
        422,
        "invalid_request",
    ),
    "interval_wrong_type": (
        lambda m, h: post(h, order_with(m, sign_after=False, interval=[1])),
        422,
        "invalid_request",
    ),
    "participant_wrong_type": (
        lambda m, h: post(h, order_with(m, sign_after=False, participant=12)),
        422,
        "invalid_request",
    ),
    "participant_not_an_address": (
        lambda m, h: post(h, order_with(m, sign_after=False, participant="0x1234")),
        422,
        "invalid_request",
    ),
    "quantity_float": (
        lambda m, h: post(h, order_with(m, sign_after=False, quantityWh=1.5)),
        422,
        "invalid_quantity",
    ),
    "quantity_decimal_string": (
        lambda m, h: post(h, order_with(m, sign_after=False, quantityWh="1.5")),
        422,
        "invalid_quantity",
    ),
    "quantity_zero": (lambda m, h: post(h, order_with(m, quantityWh=0)), 422, "invalid_quantity"),
    "quantity_negative": (
        lambda m, h: post(h, order_with(m, sign_after=False, quantityWh=-5)),
        422,
        "invalid_quantity",
    ),
    "quantity_bool": (
        lambda m, h: post(h, order_with(m, sign_after=False, quantityWh=True)),
        422,
        "invalid_quantity",
    ),
    "price_zero": (lambda m, h: post(h, order_with(m, pricePerWh="0")), 422, "invalid_price"),
    "price_negative": (
        lambda m, h: post(h, order_with(m, sign_after=False, pricePerWh="-1")),
        422,
        "invalid_price",
    ),
    "price_float": (
        lambda m, h: post(h, order_with(m, sign_after=False, pricePerWh=0.25)),
        422,
        "invalid_price",
    ),
    "price_null": (
        lambda m, h: post(h, order_with(m, sign_after=False, pricePerWh=None)),
        422,
        "invalid_price",
    ),
    "side_two": (lambda m, h: post(h, order_with(m, side=2)), 422, "invalid_side"),
    "side_word": (
        lambda m, h: post(h, order_with(m, sign_after=False, side="buy")),
        422,
        "invalid_side",
    ),
    "quantity_above_bound": (
        lambda m, h: post(h, order_with(m, quantityWh=2**40)),
        422,
        "out_of_bounds",
    ),
    "quantity_above_uint64": (
        lambda m, h: post(h, order_with(m, sign_after=False, quantityWh=2**64)),
        422,
        "out_of_bounds",
    ),
    "price_above_bound": (
        lambda m, h: post(h, order_with(m, pricePerWh=str(2**63))),
        422,
        "out_of_bounds",
    ),
    "nonce_above_uint64": (
        lambda m, h: post(h, order_with(m, sign_after=False, nonce=str(2**64))),
        422,
        "out_of_bounds",
    ),
    "huge_number": (
        lambda m, h: post(h, order_with(m, sign_after=False, interval=10**400)),
        422,
        "out_of_bounds",
    ),
    "signature_not_hex": (
        lambda m, h: post(
            h, {**m.alice.order(m.t, "buy", 10, PRICE), "signature": "0x" + "zz" * 65}
        ),
        400,
        "bad_signature",
    ),
    "signature_with_whitespace": (
        lambda m, h: post(
            h, {**m.alice.order(m.t, "buy", 10, PRICE), "signature": "0x" + "ab" * 64 + "  "}
        ),
        400,
        "bad_signature",
    ),
    "signature_short": (
        lambda m, h: post(h, {**m.alice.order(m.t, "buy", 10, PRICE), "signature": "0xabcd"}),
        400,
        "bad_signature",
    ),
    "signature_wrong_type": (
        lambda m, h: post(h, {**m.alice.order(m.t, "buy", 10, PRICE), "signature": 7}),
        400,
        "bad_signature",
    ),
    "signature_by_another_key": (
        lambda m, h: post(
            h,
            {
                "order": m.alice.order(m.t, "buy", 10, PRICE)["order"],
                "signature": m.bob.order(m.t, "buy", 10, PRICE)["signature"],
            },
        ),
        403,
        "signer_mismatch",
    ),
    "tampered_message": (
        lambda m, h: post(h, order_with(m, sign_after=False, quantityWh=11)),
        403,
        "signer_mismatch",
    ),
    "signed_for_another_chain": (
        lambda m, h: post(h, _foreign(m, chain_id=1).order(m.t, "buy", 10, PRICE)),
        403,
        "signer_mismatch",
    ),
    "signed_for_another_contract": (
        lambda m, h: post(h, _foreign(m, contract="0x" + "42" * 20).order(m.t, "buy", 10, PRICE)),
        403,
        "signer_mismatch",
    ),
    "unregistered_participant": (
        lambda m, h: post(h, OrderSigner(account(77), m.service.domain).order(m.t, "buy", 10, 1)),
        403,
        "unregistered_participant",
    ),
    "replayed_order": (lambda m, h: post(h, _replay(m)), 409, "nonce_used"),
    "expired_order": (
        lambda m, h: post(h, m.alice.order(m.t, "buy", 10, PRICE, expiry=m.clock.now())),
        422,
        "order_expired",
    ),
    "interval_closed": (
        lambda m, h: post(h, m.alice.order(m.service.current_interval(), "buy", 10, PRICE)),
        409,
        "interval_closed",
    ),
    "interval_too_far": (
        lambda m, h: post(h, m.alice.order(m.service.current_interval() + 9, "buy", 10, PRICE)),
        422,
        "interval_too_far",
    ),
    "insufficient_collateral": (
        lambda m, h: post(h, m.alice.order(m.t, "buy", 9_901, PRICE)),
        409,
        "insufficient_collateral",
    ),
    "self_cross": (
        lambda m, h: post(h, m.alice.order(m.t, "sell", 50, PRICE)),
        409,
        "self_cross",
    ),
    "batch_with_one_bad_order": (
        lambda m, h: post(
            h,
            {"orders": [m.alice.order(m.t, "buy", 10, PRICE), order_with(m, quantityWh=0)]},
            "/orders:batch",
        ),
        422,
        "batch_rejected",
    ),
    "batch_empty": (lambda m, h: post(h, {"orders": []}, "/orders:batch"), 422, "invalid_request"),
    "batch_too_large": (
        lambda m, h: post(
            h, {"orders": [m.alice.order(m.t, "buy", 10, PRICE)] * 1001}, "/orders:batch"
        ),
        413,
        "body_too_large",
    ),
    "oversize_body": (
        lambda m, h: h.post("/orders", content=b" " * 70_000, headers=_json_ct),
        413,
        "body_too_large",
    ),
    "oversize_chunked_body": (
        lambda m, h: h.post("/orders", content=iter([b" " * 40_000] * 2), headers=_json_ct),
        413,
        "body_too_large",
    ),
    "cancel_someone_elses_order": (
        lambda m, h: h.request(
            "DELETE", f"/orders/{m.open['id']}", json=m.bob.cancel(m.open["id"])
        ),
        403,
        "not_your_order",
    ),
    "cancel_with_mismatched_hash": (
        lambda m, h: h.request(
            "DELETE", f"/orders/{m.open['id']}", json=m.alice.cancel(m.bob_open["id"])
        ),
        422,
        "invalid_request",
    ),
    "cancel_unknown_order": (
        lambda m, h: h.request(
            "DELETE", f"/orders/0x{'ab' * 32}", json=m.alice.cancel("0x" + "ab" * 32)
        ),
        404,
        "order_not_found",
    ),
    "cancel_replayed_nonce": (
        lambda m, h: h.request(
            "DELETE",
            f"/orders/{m.open['id']}",
            json=m.alice.cancel(m.open["id"], nonce=int(m.open["order"]["nonce"])),
        ),
        409,
        "nonce_used",
    ),
    "cancel_after_gate_closure": (lambda m, h: _cancel_after_close(m, h), 409, "order_not_open"),
    "get_unknown_order": (lambda m, h: h.get(f"/orders/0x{'cd' * 32}"), 404, "order_not_found"),
    "get_malformed_order_id": (lambda m, h: h.get("/orders/xyz"), 422, "invalid_request"),
    "proof_before_gate_closure": (
        lambda m, h: h.get(f"/orders/{m.open['id']}/proof"),
        409,
        "interval_not_closed",
    ),
    "published_orders_before_gate_closure": (
        lambda m, h: h.get(f"/intervals/{m.t}/orders"),
        409,
        "interval_not_closed",
    ),
    "negative_interval": (lambda m, h: h.get("/intervals/-1/book"), 422, "invalid_request"),
    "bad_participant_address": (lambda m, h: h.get("/participants/0x12"), 422, "invalid_request"),
    "bad_status_filter": (
        lambda m, h: h.get(f"/participants/{m.alice.account.address}/orders?status=weird"),
        422,
        "invalid_request",
    ),
    "close_gate_by_non_operator": (
        lambda m, h: post(h, m.alice.close_gate(m.t), f"/intervals/{m.t}/close"),
        403,
        "not_operator",
    ),
    "unknown_path": (lambda m, h: h.get("/nowhere"), 404, "not_found"),
    "wrong_method": (lambda m, h: h.put("/orders"), 405, "method_not_allowed"),
}


def _drop(message: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k != key}


def _foreign(m: Market, chain_id: Any = None, contract: Any = None) -> OrderSigner:
    d = m.service.domain
    domain = Domain(chain_id or d.chain_id, contract or d.verifying_contract, d.name, d.version)
    return OrderSigner(m.alice.account, domain)


def _replay(m: Market) -> dict[str, Any]:
    return {"order": m.open["order"], "signature": m.open["signature"]}


def _cancel_after_close(m: Market, http: httpx.Client) -> httpx.Response:
    order_id = m.open["id"]
    body = m.alice.cancel(order_id)
    m.close_due(m.closing_t)
    m.before = state(m)  # gate closure itself changes state; the cancel must not
    return http.request("DELETE", f"/orders/{order_id}", json=body)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_with_its_code_and_changes_nothing(env: Any, name: str) -> None:
    m, http = env
    build, status, code = CASES[name]
    m.before = state(m)
    response = build(m, http)
    problem = expect(response, status, code)
    assert state(m) == m.before
    if code == "batch_rejected":
        assert [(e["index"], e["code"]) for e in problem["errors"]] == [(1, "invalid_quantity")]


def test_a_refused_request_does_not_block_the_same_order_later(env: Any) -> None:
    m, http = env
    body = m.alice.order(m.t, "buy", 9_901, PRICE)
    expect(post(http, body), 409, "insufficient_collateral")
    m.ledger.free[m.alice.account.address.lower()] += 10**30
    assert post(http, body).status_code == 201


def test_self_cross_is_refused_within_a_batch_and_apart_prices_are_accepted(env: Any) -> None:
    m, http = env
    t = m.t + 2
    m.before = state(m)
    crossing = {"orders": [m.bob.order(t, "buy", 10, PRICE), m.bob.order(t, "sell", 10, PRICE)]}
    problem = expect(post(http, crossing, "/orders:batch"), 409, "batch_rejected")
    assert [(e["index"], e["code"]) for e in problem["errors"]] == [(1, "self_cross")]
    assert state(m) == m.before
    # A bid below the participant's own ask can never be paired with it: accepted.
    apart = {"orders": [m.bob.order(t, "buy", 10, PRICE), m.bob.order(t, "sell", 10, PRICE + 1)]}
    assert post(http, apart, "/orders:batch").status_code == 201
    # Once the crossing own order is cancelled, the other side is accepted.
    assert post(http, m.alice.order(m.t, "sell", 50, PRICE)).status_code == 409
    cancel = m.alice.cancel(m.open["id"])
    assert http.request("DELETE", f"/orders/{m.open['id']}", json=cancel).status_code == 200
    assert post(http, m.alice.order(m.t, "sell", 50, PRICE)).status_code == 201


def test_a_wrong_method_is_refused_naming_the_methods_the_path_takes(env: Any) -> None:
    _, http = env
    response = http.put("/orders")
    expect(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_problem_bodies_are_valid_json_with_instance(env: Any) -> None:
    _, http = env
    response = http.get("/orders/0x" + "ee" * 32)
    assert json.loads(response.content)["instance"] == "/orders/0x" + "ee" * 32


def test_a_failing_node_answers_a_generic_503_and_keeps_its_url_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The node's error text (here a 429 naming the provider URL with its key) goes to the
    server log, never into the answer."""
    from market.ledger_port import LedgerCallFailed

    secret = "https://mainnet.provider.example/v3/k3y-5ecret"
    m = make_market(tmp_path)
    stranger = account(42).address

    def failing(*_args: Any) -> Any:
        raise LedgerCallFailed(f"429 Client Error: Too Many Requests for url: {secret}")

    for name in ("is_registered", "balances", "balances_of"):
        setattr(m.ledger, name, failing)
    transport = AppTransport(create_app(m.service))
    with (
        caplog.at_level("WARNING"),
        httpx.Client(transport=transport, base_url="http://market.test") as http,
    ):
        answer = http.get(f"/participants/{stranger}")
        placed = http.post(
            "/orders", json=OrderSigner(account(43), m.service.domain).order(m.t, "buy", 10, PRICE)
        )
    transport.close()
    for refused in (answer, placed):
        assert refused.status_code == 503, refused.text
        body = refused.json()
        assert body["code"] == "chain_unavailable"
        assert body["detail"] == "the chain is unavailable; retry later"
        assert "k3y-5ecret" not in refused.text and "provider" not in refused.text
    assert "k3y-5ecret" in caplog.text
