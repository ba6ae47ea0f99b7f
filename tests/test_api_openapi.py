"""The OpenAPI documents say what the server accepts, and publish every problem code.

- a 405 answer's ``Allow`` lists exactly the methods the path has in the document;
- requests an integrator's schemathesis run found schema-valid but refused (an empty
  signature, ``exportedWh`` as an empty string, a zero price) are now schema-invalid, and
  the server refuses them: schema and server agree, and the well-formed request is valid;
- the problem code table in ``info.description`` lists every code the server can answer
  with, with the status it answers it with; the description is Markdown, not a docstring.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient
from market_harness import PRICE, Market, make_market
from schemathesis_support import settlement_app

import settlement.errors  # noqa: F401  (registers the settlement's codes)
from market.http.app import create_app
from market.http.openapi_doc import INTERNAL_ERROR, problem_classes
from market.http.problems import PROBLEM_CODES_KEY, error_status
from market.http.wire import decimal_range_pattern
from settlement.api import settlement_router
from settlement.service import SettlementService

METHODS = ("get", "put", "post", "delete", "patch")


def _settlement_stub() -> SettlementService:
    """Enough of a settlement service to build its router and document it (no request is
    answered by it here)."""
    return cast(
        SettlementService,
        SimpleNamespace(config=SimpleNamespace(max_intake_readings=7, max_reading_wh=10_000_000)),
    )


@pytest.fixture(scope="module")
def market() -> Market:
    return make_market(Path(tempfile.mkdtemp(prefix="openapi-")))


@pytest.fixture(scope="module")
def http(market: Market) -> TestClient:
    """The market API as ``wattledger serve`` builds it: with the settlement's routes."""
    return TestClient(
        create_app(market.service, extra_routers=[settlement_router(_settlement_stub())])
    )


@pytest.fixture(scope="module")
def document(http: TestClient) -> dict[str, Any]:
    return cast(dict[str, Any], http.get("/openapi.json").json())


# --------------------------------------------------------------------------- 405 and Allow


def test_a_405_allows_exactly_the_methods_the_path_has(
    http: TestClient, document: dict[str, Any]
) -> None:
    order_id = "0x" + "00" * 32
    for template, item in document["paths"].items():
        path = template.replace("{order_id}", order_id).replace("{t}", "5")
        path = path.replace("{address}", "0x" + "11" * 20)
        documented = {m.upper() for m in item if m in METHODS}
        for method in ("OPTIONS", "PATCH", *(m for m in ("PUT", "DELETE") if m not in documented)):
            answer = http.request(method, path)
            assert answer.status_code == 405, (method, path)
            assert answer.json()["code"] == "method_not_allowed"
            allowed = {m.strip() for m in answer.headers["allow"].split(",")} - {"HEAD"}
            assert allowed == documented, (method, path, answer.headers["allow"])


def test_the_order_path_allows_get_and_delete(http: TestClient) -> None:
    answer = http.request("PATCH", "/orders/0x" + "ab" * 32)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "DELETE, GET"


# ------------------------------------------------------- schema-valid but refused, no more


def _validator(document: dict[str, Any], component: str) -> Any:
    schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


def _good_reading() -> dict[str, Any]:
    return {
        "reading": {
            "participant": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "interval": 1963,
            "importedWh": 120,
            "exportedWh": "2480",
        },
        "signature": "0x" + "ab" * 64 + "1b",
    }


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        (lambda b: b.update(signature=""), 400, "bad_signature"),
        (lambda b: b.update(signature="0x" + "ab" * 66), 400, "bad_signature"),
        (lambda b: b["reading"].update(exportedWh=""), 422, "invalid_request"),
        (lambda b: b["reading"].update(interval="18446744073709551616"), 422, None),
        (lambda b: b["reading"].update(participant="0x1234"), 422, "invalid_request"),
    ],
)
def test_a_reading_the_schema_refuses_the_server_refuses(
    market: Market, document: dict[str, Any], change: Any, status: int, code: str | None
) -> None:
    validator = _validator(document, "SignedReading")
    assert validator.is_valid(_good_reading())
    body = _good_reading()
    change(body)
    assert not validator.is_valid(body)
    answer = TestClient(settlement_app()).post("/meter-readings", json=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    if code is not None:
        assert answer.json()["code"] == code


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("pricePerWh", 0, "invalid_price"),
        ("pricePerWh", "0", "invalid_price"),
        ("quantityWh", 2**40, "out_of_bounds"),
        ("quantityWh", "", "invalid_quantity"),
        ("side", 2, "invalid_side"),
        ("nonce", "18446744073709551616", "out_of_bounds"),
    ],
)
def test_an_order_the_schema_refuses_the_server_refuses(
    market: Market, http: TestClient, document: dict[str, Any], field: str, value: Any, code: str
) -> None:
    validator = _validator(document, "SignedOrder")
    good = market.alice.order(market.t, "buy", 100, PRICE)
    assert validator.is_valid(good)
    bad = {**good, "order": {**good["order"], field: value}}
    assert not validator.is_valid(bad)
    answer = http.post("/orders", json=bad)
    assert answer.status_code in (400, 422), answer.text
    assert answer.json()["code"] == code


