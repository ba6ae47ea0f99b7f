"""Defaulters at commit (issue 15, attack 3): one participant cannot void an interval.

A party that withdraws between gate closure and commit is dropped, the rest of the set is
cleared again and committed (:mod:`market.defaulters`). Here on the in-memory ledger, with
its all-or-nothing collateral rule; ``test_commit_defaulters_chain`` runs the attack on the
contract and has the audit re-derive it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from market_harness import PENALTY, PRICE, Market, make_market, signed

from ledger.merkle import MerkleTree
from market.clearing import clear
from market.defaulters import commit_locks, shortfalls
from market.gate_closure import clearing_order
from market.ledger_port import CommitReceipt, LedgerCallFailed, MemoryLedger
from market.store import COMMITTED, FROZEN


@pytest.fixture
def m(tmp_path: Path) -> Any:
    return make_market(tmp_path)


def _address(signer: Any) -> str:
    return str(signer.account.address).lower()


def _book(m: Market, t: int) -> Any:
    """alice bids 1000 Wh high, carol 500 Wh at the price; bob asks 800 Wh, carol's seller
    counterpart is bob too: alice takes all 800 while she is in the book."""
    a1 = m.service.submit_order(signed(m.alice.order(t, "buy", 1000, PRICE + 100)))
    c1 = m.service.submit_order(signed(m.carol.order(t, "buy", 500, PRICE)))
    b1 = m.service.submit_order(signed(m.bob.order(t, "sell", 800, PRICE - 100)))
    return a1, c1, b1


def _withdraw_before_the_commit(m: Market, *who: Any) -> list[int]:
    """Make each of ``who`` withdraw everything just before the first commit lands (its
    transaction ahead of the commit's); return the list the commit attempts are counted in."""
    calls: list[int] = []
    real = MemoryLedger.commit_interval

    def commit(interval: int, root: bytes, trades: Any, orders: Any) -> CommitReceipt:
        calls.append(interval)
        if len(calls) == 1:
            for signer in who:
                m.ledger.free[_address(signer)] = 0
        return real(m.ledger, interval, root, trades, orders)

    m.ledger.commit_interval = commit  # type: ignore[method-assign,assignment]
    return calls


def test_locks_and_shortfalls_follow_the_contracts_collateral_rule() -> None:
    locks = commit_locks([("b", "s", 10, 7), ("b", "s2", 5, 7)], 100)
    assert locks == {"b": 105, "s": 1000, "s2": 500}
    # Exactly covered is covered; one base unit less is short; no balance read is none.
    assert shortfalls(locks, {"b": 105, "s": 999}) == {"s": (999, 1000), "s2": (0, 500)}


def test_a_withdrawal_between_gate_closure_and_commit_drops_only_the_withdrawer(
    m: Market,
) -> None:
    t = m.t
    a1, c1, b1 = _book(m, t)
    calls = _withdraw_before_the_commit(m, m.alice)
    m.close_due(t)

    record = m.service.clearing(t)
    assert record.state == COMMITTED
    assert calls == [t, t]  # one revert for collateral, then the re-clearing committed
    root, trades = m.ledger.commits[t]
    # The root still commits the whole frozen set, the withdrawer's order included.
    assert root == MerkleTree.of([bytes.fromhex(o.id[2:]) for o in (a1, c1, b1)]).root
    expected = clear([clearing_order(o) for o in (c1, b1)])
    assert [(x.buyer.lower(), x.seller.lower(), x.quantity_wh) for x in trades] == [
        (_address(m.carol), _address(m.bob), 500)
    ]
    assert [x.price_per_wh for x in trades] == [expected.price]
    assert m.service.get_order(a1.id).status == "dropped"
    assert m.service.get_order(a1.id).filled_wh == 0
    assert m.service.get_order(c1.id).filled_wh == 500
    assert m.service.get_order(b1.id).filled_wh == 500
    clearing = record.clearing
    assert clearing is not None
    assert clearing["dropped"] == [a1.id]
    assert [(d["round"], d["participant"], d["reason"]) for d in clearing["defaulters"]] == [
        (1, _address(m.alice), "insufficient_collateral")
    ]
    first = clear([clearing_order(o) for o in (a1, c1, b1)])  # alice took all 800 Wh there
    assert first.price is not None
    assert clearing["defaulters"][0]["neededBaseUnits"] == str(800 * first.price)
    assert clearing["defaulters"][0]["freeBaseUnits"] == "0"
    assert clearing["volumeWh"] == 500
    # The dropped order is still in the published set, and has its inclusion proof.
    _, published = m.service.published_orders(t)
    assert {o.id: o.status for o in published}[a1.id] == "dropped"
    assert m.service.proof(a1.id).book_root == root


def test_a_party_short_before_the_commit_is_sent_is_dropped_without_a_revert(
    m: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = m.t
    a1, c1, b1 = _book(m, t)
    real = m.ledger.commit_interval

    def down(*args: Any, **kwargs: Any) -> Any:
        raise LedgerCallFailed("node unreachable")

    monkeypatch.setattr(m.ledger, "commit_interval", down)
    m.close_due(t)
    assert m.service.clearing(t).state == FROZEN
    m.ledger.free[_address(m.bob)] = 800 * PENALTY - 1  # one base unit short of its bond
    sent: list[Any] = []

    def send(*args: Any) -> CommitReceipt:
        sent.append(args)
        return real(*args)

    monkeypatch.setattr(m.ledger, "commit_interval", send)
    m.service.tick()
    assert m.service.clearing(t).state == COMMITTED
    assert len(sent) == 1 and sent[0][2] == []  # bob was the only seller: nothing trades
    assert {m.service.get_order(o.id).status for o in (a1, c1)} == {"closed"}
    assert m.service.get_order(b1.id).status == "dropped"


def test_dropping_a_party_can_make_another_short_in_a_second_round(m: Market) -> None:
    t = m.t
    a1, c1, b1 = _book(m, t)
    # carol has no trade in the first clearing, so she is not short there; once alice is
    # dropped she takes 500 Wh, which she can no longer pay for.
    _withdraw_before_the_commit(m, m.alice, m.carol)
    m.close_due(t)
    record = m.service.clearing(t)
    assert record.state == COMMITTED and record.clearing is not None
    assert [(d["round"], d["participant"]) for d in record.clearing["defaulters"]] == [
        (1, _address(m.alice)),
        (2, _address(m.carol)),
    ]
    assert len({d["block"] for d in record.clearing["defaulters"]}) == 1  # one read, two rounds
    assert m.ledger.commits[t][1] == ()
    assert [m.service.get_order(o.id).status for o in (a1, c1, b1)] == [
        "dropped",
        "dropped",
        "closed",
    ]


def test_when_every_party_defaults_the_interval_commits_empty(m: Market) -> None:
    t = m.t
    orders = _book(m, t)
    calls = _withdraw_before_the_commit(m, m.alice, m.bob, m.carol)
    m.close_due(t)
    record = m.service.clearing(t)
    assert record.state == COMMITTED and record.clearing is not None
    assert calls == [t, t]
    assert m.ledger.commits[t][1] == ()
    assert record.clearing["trades"] == [] and record.clearing["volumeWh"] == 0
    # bob and alice are the parties of the first clearing; carol had no trade and is kept.
    assert {d["participant"] for d in record.clearing["defaulters"]} == {
        _address(m.alice),
        _address(m.bob),
    }
    assert [m.service.get_order(o.id).status for o in orders] == ["dropped", "closed", "dropped"]


def test_the_published_re_clearing_survives_a_restart_before_the_commit(
    m: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = m.t
    a1, _c1, _b1 = _book(m, t)
    real = MemoryLedger.commit_interval
    calls: list[int] = []

    def commit(interval: int, root: bytes, trades: Any, orders: Any) -> CommitReceipt:
        calls.append(interval)
        if len(calls) == 1:
            m.ledger.free[_address(m.alice)] = 0
            return real(m.ledger, interval, root, trades, orders)  # reverts for collateral
        raise KeyboardInterrupt  # the process dies before the re-clearing is sent

    monkeypatch.setattr(m.ledger, "commit_interval", commit)
    with pytest.raises(KeyboardInterrupt):
        m.close_due(t)
    monkeypatch.undo()
    service = m.reopen()
    assert service.get_order(a1.id).status == "dropped"
    assert service.recover() == [t]
    trades = m.ledger.commits[t][1]
    assert {x.buyer.lower() for x in trades} == {_address(m.carol)}
