"""Schemathesis against the settlement API's OpenAPI document for the reading intake paths
(``POST /meter-readings`` and ``POST /meter-readings:batch``): no 5xx, and every answer,
accepted or refused, matches the documented status codes, media types and schemas."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from test_ledger_support import MarketEnv, trade
from test_settlement_service_support import FAST_POLICY, SettleEnv

from chain.connection import connect
from settlement.api import create_settlement_app
from settlement.config import SettlementConfig


def _app() -> Any:
    """A settlement service whose interval is in its reading window (so a well-signed
    reading could be accepted), built once at collection as the market's schemathesis
    test builds its app."""
    base = MarketEnv.build(connect(), n_participants=4)
    db = Path(tempfile.mkdtemp(prefix="schemathesis-settlement-")) / "settlement.db"
    env = SettleEnv(base, db, SettlementConfig(max_intake_readings=5), FAST_POLICY)
    t = env.commit([trade(env.p(0), env.p(1), 600)])
    env.market.to_reading_window(t)
    return create_settlement_app(env.service)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app()).include(
    path_regex="^/meter-readings"
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_reading_intake_conforms_to_its_openapi_document(case: Any) -> None:
    case.call_and_validate(checks=CHECKS)