def test_the_signature_pattern_takes_both_signature_lengths(document: dict[str, Any]) -> None:
    signature = document["components"]["schemas"]["SignedOrder"]["properties"]["signature"]
    assert signature["pattern"] == "^0x([0-9a-fA-F]{128}|[0-9a-fA-F]{130})$"


def test_decimal_range_patterns_match_exactly_the_range() -> None:
    import re

    for low in (0, 1):
        for high in (1, 9, 10, 99, 100, 255, 1099, 2**16):
            pattern = re.compile(decimal_range_pattern(low, high))
            for n in range(high + 200):
                for text in (str(n), "00" + str(n)):
                    assert bool(pattern.fullmatch(text)) == (low <= n <= high), (low, high, text)
    big = re.compile(decimal_range_pattern(0, 2**64 - 1))
    assert big.fullmatch(str(2**64 - 1)) and big.fullmatch("0" + str(2**64 - 2))
    assert not big.fullmatch(str(2**64)) and not big.fullmatch(str(10**20))


def test_decimal_range_patterns_take_any_lower_bound() -> None:
    """A configured minimum (the market's smallest order) is written into the pattern too."""
    import re

    for low in (2, 9, 10, 11, 25, 99, 100, 101, 250, 999):
        for high in (low, low + 1, 99, 100, 255, 1099, 2**16):
            if high < low:
                continue
            pattern = re.compile(decimal_range_pattern(low, high))
            for n in range(high + 200):
                for text in (str(n), "00" + str(n)):
                    assert bool(pattern.fullmatch(text)) == (low <= n <= high), (low, high, text)
    big = re.compile(decimal_range_pattern(10, 2**40 - 1))
    assert big.fullmatch(str(2**40 - 1)) and big.fullmatch("0010") and not big.fullmatch("9")
    assert not big.fullmatch(str(2**40))


# --------------------------------------------------------------------------- problem codes


def _table(description: str) -> dict[str, str]:
    rows = {}
    for line in description.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[1]
    return rows


def test_every_code_the_server_can_answer_is_in_the_published_table(
    document: dict[str, Any],
) -> None:
    table = _table(document["info"]["description"])
    emitted = {**{code: str(error_status(cls)) for code, cls in problem_classes().items()}}
    emitted[INTERNAL_ERROR] = "500"
    assert len(emitted) > 30
    for code, status in emitted.items():
        assert code in table, code
        if code != "batch_rejected":
            assert table[code] == status, code


def test_every_documented_code_of_an_operation_is_in_the_table(document: dict[str, Any]) -> None:
    table = _table(document["info"]["description"])
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation.get("responses", {}).items():
                for code in response.get(PROBLEM_CODES_KEY, ()):
                    assert code in table
                    assert code == "batch_rejected" or table[code] == status, code


def test_the_standalone_settlement_api_publishes_its_codes() -> None:
    description = TestClient(settlement_app()).get("/openapi.json").json()["info"]["description"]
    table = _table(description)
    for code in ("bad_signature", "unverifiable_signature", "reading_duplicate", "meter_mismatch"):
        assert code in table


def test_the_description_is_markdown_for_integrators(document: dict[str, Any]) -> None:
    description = document["info"]["description"]
    assert ":class:" not in description and "``" not in description
    assert "## Problem codes" in description
    assert "epoch + t * intervalSeconds" in description
    proof = document["paths"]["/orders/{order_id}/proof"]["get"]["description"]
    assert "keccak256(keccak256(id))" in proof
