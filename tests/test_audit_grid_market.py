"""A grid market audited end to end: orders through the API, gate closure clearing on the
grid document and committing on the EnergyMarket contract (eth-tester), readings and
settlement on-chain, then ``wattledger audit``'s library entry over the API and the chain.
The honest market passes with the ``grid`` check run in place of ``reclear``; a bent grid
document (a loosened cap) fails it, naming the interval."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from test_audit_support import AuditChain, Session, run_plan, simple_plan

from audit.checks.violations import GRID, RECLEAR
from audit.evidence import MissingBook, PublishedBook
from audit.order_sources import ApiOrderSource
from audit.run import audit_market
from chain.anvil import running_anvil
from chain.client import LedgerClient
from chain.connection import connect
from ledger.grid_nodes import node_hash
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


@pytest.fixture(
    scope="module", params=["eth-tester", pytest.param("anvil", marks=pytest.mark.anvil)]
)
def base(request: pytest.FixtureRequest) -> Iterator[AuditChain]:
    """The audited market on eth-tester and on a real anvil (``running_anvil`` of its own:
    the session's anvil is shared with tests that snapshot it)."""
    if request.param == "eth-tester":
        yield AuditChain()
        return
    with running_anvil() as url:
        yield AuditChain(connect(url))


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


class _MovedNode(ApiOrderSource):
    """The API's sets, with participant 2's order moved from node f to node sub in the
    published registry (the chain's NodeRecorded says f)."""

    def __init__(self, api: Any, who: str) -> None:
        super().__init__(api)
        self._who = who

    def book(self, interval: int) -> PublishedBook | MissingBook:
        book = super().book(interval)
        if not isinstance(book, PublishedBook) or book.grid is None:
            return book
        nodes = {str(k): str(v) for k, v in dict(book.grid.nodes).items()}
        for k in list(nodes):
            if k.lower() == self._who.lower():
                nodes[k] = "sub"
        return dataclasses.replace(book, grid=dataclasses.replace(book.grid, nodes=nodes))


class _ChangedSellPrice(ApiOrderSource):
    """The API's sets, with the first trade's published seller price one lower than the
    committed one (a changed fee)."""

    def book(self, interval: int) -> PublishedBook | MissingBook:
        book = super().book(interval)
        if not isinstance(book, PublishedBook) or book.grid is None or not book.grid.sell_prices:
            return book
        sells = list(book.grid.sell_prices)
        sells[0] = str(int(sells[0]) - 1)
        return dataclasses.replace(book, grid=dataclasses.replace(book.grid, sell_prices=sells))


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
        # On-chain (GRID.md §8): the root and the grid operator snapshotted, the seller
        # prices committed, the nodes recorded, the grid operator credited at settlement.
        ledger = LedgerClient.from_deployment(base.chain, base.deployment)
        root, operator = ledger.grid_of(t)
        assert "0x" + root.hex() == clearing["grid"]["gridRoot"]
        assert session.service.grid is not None
        assert operator.lower() == session.service.grid.address
        onchain = ledger.committed_trades(t)
        assert [x.sell_price_per_wh for x in onchain] == [
            int(tr["sellPricePerWh"]) for tr in clearing["trades"]
        ]
        nodes = {
            log["args"]["participant"]: bytes(log["args"]["node"])
            for log in ledger.contract.events.NodeRecorded().get_logs(from_block=0)
        }
        assert nodes[base.participants[2].address] == node_hash("f")
        credited = ledger.contract.events.GridRevenueCredited().get_logs(from_block=0)
        assert [(c["args"]["interval"], c["args"]["gridOperator"]) for c in credited] == [
            (t, operator)
        ]
        assert credited[0]["args"]["amount"] > 0
        report = audit_market(base.chain, base.market, ApiOrderSource(session.api))
        assert report.ok, report.lines()
        assert all(RECLEAR not in r.failed_checks for r in report.intervals)
        moved = audit_market(
            base.chain, base.market, _MovedNode(session.api, str(base.participants[2].address))
        )
        assert GRID in moved.interval(t).failed_checks, moved.lines()
        assert any(str(v).startswith(f"interval {t}: grid") for v in moved.interval(t).violations)
        assert any(
            "NodeRecorded names another node" in str(v) for v in moved.interval(t).violations
        )
        changed = audit_market(base.chain, base.market, _ChangedSellPrice(session.api))
        assert GRID in changed.interval(t).failed_checks
        assert any("committed seller price" in str(v) for v in changed.interval(t).violations)
        bent = audit_market(base.chain, base.market, _BentGrid(session.api))
        assert not bent.ok
        failed = bent.interval(t)
        assert GRID in failed.failed_checks
        assert any(str(v).startswith(f"interval {t}: grid: signature") for v in failed.violations)
