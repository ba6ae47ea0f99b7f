"""The grid operator in the market service and API: signed documents per interval (PUT and
GET /intervals/{t}/grid), frozen at gate closure, the node registry in GET /market, intake
only at the participant's node, and gate closure clearing on the grid with both prices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from market_harness import PRICE, Market, make_market, signed

from ledger.grid_signature import recover_grid_signer, sign_grid_document
from ledger.hashing import keccak
from market.client import AppTransport
from market.grid import check_grid
from market.grid_operator import GridSetup
from market.http.app import create_app
from market.http.errors import NodeNotRegistered, WrongNode

DSO_KEY = (77).to_bytes(32, "big")
DSO = Account.from_key(DSO_KEY).address
INTRUDER_KEY = (78).to_bytes(32, "big")


def _template(export_cap: int | None = 60, fee: int = 0) -> dict[str, Any]:
    return {
        "version": 1,
        "interval": 0,
        "nodes": [
            {
                "id": "f",
                "parent": "sub",
                "export_cap_wh": export_cap,
                "import_cap_wh": None,
                "fee_per_wh": fee,
            },
            {
                "id": "sub",
                "parent": None,
                "export_cap_wh": None,
                "import_cap_wh": None,
                "fee_per_wh": 0,
            },
        ],
    }


def _grid_market(tmp_path: Path, *, default: bool = True) -> Market:
    setup = (
        GridSetup(template=check_grid(_template()), key=DSO_KEY)
        if default
        else GridSetup(address=DSO)
    )
    m = make_market(tmp_path, grid=setup)
    m.service.record_node(m.alice.account.address, "f")
    m.service.record_node(m.bob.account.address, "sub")
    m.alice.node, m.bob.node = "f", "sub"  # each signs its orders for its recorded node
    return m


def _document(t: int, **kw: Any) -> bytes:
    return check_grid({**_template(**kw), "interval": t}).canonical_bytes


def _client(m: Market) -> httpx.Client:
    return httpx.Client(
        transport=AppTransport(create_app(m.service, inline_commits=True)),
        base_url="http://market",
    )


def _put(http: httpx.Client, t: int, data: bytes, key: bytes, m: Market) -> httpx.Response:
    signature = sign_grid_document(key, m.service.domain, t, keccak(data))
    return http.put(
        f"/intervals/{t}/grid",
        content=data,
        headers={"Content-Type": "application/json", "Grid-Signature": signature},
    )


def test_a_market_without_a_grid_behaves_as_before_and_has_one_node(tmp_path: Path) -> None:
    m = make_market(tmp_path)
    stored = m.service.submit_order(signed(m.alice.order(m.t, "buy", 100, PRICE)))
    assert stored.node == "root"
    with pytest.raises(WrongNode, match="clears on no grid"):
        m.service.submit_order(signed(m.alice.order(m.t, "buy", 100, PRICE, node="f")))
    with _client(m) as http:
        assert http.get("/market").json()["grid"] is None
        answer = http.get(f"/intervals/{m.t}/grid")
        assert answer.status_code == 404 and answer.json()["code"] == "no_grid"
        put = _put(http, m.t, _document(m.t), DSO_KEY, m)
        assert put.status_code == 404 and put.json()["code"] == "no_grid"


def test_intake_takes_an_order_only_at_its_participants_node(tmp_path: Path) -> None:
    m = _grid_market(tmp_path)
    stored = m.service.submit_order(signed(m.alice.order(m.t, "sell", 100, PRICE, node="f")))
    assert stored.node == "f"
    with pytest.raises(WrongNode, match="recorded at 'f'"):
        m.service.submit_order(signed(m.alice.order(m.t, "sell", 100, PRICE, node="sub")))
    with pytest.raises(WrongNode, match="recorded at 'f'"):
        m.service.submit_order(signed(m.alice.order(m.t, "sell", 100, PRICE, node="root")))
    with pytest.raises(NodeNotRegistered):
        m.service.submit_order(signed(m.carol.order(m.t, "buy", 100, PRICE, node="f")))
    with _client(m) as http:
        answer = http.post("/orders", json=m.alice.order(m.t, "sell", 100, PRICE, node="sub"))
        assert answer.status_code == 422 and answer.json()["code"] == "wrong_node"
        # The node is signed: moving a signed order to the recorded node breaks its signature.
        moved = m.alice.order(m.t, "sell", 100, PRICE, node="sub")
        moved["order"]["node"] = "f"
        answer = http.post("/orders", json=moved)
        assert answer.status_code == 403 and answer.json()["code"] == "signer_mismatch"
        # A node beside the signed message is no longer a field of the body.
        beside = {**m.alice.order(m.t, "sell", 100, PRICE, node="f"), "node": "f"}
        answer = http.post("/orders", json=beside)
        assert answer.status_code == 422 and answer.json()["code"] == "invalid_request"
        bad = m.alice.order(m.t, "sell", 100, PRICE, node="f")
        bad["order"]["node"] = "no spaces"
        answer = http.post("/orders", json=bad)
        assert answer.status_code == 422 and "grid node id" in answer.json()["detail"]
        answer = http.post("/orders", json=m.carol.order(m.t, "buy", 100, PRICE, node="f"))
        assert answer.status_code == 403 and answer.json()["code"] == "node_not_registered"
        answer = http.get(f"/participants/{m.alice.account.address}/orders")
        assert {o["order"]["node"] for o in answer.json()["orders"]} == {"f"}


def test_get_market_names_the_grid_operator_and_the_node_registry(tmp_path: Path) -> None:
    m = _grid_market(tmp_path)
    with _client(m) as http:
        grid = http.get("/market").json()["grid"]
    assert grid["operator"] == DSO
    assert grid["nodes"] == {m.alice.account.address: "f", m.bob.account.address: "sub"}
    assert grid["defaultDocument"] is True
    assert grid["template"]["primaryType"] == "GridDocument"


def test_the_default_document_is_served_as_exact_bytes_signed_by_the_grid_operator(
    tmp_path: Path,
) -> None:
    m = _grid_market(tmp_path)
    with _client(m) as http:
        answer = http.get(f"/intervals/{m.t}/grid")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.content == _document(m.t)
    assert answer.headers["Grid-Root"] == "0x" + keccak(answer.content).hex()
    signer = recover_grid_signer(
        m.service.domain, m.t, keccak(answer.content), answer.headers["Grid-Signature"]
    )
    assert signer == DSO.lower()


def test_put_checks_the_signature_first_then_the_bytes_then_the_gate(tmp_path: Path) -> None:
    m = _grid_market(tmp_path, default=False)
    t = m.t
    with _client(m) as http:
        assert http.get(f"/intervals/{t}/grid").json()["code"] == "no_grid"
        # Junk signed by another key: refused for the key, the bytes are never parsed.
        junk = b"not even json"
        answer = _put(http, t, junk, INTRUDER_KEY, m)
        assert answer.status_code == 403 and answer.json()["code"] == "not_grid_operator"
        answer = _put(http, t, junk, DSO_KEY, m)
        assert answer.status_code == 422
        assert answer.json()["code"] == "invalid_grid_document"
        assert answer.json()["gridCode"] == "grid.bad_json"
        pretty = json.dumps(json.loads(_document(t)), indent=1).encode()
        assert _put(http, t, pretty, DSO_KEY, m).json()["gridCode"] == "grid.not_canonical"
        assert _put(http, t, _document(t + 1), DSO_KEY, m).json()["gridCode"] == (
            "grid.interval_mismatch"
        )
        # A loosened document the grid operator did not sign: refused.
        answer = http.put(
            f"/intervals/{t}/grid",
            content=_document(t, export_cap=1000),
            headers={
                "Content-Type": "application/json",
                "Grid-Signature": sign_grid_document(
                    DSO_KEY, m.service.domain, t, keccak(_document(t))
                ),
            },
        )
        assert answer.status_code == 403 and answer.json()["code"] == "not_grid_operator"
        answer = _put(http, t, _document(t), DSO_KEY, m)
        assert answer.status_code == 200, answer.text
        assert answer.json()["gridRoot"] == "0x" + keccak(_document(t)).hex()
        assert http.get(f"/intervals/{t}/grid").content == _document(t)
        m.close_due(t)
        answer = _put(http, t, _document(t, export_cap=10), DSO_KEY, m)
        assert answer.status_code == 409 and answer.json()["code"] == "interval_closed"
        assert http.get(f"/intervals/{t}/grid").content == _document(t)


def test_gate_closure_clears_on_the_grid_with_a_seller_price_below_the_buyers(
    tmp_path: Path,
) -> None:
    m = _grid_market(tmp_path)
    t = m.t
    m.service.submit_order(signed(m.alice.order(t, "sell", 100, PRICE)))
    m.service.submit_order(signed(m.bob.order(t, "buy", 100, 2 * PRICE)))
    m.close_due(t)
    with _client(m) as http:
        clearing = http.get(f"/intervals/{t}/clearing").json()
        document = http.get(f"/intervals/{t}/grid").content
    assert clearing["state"] == "committed"
    (trade,) = clearing["trades"]
    assert trade["quantityWh"] == 60  # the feeder's export cap
    assert int(trade["sellPricePerWh"]) < int(trade["pricePerWh"])
    assert clearing["grid"]["gridRoot"] == "0x" + keccak(document).hex()
    assert clearing["grid"]["flowsWh"] == {"f": 60}
    assert clearing["grid"]["nodes"] == {
        m.alice.account.address.lower(): "f",
        m.bob.account.address.lower(): "sub",
    }
    # The default document is frozen with the interval: stored, so it stays published.
    assert m.service.store.grid_document(t) is not None


def test_no_document_no_clearing(tmp_path: Path) -> None:
    m = _grid_market(tmp_path, default=False)
    t = m.t
    m.service.submit_order(signed(m.alice.order(t, "sell", 100, PRICE)))
    m.service.submit_order(signed(m.bob.order(t, "buy", 100, 2 * PRICE)))
    m.close_due(t)
    with _client(m) as http:
        clearing = http.get(f"/intervals/{t}/clearing").json()
    assert clearing["trades"] == [] and clearing["volumeWh"] == 0
    assert clearing["grid"] is None
