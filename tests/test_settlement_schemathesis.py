"""Schemathesis against the whole settlement API's OpenAPI document (the standalone app of
``wattledger settle --watch``, in-process over ASGI): every default check of schemathesis,
and :func:`documented_code` (every refusal's ``code`` is one its operation documents)."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis_support import documented_code, settlement_app

schema = schemathesis.openapi.from_asgi("/openapi.json", settlement_app())


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_settlement_api_conforms_to_its_openapi_document(case: Any) -> None:
    case.call_and_validate(additional_checks=[documented_code])
