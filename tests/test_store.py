"""The SQLite order store: WAL + synchronous=FULL, atomic writes, and recovery after reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from market.store import (
    CANCELLED,
    CLOSED,
    COMMITTED,
    EXCLUDED,
    FROZEN,
    OPEN,
    IntervalRecord,
    OrderStore,
    StoredOrder,
    StoreError,
)


def make_order(seq: int, participant: str = "0x" + "aa" * 20, **kw: Any) -> StoredOrder:
    fields: dict[str, Any] = dict(
        id="0x" + f"{seq:064x}",
        seq=seq,
        participant=participant,
        interval=10,
        side=seq % 2,
        quantity_wh=100 * seq,
        price_per_wh=2**62 + seq,
        nonce=2**64 - seq,  # above SQLite's signed 64-bit range
        expiry=2**64 - 1,
        signature="0x" + "11" * 65,
        received_at=1_700_000_000,
    )
    fields.update(kw)
    return StoredOrder(**fields)


def _get(store: OrderStore, order_id: str) -> StoredOrder:
    order = store.get_order(order_id)
    assert order is not None
    return order


def _interval(store: OrderStore, interval: int) -> IntervalRecord:
    record = store.get_interval(interval)
    assert record is not None
    return record


@pytest.fixture
def path(tmp_path: Path) -> Any:
    return tmp_path / "orders.db"


def test_store_runs_in_wal_mode_with_full_sync(path: Any) -> None:
    store = OrderStore(path)
    assert store.pragma("journal_mode") == "wal"
    assert store.pragma("synchronous") == 2  # FULL


def test_orders_nonces_and_sequence_survive_reopening(path: Any) -> None:
    store = OrderStore(path)
    orders = [make_order(1), make_order(2), make_order(3, participant="0x" + "bb" * 20)]
    store.insert_orders(orders)
    store.close()
    reopened = OrderStore(path)
    assert reopened.open_orders() == orders
    assert reopened.max_seq() == 3
    assert set(reopened.used_nonces()) == {(o.participant, o.nonce) for o in orders}
    assert reopened.get_order(orders[1].id) == orders[1]


def test_a_write_is_visible_to_another_connection_as_soon_as_it_returns(path: Any) -> None:
    store = OrderStore(path)
    store.insert_orders([make_order(1)])
    other = sqlite3.connect(path)
    assert other.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 1


def test_a_batch_with_a_replayed_nonce_stores_nothing(path: Any) -> None:
    store = OrderStore(path)
    store.insert_orders([make_order(1)])
    replay = make_order(2, nonce=make_order(1).nonce)
    with pytest.raises(StoreError):
        store.insert_orders([make_order(3), replay])
    assert [o.seq for o in store.open_orders()] == [1]
    assert len(list(store.used_nonces())) == 1


def test_cancel_marks_the_order_and_uses_the_nonce_once(path: Any) -> None:
    store = OrderStore(path)
    order = make_order(1)
    store.insert_orders([order])
    store.cancel_order(order.id, order.participant, 7, {"signature": "0x"})
    assert _get(store, order.id).status == CANCELLED
    assert store.open_orders() == []
    with pytest.raises(StoreError):
        store.cancel_order(order.id, order.participant, 8, {})
    with pytest.raises(StoreError):
        store.use_nonce(order.participant, 7)


def test_gate_closure_record_and_commit_round_trip(path: Any) -> None:
    store = OrderStore(path)
    a, b, c = make_order(1), make_order(2), make_order(3)
    store.insert_orders([a, b, c])
    store.freeze_interval(
        10, 123, "0x" + "ee" * 32, [a.id, b.id], [c.id], {"price": "5"}, {a.id: 50}
    )
    record = _interval(store, 10)
    assert record.state == FROZEN and record.clearing == {"price": "5"}
    assert [o.id for o in store.interval_orders(10)] == [a.id, b.id]
    assert _get(store, a.id).filled_wh == 50 and _get(store, b.id).filled_wh == 0
    assert _get(store, c.id).status == EXCLUDED
    assert store.intervals_in_state(FROZEN) == [10]
    store.record_commit(10, "0xabc", 5)
    record = _interval(store, 10)
    assert (record.state, record.commit_tx, record.commit_block) == (COMMITTED, "0xabc", 5)
    assert _get(store, a.id).status == CLOSED
    with pytest.raises(StoreError):  # an interval closes once
        store.freeze_interval(10, 124, "0x" + "ee" * 32, [], [], {}, {})


def test_orders_of_filters_by_status_and_interval(path: Any) -> None:
    store = OrderStore(path)
    store.insert_orders([make_order(1), make_order(2, interval=11)])
    who = make_order(1).participant
    assert [o.seq for o in store.orders_of(who)] == [1, 2]
    assert [o.seq for o in store.orders_of(who, interval=11)] == [2]
    assert [o.seq for o in store.orders_of(who, status=OPEN, interval=10)] == [1]
    assert store.orders_of(who, status=CANCELLED) == []


def test_a_store_refuses_another_deployment(path: Any) -> None:
    OrderStore(path).bind_deployment(31337, "0x" + "11" * 20)
    OrderStore(path).bind_deployment(31337, "0x" + "11" * 20)  # same one: fine
    with pytest.raises(StoreError, match="chain_id"):
        OrderStore(path).bind_deployment(1, "0x" + "11" * 20)
    with pytest.raises(StoreError, match="market"):
        OrderStore(path).bind_deployment(31337, "0x" + "22" * 20)


def test_unwritable_location_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        OrderStore(tmp_path / "missing-dir" / "orders.db")
