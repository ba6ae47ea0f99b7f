"""The audit's ``grid`` check (audit/checks/grid.py): the worked example of docs/grid.md §5
passes, and a loosened cap, a changed fee, an order moved to another node or a bent seller
price each fail, naming the interval."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from grid_strategies import GridBook, grid_books
from hypothesis import given, settings

from audit.checks.grid import (
    GridEvidence,
    GridTradeRecord,
    check_grid,
    resettle,
)
from audit.checks.violations import CheckLog
from audit.evidence import ClearingRules
from ledger import eip712 as signing
from ledger.grid_signature import sign_grid_document
from ledger.records import Terms
from ledger.units import PricePerWh, Wh
from market.grid import check_grid as check_grid_document
from market.grid_clearing import clear_grid
from market.orders import Order, Side

T = 42
DOMAIN = signing.Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
DSO_KEY = bytes.fromhex("22" * 32)
DSO = "0x" + __import__("eth_account").Account.from_key(DSO_KEY).address[2:]
MARKET_KEY = bytes.fromhex("44" * 32)
RULES = ClearingRules()
PARTY = {name: "0x" + f"{i + 1:040x}" for i, name in enumerate(("pv", "h", "dc", "ret"))}
NODE = {PARTY["pv"]: "f", PARTY["h"]: "f", PARTY["dc"]: "sub", PARTY["ret"]: "sub"}


def _document(export_cap: int = 6, fee: int = 2) -> dict[str, Any]:
    return {
        "version": 1,
        "interval": T,
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


ORDERS = [
    Order("pv", Side.SELL, Wh(10), PricePerWh(3), 0, PARTY["pv"]),
    Order("h", Side.BUY, Wh(3), PricePerWh(9), 1, PARTY["h"]),
    Order("dc", Side.BUY, Wh(20), PricePerWh(20), 2, PARTY["dc"]),
    Order("ret", Side.SELL, Wh(50), PricePerWh(25), 3, PARTY["ret"]),
]


def _committed(document: dict[str, Any], nodes: dict[str, str]) -> list[GridTradeRecord]:
    """The trades an operator would commit after clearing on ``document`` with ``nodes``."""
    grid = check_grid_document(document)
    result = clear_grid(ORDERS, grid, [nodes[o.participant or ""] for o in ORDERS])
    owner = {o.id: o.participant or "" for o in ORDERS}
    return [
        GridTradeRecord(
            t.buy,
            t.sell,
            owner[t.buy],
            owner[t.sell],
            t.quantity_wh,
            t.price_per_wh,
            t.sell_price_per_wh,
        )
        for t in result.trades
    ]


def _evidence(document: dict[str, Any], *, sign_as: dict[str, Any] | None = None) -> GridEvidence:
    """The published bytes of ``document``, signed by the grid operator over ``sign_as``
    (default: the document itself)."""
    data = check_grid_document(document).canonical_bytes
    signed = check_grid_document(sign_as or document)
    signature = sign_grid_document(DSO_KEY, DOMAIN, T, signed.grid_root)
    return GridEvidence(T, data, signature, DSO, NODE)


def _audit(evidence: GridEvidence, trades: list[GridTradeRecord], **kw: Any) -> CheckLog:
    checks = CheckLog(T)
    check_grid(evidence, DOMAIN, ORDERS, trades, RULES, checks, **kw)
    return checks


def test_the_worked_example_passes_and_resettles_with_both_prices() -> None:
    trades = _committed(_document(), NODE)
    assert [
        (t.buy, t.sell, t.quantity_wh, t.price_per_wh, t.sell_price_per_wh) for t in trades
    ] == [
        ("h", "pv", 3, 3, 3),
        ("dc", "pv", 6, 20, 3),
    ]
    checks = CheckLog(T)
    settled = check_grid(
        _evidence(_document()),
        DOMAIN,
        ORDERS,
        trades,
        RULES,
        checks,
        exported_wh={PARTY["pv"]: 9},
        terms=Terms(0, 0),
    )
    assert checks.violations == []
    assert settled is not None
    # Fees 12 and congestion rent 90 go to the grid operator: 6 Wh at 20 - 3.
    assert (settled.buyers_pay, settled.sellers_receive, settled.grid_operator_receives) == (
        129,
        27,
        102,
    )


def test_a_loosened_capacity_fails_naming_the_interval() -> None:
    loosened = _document(export_cap=20)
    # The operator publishes a loosened document under the grid operator's signature of the
    # real one, and commits the trades of the loosened grid.
    checks = _audit(_evidence(loosened, sign_as=_document()), _committed(loosened, NODE))
    text = [str(v) for v in checks.violations]
    assert text and all(line.startswith(f"interval {T}: grid: ") for line in text)
    assert any("signature" in line and "not to the grid operator" in line for line in text)
    # Honest bytes but trades of the loosened grid: the re-clearing catches it.
    checks = _audit(_evidence(_document()), _committed(loosened, NODE))
    assert any("trade" in str(v) and "expected" in str(v) for v in checks.violations)


def test_a_changed_fee_fails_naming_the_interval() -> None:
    dearer = _document(fee=18)  # the export no longer pays: pv sells to h only
    checks = _audit(_evidence(dearer, sign_as=_document()), _committed(dearer, NODE))
    assert checks.violations
    assert all(str(v).startswith(f"interval {T}: grid: ") for v in checks.violations)
    assert any("signature" in v.message for v in checks.violations)
    # The signed document with the trades of the changed fee: one trade too few.
    checks = _audit(_evidence(_document()), _committed(dearer, NODE))
    assert any("gives 2 trades" in v.message for v in checks.violations)


def test_an_order_moved_to_another_node_fails_naming_the_interval() -> None:
    moved = {**NODE, PARTY["pv"]: "sub"}  # the operator clears pv past the congested edge
    checks = _audit(_evidence(_document()), _committed(_document(), moved))
    assert checks.violations
    assert all(str(v).startswith(f"interval {T}: grid: ") for v in checks.violations)
    assert any("trade" in v.message for v in checks.violations)


def test_orders_clear_at_their_signed_nodes_and_one_signed_elsewhere_fails() -> None:
    """The node an order is signed for places it; it must be its participant's registered
    node (intake takes it only there), or the interval FAILs naming the order."""
    signed = {o.id: NODE[o.participant or ""] for o in ORDERS}
    evidence = replace(_evidence(_document()), order_nodes=signed)
    assert _audit(evidence, _committed(_document(), NODE)).violations == []
    elsewhere = replace(evidence, order_nodes={**signed, "pv": "sub"})
    checks = _audit(elsewhere, _committed(_document(), {**NODE, PARTY["pv"]: "sub"}))
    assert [v.message for v in checks.violations] == [
        f"order pv: signed for node 'sub', its participant {PARTY['pv']} is registered at 'f'"
    ]


def test_a_stated_root_other_than_the_documents_fails() -> None:
    evidence = replace(_evidence(_document()), stated_root=b"\x01" * 32)
    checks = _audit(evidence, _committed(_document(), NODE))
    assert next(v.message for v in checks.violations).startswith("gridRoot stated 0x0101")


def test_a_document_that_is_not_canonical_fails() -> None:
    evidence = _evidence(_document())
    pretty = json.dumps(json.loads(evidence.document), indent=1).encode()
    checks = _audit(replace(evidence, document=pretty), _committed(_document(), NODE))
    assert any("grid.not_canonical" in v.message for v in checks.violations)


def test_a_participant_without_a_node_fails() -> None:
    evidence = replace(_evidence(_document()), nodes={PARTY["pv"]: "f"})
    checks = _audit(evidence, _committed(_document(), NODE))
    assert any("has no registered node" in v.message for v in checks.violations)


def test_a_bent_seller_price_fails_even_when_the_trades_are_otherwise_right() -> None:
    trades = _committed(_document(), NODE)
    bent = [trades[0], replace(trades[1], sell_price_per_wh=19)]
    checks = _audit(_evidence(_document()), bent)
    messages = [v.message for v in checks.violations]
    assert any("sell price expected 3 found 19" in m for m in messages)
    assert any("(P3)" in m and "uniform prices" in m for m in messages)


def test_an_over_cap_schedule_fails_p1_and_an_unfilled_open_edge_fails_p5() -> None:
    trades = _committed(_document(), NODE)
    over = [trades[0], replace(trades[1], quantity_wh=7)]
    checks = _audit(_evidence(_document()), over)
    assert any("(P1): export 7 Wh above its cap 6" in v.message for v in checks.violations)
    short = [trades[0], replace(trades[1], quantity_wh=5)]
    checks = _audit(_evidence(_document()), short)
    assert any("(P5)" in v.message for v in checks.violations)  # the edge is not full


def test_resettlement_splits_each_delivered_wh_between_seller_and_grid() -> None:
    trades = _committed(_document(), NODE)
    settled, problems = resettle(trades, {PARTY["pv"]: 0}, Terms(0, 0))
    assert problems == []
    assert (settled.buyers_pay, settled.sellers_receive, settled.grid_operator_receives) == (
        0,
        0,
        0,
    )


@settings(max_examples=60, deadline=None)
@given(case=grid_books())
def test_the_engines_own_result_always_passes_the_grid_check(case: GridBook) -> None:
    parties = {o.id: "0x" + f"{i + 1:040x}" for i, o in enumerate(case.orders)}
    orders = [replace(o, participant=parties[o.id]) for o in case.orders]
    nodes = {parties[o.id]: n for o, n in zip(case.orders, case.nodes, strict=True)}
    grid = case.grid
    document = json.loads(grid.canonical_bytes)
    document["interval"] = T
    data = check_grid_document(document).canonical_bytes
    root = __import__("ledger.hashing", fromlist=["keccak"]).keccak(data)
    evidence = GridEvidence(T, data, sign_grid_document(DSO_KEY, DOMAIN, T, root), DSO, nodes)
    result = clear_grid(orders, grid, case.nodes)
    trades = [
        GridTradeRecord(
            t.buy,
            t.sell,
            parties[t.buy],
            parties[t.sell],
            t.quantity_wh,
            t.price_per_wh,
            t.sell_price_per_wh,
        )
        for t in result.trades
    ]
    checks = CheckLog(T)
    check_grid(evidence, DOMAIN, orders, trades, RULES, checks)
    assert checks.violations == []


def test_a_signature_by_another_key_fails() -> None:
    evidence = _evidence(_document())
    forged = sign_grid_document(MARKET_KEY, DOMAIN, T, check_grid_document(_document()).grid_root)
    checks = _audit(replace(evidence, signature=forged), _committed(_document(), NODE))
    assert len(checks.violations) == 1
    assert "signature" in checks.violations[0].message


@pytest.mark.parametrize("mechanism", ["pay-as-bid"])
def test_pay_as_bid_grid_intervals_pass_too(mechanism: str) -> None:
    grid = check_grid_document(_document())
    result = clear_grid(ORDERS, grid, [NODE[o.participant or ""] for o in ORDERS], mechanism)
    owner = {o.id: o.participant or "" for o in ORDERS}
    trades = [
        GridTradeRecord(
            t.buy,
            t.sell,
            owner[t.buy],
            owner[t.sell],
            t.quantity_wh,
            t.price_per_wh,
            t.sell_price_per_wh,
        )
        for t in result.trades
    ]
    checks = CheckLog(T)
    check_grid(_evidence(_document()), DOMAIN, ORDERS, trades, ClearingRules(mechanism), checks)
    assert checks.violations == []
