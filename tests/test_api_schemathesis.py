"""Schemathesis against the OpenAPI document: no 5xx, and every answer matches the schema."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from market_harness import PRICE, make_market
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from market.http.app import create_app

_market = None


def _app() -> Any:
    import tempfile
    from pathlib import Path

    global _market
    _market = make_market(Path(tempfile.mkdtemp(prefix="schemathesis-")))
    # Some state to look at: an open order, and a closed, committed interval.
    m = _market
    m.service.submit_order(_signed(m.alice.order(m.t, "buy", 100, PRICE)))
    m.service.submit_order(_signed(m.bob.order(m.t, "sell", 100, PRICE)))
    m.close_due(m.t)
    m.service.submit_order(_signed(m.alice.order(m.t + 1, "buy", 100, PRICE)))
    return create_app(m.service)


def _signed(body: Any) -> Any:
    from market_harness import signed

    return signed(body)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: Any) -> None:
    case.call_and_validate(checks=CHECKS)
