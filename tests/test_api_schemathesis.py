"""Schemathesis against the market API's OpenAPI document, served by a live uvicorn server on
a free port of 127.0.0.1: every default check of schemathesis (no 5xx, conformance of status
codes, media types, headers and bodies, schema-valid requests accepted and schema-invalid
ones refused, 405 with ``Allow`` for an undeclared method, ...), and :func:`documented_code`:
every refusal's ``code`` is one its operation documents for that status."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from market_harness import PRICE, make_market, signed
from schemathesis_support import Served, documented_code

from market.http.app import create_app


def _app() -> Any:
    m = make_market(Path(tempfile.mkdtemp(prefix="schemathesis-")))
    # Some state to look at: an open order, and a closed, committed interval.
    m.service.submit_order(signed(m.alice.order(m.t, "buy", 100, PRICE)))
    m.service.submit_order(signed(m.bob.order(m.t, "sell", 100, PRICE)))
    m.close_due(m.t)
    m.service.submit_order(signed(m.alice.order(m.t + 1, "buy", 100, PRICE)))
    return create_app(m.service)


served = Served(_app())
schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")


@pytest.fixture(scope="module", autouse=True)
def _stop_server() -> Iterator[None]:
    yield
    served.stop()


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: Any) -> None:
    case.call_and_validate(additional_checks=[documented_code])
