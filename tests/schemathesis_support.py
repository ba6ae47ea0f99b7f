"""Shared by the schemathesis tests: a live uvicorn server, and the check that every refusal's
``code`` is one its operation documents."""

from __future__ import annotations

import functools
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from test_ledger_support import MarketEnv, trade
from test_settlement_service_support import FAST_POLICY, SettleEnv

from chain.anvil import free_port
from chain.connection import connect
from market.http.openapi_doc import GENERIC_ERRORS
from market.http.problems import PROBLEM_CODES_KEY, PROBLEM_JSON
from settlement.api import create_settlement_app
from settlement.config import SettlementConfig

GENERIC_CODES = {e.code for e in GENERIC_ERRORS}


@functools.cache
def settlement_app() -> Any:
    """A standalone settlement API whose interval is in its reading window (so a well-signed
    reading could be accepted), at most 5 readings a batch; built once per test process."""
    base = MarketEnv.build(connect(), n_participants=4)
    db = Path(tempfile.mkdtemp(prefix="schemathesis-settlement-")) / "settlement.db"
    env = SettleEnv(base, db, SettlementConfig(max_intake_readings=5), FAST_POLICY)
    t = env.commit([trade(env.p(0), env.p(1), 600)])
    env.market.to_reading_window(t)
    return create_settlement_app(env.service)


class Served:
    """``app`` served by uvicorn on a free port of 127.0.0.1 (started at once; :meth:`stop`)."""

    def __init__(self, app: Any) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "no server"
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server and wait for its thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)


class UndocumentedCode(AssertionError):
    """A refusal carried a code its operation does not document for that status."""


def documented_code(ctx: Any, response: Any, case: Any) -> bool | None:
    """A schemathesis check: a problem+json answer's ``code`` is listed in the operation's
    documented response for its status (``x-problem-codes``), or is one any request can get
    (an unknown path, a method the path does not take)."""
    if not response.headers.get("content-type", [""])[0].startswith(PROBLEM_JSON):
        return None
    code = response.json().get("code")
    if code in GENERIC_CODES:
        return None
    documented = case.operation.definition.raw.get("responses", {}).get(
        str(response.status_code), {}
    )
    codes = documented.get(PROBLEM_CODES_KEY, [])
    if code not in codes:
        raise UndocumentedCode(
            f"{case.method} {case.path} answered {response.status_code} {code!r}; "
            f"documented for {response.status_code}: {codes}"
        )
    return None
