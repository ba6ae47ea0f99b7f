"""Gate closure of intervals without live orders, and of orders whose expiry has passed.

* an interval whose gate passed with no live order (none came, or all were cancelled) is
  closed and empty, not ``interval_not_closed`` for ever;
* an order whose expiry passed by the gate closure does not trade: it is published as
  ``expired``, its reservation is released, and the audit re-clears by the same rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from market_harness import PRICE, Market, account, make_market, signed
from test_audit_support import AuditChain

from audit.order_sources import MappingOrderSource
from audit.run import audit_market
from ledger.merkle import MerkleTree
from market.client import MarketApiError, MarketClient
from market.http.app import create_app
from market.store import EMPTY

# -- empty intervals --------------------------------------------------------------------------


@pytest.fixture
def m(tmp_path: Path) -> Market:
    return make_market(tmp_path)


def _api(m: Market) -> MarketClient:
    return MarketClient(app=create_app(m.service), account=account(1))


def _assert_empty(api: MarketClient, m: Market, t: int) -> None:
    clearing = api.clearing(t)
    assert clearing["state"] == EMPTY
    assert clearing["volumeWh"] == 0 and clearing["pricePerWh"] is None
    assert clearing["trades"] == [] and clearing["excluded"] == []
    assert clearing["commit"] is None
    assert clearing["bookRoot"] == "0x" + "00" * 32
    published = api.interval_orders(t)
    assert published["state"] == EMPTY and published["orders"] == []
    assert published["bookRoot"] == clearing["bookRoot"]
    book = api.book(t)
    assert book["state"] == EMPTY and book["bids"] == [] and book["asks"] == []
    assert t not in m.ledger.commits  # nothing to anchor on-chain


def test_an_interval_without_orders_is_empty_once_its_gate_has_passed(m: Market) -> None:
    t = m.t
    with _api(m) as api:
        with pytest.raises(MarketApiError) as caught:
            api.clearing(t)
        assert caught.value.code == "interval_not_closed"  # the gate is still open
        m.clock.set(m.service.gate_closure_at(t) + 3 * 3600)
        m.service.tick()
        _assert_empty(api, m, t)
        # A closed empty interval takes no order.
        with pytest.raises(MarketApiError) as caught:
            api.submit_order(t, "buy", 10, PRICE)
        assert caught.value.code == "interval_closed"


def test_an_interval_whose_only_order_was_cancelled_is_empty(m: Market) -> None:
    t = m.t
    with _api(m) as api:
        order = api.submit_order(t, "buy", 100, PRICE)
        api.cancel_order(order["id"])
        m.close_due(t)
        _assert_empty(api, m, t)
        assert api.get_order(order["id"])["status"] == "cancelled"
    m.reopen()
    with _api(m) as api:  # the same answer after a restart
        _assert_empty(api, m, t)


def test_an_interval_with_an_open_order_is_not_empty_before_its_gate_closure_runs(
    m: Market,
) -> None:
    t = m.t
    m.service.submit_order(signed(m.alice.order(t, "buy", 100, PRICE)))
    m.clock.set(m.service.gate_closure_at(t))
    assert m.service.interval(t).state == "open"  # due: the next tick closes it
    m.service.tick()
    assert m.service.interval(t).state == "committed"


# -- expiry -----------------------------------------------------------------------------------


def test_an_order_expired_at_gate_closure_does_not_trade(m: Market) -> None:
    t = m.t
    gate = m.service.gate_closure_at(t)
    dead = m.service.submit_order(
        signed(m.alice.order(t, "buy", 500, PRICE + 100, expiry=gate - 1))
    )
    # Valid until the gate closes: it clears (the simulation signs its orders so).
    live = m.service.submit_order(signed(m.carol.order(t, "buy", 300, PRICE, expiry=gate)))
    ask = m.service.submit_order(signed(m.bob.order(t, "sell", 800, PRICE - 100)))
    alice = m.alice.account.address
    assert m.service.participant(alice).reserved_base_units == 500 * (PRICE + 100)

    m.clock.set(gate + 60)  # a late tick: the gate still closed at its time
    m.service.tick()
    root, trades = m.ledger.commits[t]
    assert [(tr.buy_order_id.hex(), tr.quantity_wh) for tr in trades] == [(live.id[2:], 300)]
    assert m.service.get_order(dead.id).status == "expired"
    assert m.service.get_order(dead.id).filled_wh == 0
    assert m.service.participant(alice).reserved_base_units == 0
    assert m.service.participant(alice).locked_base_units == 0
    with _api(m) as api:
        assert api.get_order(dead.id)["status"] == "expired"
        published = api.interval_orders(t)
        assert published["closedAt"] == gate
        assert [(o["id"], o["status"], o["filledWh"]) for o in published["orders"]] == [
            (dead.id, "expired", 0),
            (live.id, "closed", 300),
            (ask.id, "closed", 300),
        ]
        # The expired order is in the committed book and has a proof, but does not clear.
        assert root == MerkleTree.of([bytes.fromhex(o.id[2:]) for o in (dead, live, ask)]).root
        assert api.order_proof(dead.id)["bookRoot"] == "0x" + root.hex()
        clearing = api.clearing(t)
        assert clearing["expired"] == [dead.id] and clearing["volumeWh"] == 300
        assert api.participant_orders(alice, status="expired")[0]["id"] == dead.id


def test_an_interval_whose_orders_all_expired_is_committed_without_trades(m: Market) -> None:
    t = m.t
    gate = m.service.gate_closure_at(t)
    bid = m.service.submit_order(signed(m.alice.order(t, "buy", 50, PRICE, expiry=gate - 1)))
    m.close_due(t)
    root, trades = m.ledger.commits[t]
    assert trades == () and root == MerkleTree.of([bytes.fromhex(bid.id[2:])]).root
    assert m.service.clearing(t).state == "committed"
    assert m.service.get_order(bid.id).status == "expired"


# -- the audit applies the expiry rule --------------------------------------------------------


def test_the_audit_re_clears_without_expired_orders_and_checks_their_marking() -> None:
    base = AuditChain()
    with base.session() as session:
        t = session.next_interval()
        gate = session.service.gate_closure_at(t)
        alice, bob, carol = session.clients[:3]
        dead = alice.submit_order(t, "buy", 500, PRICE + 100, expiry=gate - 1)
        carol.submit_order(t, "buy", 300, PRICE, expiry=session.expiry)
        bob.submit_order(t, "sell", 800, PRICE - 100, expiry=session.expiry)
        session.close_gate(t)
        assert session.committed == [t]
        assert session.api.clearing(t)["volumeWh"] == 300

        report = audit_market(session.chain, base.market, session.api)
        assert report.ok, "\n".join(report.lines())

        published = session.api.interval_orders(t)
        unmarked = json.loads(json.dumps(published))
        for entry in unmarked["orders"]:
            if entry["id"] == dead["id"]:
                entry["status"] = "closed"
        bent = audit_market(session.chain, base.market, MappingOrderSource({t: unmarked}))
        assert not bent.ok
        assert any("not published expired" in v.message for v in bent.violations)
        # Without the rule (no closedAt) the expired bid would have traded: re-clearing fails.
        undated = {k: v for k, v in published.items() if k != "closedAt"}
        bent = audit_market(session.chain, base.market, MappingOrderSource({t: undated}))
        assert not bent.ok
        assert {v.check for v in bent.violations} >= {"reclear"}
