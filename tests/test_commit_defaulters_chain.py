"""Attack 3 of issue 15 on the contract: a withdrawal between gate closure and commit.

The market runs through the real API and EnergyMarket on eth-tester (``test_audit_support``).
A buyer withdraws its whole free balance just before the commit lands (its transaction ahead
of the commit's): the commit reverts ``InsufficientCollateral``, the service drops the buyer,
clears the rest again and commits it; the audit re-derives the drop from the chain's events
and passes. An operator that drops a party that was not short, or hides a defaulter, fails.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from test_audit_support import PRICE, AuditChain, Session

from audit.checks.violations import DEFAULTERS, RECLEAR
from audit.report import AuditReport
from audit.run import audit_market
from ledger.records import Balance, Trade
from market.chain_ledger import ChainLedger
from market.clearing import clear
from market.gate_closure import clearing_order

BUYER, WITHDRAWER, SELLER, OTHER_SELLER = 0, 1, 2, 3
ORDERS = [
    (BUYER, "buy", 2_000, PRICE + 20_000),
    (WITHDRAWER, "buy", 1_000, PRICE + 10_000),
    (SELLER, "sell", 2_000, PRICE - 10_000),
    (OTHER_SELLER, "sell", 1_000, PRICE - 5_000),
]


@pytest.fixture(scope="module")
def base() -> AuditChain:
    return AuditChain()


class ShortSighted(ChainLedger):
    """An operator that reads ``victim``'s free balance as zero: it drops a party that
    was not short."""

    victim = ""

    def balances_at_head(self, participants: Any) -> tuple[int, dict[str, Balance]]:
        block, read = super().balances_at_head(participants)
        return block, {
            p: Balance(0, b.locked) if p == self.victim.lower() else b for p, b in read.items()
        }


def _run(session: Session) -> int:
    """Place the orders and close the gate with the chain's clock past the gate closure
    (the audit holds a defaulter's block to be read after it); return the interval."""
    t = session.next_interval()
    for who, side, quantity, price in ORDERS:
        assert session.submit(t, who, side, quantity, price)
    gate = session.service.gate_closure_at(t)
    if session.chain.timestamp() <= gate:
        session.chain.advance_time(gate - session.chain.timestamp() + 1)
    session.close_gate(t)
    return t


@pytest.fixture
def attacked(base: AuditChain) -> Iterator[tuple[Session, int]]:
    holder: list[Session] = []
    done: list[int] = []

    def withdraw_first(t: int, root: bytes, trades: list[Trade]) -> tuple[bytes, list[Trade]]:
        if not done:
            done.append(t)
            session = holder[0]
            who = session.address(WITHDRAWER)
            session.ledger.withdraw(who, session.ledger.balance_of(who).free)
        return root, trades

    session = base.session(tamper=withdraw_first)
    holder.append(session)
    t = _run(session)
    yield session, t
    session.close()


def _audit(session: Session, source: Any = None) -> AuditReport:
    return audit_market(session.chain, session.base.market, source or session.api)


def test_a_withdrawal_before_the_commit_drops_the_withdrawer_and_the_others_trade(
    attacked: tuple[Session, int],
) -> None:
    session, t = attacked
    assert session.committed == [t]
    on_chain = session.ledger.committed_trades(t)
    published = session.api.interval_orders(t)
    orders = {o["id"]: o for o in published["orders"]}
    by_who = {o["order"]["participant"].lower(): o for o in published["orders"]}
    dropped = by_who[session.address(WITHDRAWER).lower()]
    assert dropped["status"] == "dropped" and dropped["filledWh"] == 0
    assert dropped["reason"].startswith("insufficient_collateral: free 0 < needed ")
    [defaulter] = published["defaulters"]
    assert defaulter["participant"] == session.address(WITHDRAWER)
    assert defaulter["round"] == 1 and defaulter["freeBaseUnits"] == "0"
    # The other parties' trades are on-chain: the clearing of the set without the withdrawer.
    rest = [
        clearing_order(session.service.get_order(oid))
        for oid, o in orders.items()
        if o["status"] == "closed"
    ]
    expected = clear(rest)
    assert expected.volume_wh == 2_000 and expected.price is not None
    assert [(x.buyer, x.seller, x.quantity_wh, x.price_per_wh) for x in on_chain] == [
        (session.address(BUYER), session.address(SELLER), 2_000, expected.price)
    ]
    assert session.ledger.balance_of(session.address(BUYER)).locked == 2_000 * expected.price
    clearing = session.api.clearing(t)
    assert clearing["dropped"] == [dropped["id"]]
    assert clearing["defaulters"] == published["defaulters"]

    report = _audit(session)
    assert report.ok, report.lines()
    assert any("defaulters: 1 party dropped" in n for n in report.interval(t).notes)


def test_the_audit_fails_a_published_set_that_hides_the_defaulter(
    attacked: tuple[Session, int],
) -> None:
    session, t = attacked
    body = copy.deepcopy(session.api.interval_orders(t))
    body["defaulters"] = []
    for order in body["orders"]:
        if order["status"] == "dropped":
            order["status"] = "closed"
    report = _audit(session, {t: body})
    assert not report.ok
    failed = {v.check for v in report.violations if v.interval == t}
    # Re-cleared with the withdrawer, the set gives other trades than were committed, and the
    # withdrawer was short at no named block: nothing justifies its absence.
    assert RECLEAR in failed


def test_the_audit_fails_an_operator_that_drops_a_party_that_was_not_short(
    base: AuditChain,
) -> None:
    session = base.session()
    try:
        lying = ShortSighted(session.ledger)
        lying.victim = session.address(WITHDRAWER)
        session.service.gates.ledger = lying
        t = _run(session)
        assert session.committed == [t]
        published = session.api.interval_orders(t)
        assert [d["participant"] for d in published["defaulters"]] == [session.address(WITHDRAWER)]
        report = _audit(session)
        assert not report.ok
        [interval] = [r for r in report.intervals if r.interval == t]
        assert DEFAULTERS in interval.failed_checks
        line = interval.line()
        assert line.startswith(f"interval {t}  FAIL")
        assert f"{session.address(WITHDRAWER)} was dropped as short at block" in line
    finally:
        session.close()


def test_the_audit_fails_a_defaulter_named_at_a_block_before_the_gate_closed(
    attacked: tuple[Session, int],
) -> None:
    session, t = attacked
    body = copy.deepcopy(session.api.interval_orders(t))
    body["defaulters"][0]["block"] = 1  # before the withdrawer ever deposited
    report = _audit(session, {t: body})
    [interval] = [r for r in report.intervals if r.interval == t]
    assert DEFAULTERS in interval.failed_checks
    assert "round 1: block 1 is from before the gate closed" in interval.line()
