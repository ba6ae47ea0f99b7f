"""Gate closure: freeze, publish, clear, commit; exclusions; crash recovery; concurrency."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from market_harness import PENALTY, PRICE, Market, account, make_market, signed

from ledger.errors import RequestError
from ledger.merkle import MerkleTree, leaf_hash, verify
from market.clearing import clear
from market.client import OrderSigner
from market.http.errors import IntervalClosed, IntervalNotClosed, NotOperator, OrderNotInBook
from market.ledger_port import LedgerCallFailed
from market.orders import Order, Side
from market.store import COMMITTED, EMPTY, FROZEN


@pytest.fixture
def m(tmp_path: Path) -> Any:
    return make_market(tmp_path)


def _clearing(m: Market, t: int) -> dict[str, Any]:
    clearing = m.service.clearing(t).clearing
    assert clearing is not None
    return clearing


def _book(m: Market, t: Any) -> Any:
    a1 = m.service.submit_order(signed(m.alice.order(t, "buy", 1000, PRICE + 100)))
    a2 = m.service.submit_order(signed(m.carol.order(t, "buy", 500, PRICE)))
    b1 = m.service.submit_order(signed(m.bob.order(t, "sell", 800, PRICE - 100)))
    return a1, a2, b1


def test_gate_closure_commits_the_clearing_of_the_frozen_book(m: Market) -> None:
    t = m.t
    orders = _book(m, t)
    with pytest.raises(IntervalNotClosed):
        m.service.close_gate(t)
    m.close_due(t)
    record = m.service.clearing(t)
    assert record.state == COMMITTED
    expected = clear(
        [
            Order(
                o.id, Side.BUY if o.side == 0 else Side.SELL, o.quantity_wh, o.price_per_wh, o.seq
            )
            for o in orders
        ]
    )
    assert expected.price is not None
    assert _clearing(m, t)["price"] == str(expected.price)
    assert _clearing(m, t)["volumeWh"] == expected.volume_wh == 800
    root, trades = m.ledger.commits[t]
    assert root == MerkleTree.of([bytes.fromhex(o.id[2:]) for o in orders]).root
    assert "0x" + root.hex() == record.book_root
    assert [(tr.buy_order_id.hex(), tr.sell_order_id.hex(), tr.quantity_wh) for tr in trades] == [
        (t_.buy[2:], t_.sell[2:], t_.quantity_wh) for t_ in expected.trades
    ]
    # The chain locked what the trades need: buyer q*price, seller q*penalty.
    assert m.ledger.locked[m.alice.account.address.lower()] == 800 * expected.price
    assert m.ledger.locked[m.bob.account.address.lower()] == 800 * PENALTY


def test_published_set_has_every_order_with_signature_and_fills(m: Market) -> None:
    t = m.t
    orders = _book(m, t)
    with pytest.raises(IntervalNotClosed):
        m.service.published_orders(t)
    m.close_due(t)
    _record, published = m.service.published_orders(t)
    assert [o.id for o in published] == [o.id for o in orders]
    assert [o.signature for o in published] == [o.signature for o in orders]
    assert sum(o.filled_wh or 0 for o in published if o.side == 0) == 800


def test_every_published_order_has_a_proof_against_the_committed_root(m: Market) -> None:
    t = m.t
    orders = _book(m, t)
    with pytest.raises(IntervalNotClosed):
        m.service.proof(orders[0].id)
    m.close_due(t)
    root = m.ledger.commits[t][0]
    for order in orders:
        proof = m.service.proof(order.id)
        assert proof.book_root == root
        assert verify(proof.proof, root, leaf_hash(bytes.fromhex(order.id[2:])))


def test_orders_after_gate_closure_and_cancels_are_refused(m: Market) -> None:
    t = m.t
    a1, _, _ = _book(m, t)
    m.close_due(t)
    with pytest.raises(IntervalClosed):
        m.service.submit_order(signed(m.alice.order(t, "buy", 10, PRICE)))
    with pytest.raises(RequestError) as caught:
        m.service.cancel_order(a1.id, signed(m.alice.cancel(a1.id)))
    assert caught.value.code in ("order_not_open", "interval_closed")


def test_cancelled_order_is_not_in_the_book_and_has_no_proof(m: Market) -> None:
    t = m.t
    _a1, a2, _b1 = _book(m, t)
    m.service.cancel_order(a2.id, signed(m.carol.cancel(a2.id)))
    m.close_due(t)
    _, published = m.service.published_orders(t)
    assert a2.id not in {o.id for o in published}
    with pytest.raises(OrderNotInBook):
        m.service.proof(a2.id)


def test_participant_who_withdrew_is_left_out_so_the_commit_cannot_revert(m: Market) -> None:
    t = m.t
    a1, a2, _b1 = _book(m, t)
    m.ledger.free[m.alice.account.address.lower()] = 10  # withdrew almost everything
    m.close_due(t)
    record = m.service.clearing(t)
    assert record.state == COMMITTED
    assert _clearing(m, t)["excluded"] == [a1.id]
    assert m.service.get_order(a1.id).status == "excluded"
    assert {tr.buy_order_id.hex() for tr in m.ledger.commits[t][1]} == {a2.id[2:]}


def test_deregistered_participant_is_left_out(m: Market) -> None:
    t = m.t
    _a1, a2, _b1 = _book(m, t)
    m.ledger.registered.discard(m.carol.account.address.lower())
    m.close_due(t)
    assert _clearing(m, t)["excluded"] == [a2.id]


def test_failed_commit_leaves_the_interval_frozen_and_tick_retries(
    m: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = m.t
    _book(m, t)
    real = m.ledger.commit_interval

    def down(*args: Any, **kwargs: Any) -> Any:
        raise LedgerCallFailed("node unreachable")

    monkeypatch.setattr(m.ledger, "commit_interval", down)
    m.close_due(t)
    assert m.service.clearing(t).state == FROZEN
    assert t not in m.ledger.commits
    monkeypatch.setattr(m.ledger, "commit_interval", real)
    m.service.tick()
    assert m.service.clearing(t).state == COMMITTED
    assert t in m.ledger.commits


def test_restart_after_commit_landed_but_was_not_recorded_does_not_commit_twice(
    m: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = m.t
    _book(m, t)
    monkeypatch.setattr(
        m.service.store, "record_commit", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt())
    )
    with pytest.raises(KeyboardInterrupt):  # the process dies right after the transaction
        m.close_due(t)
    assert t in m.ledger.commits
    service = m.reopen()
    assert service.clearing(t).state == FROZEN
    assert service.recover() == [t]
    assert service.clearing(t).state == COMMITTED


def test_restart_between_freeze_and_commit_commits_the_same_book(
    m: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = m.t
    orders = _book(m, t)
    monkeypatch.setattr(
        m.ledger, "commit_interval", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt())
    )
    with pytest.raises(KeyboardInterrupt):
        m.close_due(t)
    monkeypatch.undo()
    service = m.reopen()
    assert service.recover() == [t]
    root = MerkleTree.of([bytes.fromhex(o.id[2:]) for o in orders]).root
    assert m.ledger.commits[t][0] == root


def test_interval_without_orders_is_not_due_and_closes_empty_when_forced(m: Market) -> None:
    t = m.t
    m.clock.set(m.service.gate_closure_at(t))
    assert m.service.tick() == []
    record = m.service.close_gate(t)
    assert record.state == EMPTY and record.book_root == "0x" + "00" * 32
    assert t not in m.ledger.commits


def test_operator_can_close_early_with_a_signed_message_and_nobody_else_can(m: Market) -> None:
    t = m.t
    _book(m, t)
    with pytest.raises(NotOperator):
        m.service.operator_close_gate(t, signed(m.alice.close_gate(t)))
    assert m.service.interval(t).state == "open"
    operator = OrderSigner(account(99), m.service.domain)
    record = m.service.operator_close_gate(t, signed(operator.close_gate(t)))
    assert record.state == COMMITTED
    with pytest.raises(IntervalClosed):
        m.service.submit_order(signed(m.alice.order(t, "buy", 10, PRICE)))


def test_gate_closure_waits_for_orders_being_written(m: Market) -> None:
    t = m.t
    prepared = m.service.prepare_orders([signed(m.alice.order(t, "buy", 10, PRICE))])
    m.clock.set(m.service.gate_closure_at(t))
    done = threading.Event()

    def close() -> None:
        m.service.close_gate(t)
        done.set()

    thread = threading.Thread(target=close)
    thread.start()
    assert not done.wait(0.3)  # blocked until the prepared order is stored
    m.service.commit_prepared([prepared])
    thread.join(5)
    assert done.is_set()
    _, published = m.service.published_orders(t)
    assert [o.id for o in published] == [prepared.orders[0].id]


def test_commit_lowers_the_cached_free_balance(m: Market) -> None:
    t = m.t
    _book(m, t)
    m.close_due(t)
    alice = m.alice.account.address.lower()
    assert m.service.collateral.free[alice] == m.ledger.free[alice]
