"""A grid market audited end to end: orders through the API, gate closure clearing on the
grid document and committing on the EnergyMarket contract (eth-tester), readings and
settlement on-chain, then ``wattledger audit``'s library entry over the API and the chain.
The honest market passes with the ``grid`` check run in place of ``reclear``; a bent grid
document (a loosened cap) fails it, naming the interval."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from test_audit_support import AuditChain, Session, run_plan, simple_plan

from audit.checks.violations import GRID, RECLEAR
from audit.evidence import MissingBook, PublishedBook
from audit.order_sources import ApiOrderSource
from audit.run import audit_market
from market.grid import check_grid
from market.grid_operator import GridSetup

DSO_KEY = (77).to_bytes(32, "big")
CAP_WH = 1_000


def _template(cap: int = CAP_WH) -> dict[str, Any]:
    return {
        "version": 1,
        "interval": 0,
        "nodes": [
            {
                "id": "f",
                "parent": "sub",
                "export_cap_wh": cap,
                "import_cap_wh": None,
                "fee_per_wh": 1,
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


@pytest.fixture(scope="module")
def base() -> AuditChain:
    return AuditChain()


def _grid_session(base: AuditChain) -> Session:
    nodes: dict[str, str] = {
        str(base.participants[0].address): "sub",
        str(base.participants[1].address): "sub",
        str(base.participants[2].address): "f",
        str(base.participants[3].address): "f",
    }
    setup = GridSetup(template=check_grid(_template()), key=DSO_KEY, nodes=nodes)
    return base.session(grid=setup)


class _BentGrid(ApiOrderSource):
    """The API's sets, with the grid document of every interval loosened (the signature
    left as the grid operator made it for the real one)."""

    def book(self, interval: int) -> PublishedBook | MissingBook:
        book = super().book(interval)
        if not isinstance(book, PublishedBook) or book.grid is None:
            return book
        loose = check_grid({**_template(cap=10 * CAP_WH), "interval": interval})
        return dataclasses.replace(
            book, grid=dataclasses.replace(book.grid, document=loose.canonical_bytes)
        )


def test_an_honest_grid_market_passes_the_audit_and_a_loosened_document_fails(
    base: AuditChain,
) -> None:
    with _grid_session(base) as session:
        committed = run_plan(session, simple_plan(1))
        assert committed
        t = committed[0]
        clearing = session.api.clearing(t)
        assert sum(tr["quantityWh"] for tr in clearing["trades"]) == CAP_WH
        assert any(int(tr["sellPricePerWh"]) < int(tr["pricePerWh"]) for tr in clearing["trades"])
        report = audit_market(base.chain, base.market, ApiOrderSource(session.api))
        assert report.ok, report.lines()
        assert all(RECLEAR not in r.failed_checks for r in report.intervals)
        bent = audit_market(base.chain, base.market, _BentGrid(session.api))
        assert not bent.ok
        failed = bent.interval(t)
        assert GRID in failed.failed_checks
        assert any(str(v).startswith(f"interval {t}: grid: signature") for v in failed.violations)
