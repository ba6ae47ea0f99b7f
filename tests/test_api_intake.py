"""The order intake's own answer writing agrees with the generic view."""

from __future__ import annotations

import functools
import json
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st
from market_harness import PRICE, make_market

from market.client import AppTransport
from market.http.app import create_app
from market.http.views import order_view
from market.store import StoredOrder

fresh_orders = st.builds(
    StoredOrder,
    id=st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex()),
    seq=st.integers(1, 2**62),
    participant=st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
    interval=st.integers(0, 2**64 - 1),
    side=st.sampled_from([0, 1]),
    quantity_wh=st.integers(1, 2**40),
    price_per_wh=st.integers(1, 2**128 - 1),
    nonce=st.integers(0, 2**64 - 1),
    expiry=st.integers(0, 2**64 - 1),
    signature=st.binary(min_size=65, max_size=65).map(lambda b: "0x" + b.hex()),
    received_at=st.integers(0, 2**40),
    status=st.just("open"),
    filled_wh=st.none(),
    cancel=st.none(),
    receipt=st.binary(min_size=65, max_size=65).map(lambda b: "0x" + b.hex()) | st.none(),
    node=st.from_regex(r"[A-Za-z0-9_.:-]{1,128}", fullmatch=True) | st.text(max_size=8),
)


@functools.cache
def _intake() -> Any:
    return create_app(make_market(Path(tempfile.mkdtemp(prefix="intake-"))).service).intake


@given(order=fresh_orders)
def test_accepted_order_json_is_the_json_of_its_view(order: Any) -> None:
    text = _intake()._accepted_json(order)
    assert text == json.dumps(order_view(order), separators=(",", ":"))


def test_an_order_that_is_not_fresh_is_written_by_the_generic_view() -> None:
    intake = _intake()
    order = StoredOrder("0x" + "ab" * 32, 1, "0x" + "cd" * 20, 5, 1, 10, PRICE, 1, 2, "0x", 3)
    cancelled = order._replace(status="cancelled", cancel={"at": 4})
    assert json.loads(intake._accepted_json(cancelled)) == order_view(cancelled)


def test_a_first_order_reads_the_chain_beside_the_event_loop(tmp_path: Path) -> None:
    m = make_market(tmp_path)
    transport = AppTransport(create_app(m.service))
    threads: list[threading.Thread] = []
    for name in ("is_registered", "balances"):
        original = getattr(m.ledger, name)

        def recording(*args: Any, _original: Any = original) -> Any:
            threads.append(threading.current_thread())
            return _original(*args)

        setattr(m.ledger, name, recording)
    with httpx.Client(transport=transport, base_url="http://market.test") as http:
        first = http.post("/orders", json=m.alice.order(m.t, "buy", 10, PRICE))
        batch = [m.bob.order(m.t, "sell", 10, PRICE + 1), m.carol.order(m.t, "buy", 10, PRICE)]
        second = http.post("/orders:batch", json={"orders": batch})
    transport.close()
    assert (first.status_code, second.status_code) == (201, 201)
    assert len(threads) == 6  # registration and free balance of each of the three, once
    assert transport._thread not in threads


def _storing_threads(m: Any, fail: list[bool]) -> list[threading.Thread]:
    """Record the thread of every order-store write; raise StoreError while ``fail[0]``."""
    from market.store import StoreError

    threads: list[threading.Thread] = []
    original = m.service.store.insert_orders

    def recording(rows: Any) -> None:
        threads.append(threading.current_thread())
        if fail[0]:
            raise StoreError("disk full")
        original(rows)

    m.service.store.insert_orders = recording
    return threads


def test_inline_commits_store_orders_on_the_event_loop_and_a_server_on_a_worker(
    tmp_path: Path,
) -> None:
    for inline in (True, False):
        folder = tmp_path / str(inline)
        folder.mkdir()
        m = make_market(folder)
        threads = _storing_threads(m, [False])
        transport = AppTransport(create_app(m.service, inline_commits=inline))
        with httpx.Client(transport=transport, base_url="http://market.test") as http:
            http.post("/orders", json=m.alice.order(m.t, "buy", 10, PRICE))  # first sight
            order = m.bob.order(m.t, "sell", 10, PRICE + 1)
            http.post("/orders", json=m.bob.order(m.t, "sell", 50, PRICE + 2))
            threads.clear()
            answer = http.post("/orders", json=order)
        transport.close()
        assert answer.status_code == 201
        assert m.service.store.get_order(answer.json()["id"]) is not None
        assert len(threads) == 1
        assert (threads[0] is transport._thread) == inline


def test_an_inline_commit_that_fails_answers_503_and_releases_the_order(tmp_path: Path) -> None:
    m = make_market(tmp_path)
    fail = [True]
    _storing_threads(m, fail)
    transport = AppTransport(create_app(m.service, inline_commits=True))
    order = m.alice.order(m.t, "buy", 10, PRICE)
    with httpx.Client(transport=transport, base_url="http://market.test") as http:
        refused = http.post("/orders", json=order)
        fail[0] = False
        accepted = http.post("/orders", json=order)  # nonce and collateral were released
    transport.close()
    assert refused.status_code == 503
    assert refused.json()["code"] == "service_unavailable"
    assert accepted.status_code == 201
