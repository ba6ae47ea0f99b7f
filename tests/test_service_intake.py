"""Order intake: signatures, nonces, interval window, collateral, batches, restart."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from market_harness import PENALTY, PRICE, TOKEN, Market, account, make_market, signed

from market.client import OrderSigner
from market.http.errors import (
    BatchRejected,
    BatchTooLarge,
    InsufficientCollateral,
    IntervalClosed,
    IntervalTooFar,
    NonceUsed,
    NotYourOrder,
    OrderExpired,
    OrderNotOpen,
    SelfCross,
    SignerMismatch,
    UnregisteredParticipant,
)
from market.service import MarketConfig


@pytest.fixture
def m(tmp_path: Path) -> Any:
    return make_market(tmp_path)


def test_accepted_order_is_open_with_its_hash_as_id_and_increasing_seq(m: Market) -> None:
    first = m.service.submit_order(signed(m.alice.order(m.t, "buy", 1000, PRICE)))
    second = m.service.submit_order(signed(m.bob.order(m.t, "sell", 1000, PRICE)))
    assert first.id.startswith("0x") and len(first.id) == 66
    assert (first.status, second.seq) == ("open", first.seq + 1)
    assert m.service.get_order(first.id) == first


def test_replayed_order_is_refused_as_nonce_used(m: Market) -> None:
    body = m.alice.order(m.t, "buy", 1000, PRICE)
    m.service.submit_order(signed(body))
    with pytest.raises(NonceUsed):
        m.service.submit_order(signed(body))


def test_order_and_cancel_share_the_signers_nonces(m: Market) -> None:
    order = m.service.submit_order(signed(m.alice.order(m.t, "buy", 10, PRICE, nonce=5)))
    with pytest.raises(NonceUsed):
        m.service.cancel_order(order.id, signed(m.alice.cancel(order.id, nonce=5)))


def test_signature_by_another_key_is_a_signer_mismatch(m: Market) -> None:
    body = m.alice.order(m.t, "buy", 10, PRICE)
    body["signature"] = m.bob.order(m.t, "buy", 10, PRICE)["signature"]
    with pytest.raises(SignerMismatch):
        m.service.submit_order(signed(body))


def test_signature_for_another_contract_is_refused(m: Market) -> None:
    from ledger.eip712 import Domain

    foreign = OrderSigner(account(1), Domain(m.ledger.chain_id, "0x" + "ab" * 20))
    with pytest.raises(SignerMismatch):
        m.service.submit_order(signed(foreign.order(m.t, "buy", 10, PRICE)))


def test_unregistered_participant_is_refused(m: Market) -> None:
    stranger = OrderSigner(account(50), m.service.domain)
    with pytest.raises(UnregisteredParticipant):
        m.service.submit_order(signed(stranger.order(m.t, "buy", 10, PRICE)))


def test_expiry_is_exclusive_of_now(m: Market) -> None:
    now = m.clock.now()
    with pytest.raises(OrderExpired):
        m.service.submit_order(signed(m.alice.order(m.t, "buy", 10, PRICE, expiry=now)))
    m.service.submit_order(signed(m.alice.order(m.t, "buy", 10, PRICE, expiry=now + 1)))


def test_gate_closure_time_is_the_first_second_refused(m: Market) -> None:
    t = m.t
    m.clock.set(m.service.gate_closure_at(t) - 1)
    m.service.submit_order(signed(m.alice.order(t, "buy", 10, PRICE)))
    m.clock.set(m.service.gate_closure_at(t))
    with pytest.raises(IntervalClosed):
        m.service.submit_order(signed(m.alice.order(t, "buy", 10, PRICE)))
    with pytest.raises(IntervalClosed):
        m.service.submit_order(signed(m.alice.order(t - 5, "buy", 10, PRICE)))


def test_interval_too_far_ahead_is_refused_at_the_exact_bound(tmp_path: Path) -> None:
    m = make_market(tmp_path, config=MarketConfig(max_ahead_intervals=4))
    last = m.service.current_interval() + 4
    m.service.submit_order(signed(m.alice.order(last, "buy", 10, PRICE)))
    with pytest.raises(IntervalTooFar):
        m.service.submit_order(signed(m.alice.order(last + 1, "buy", 10, PRICE)))


def test_buyer_collateral_is_quantity_times_limit_across_intervals(tmp_path: Path) -> None:
    m = make_market(tmp_path, deposit=3000 * PRICE)
    m.service.submit_order(signed(m.alice.order(m.t, "buy", 1000, PRICE)))
    m.service.submit_order(signed(m.alice.order(m.t + 1, "buy", 1990, PRICE)))
    with pytest.raises(InsufficientCollateral):
        m.service.submit_order(signed(m.alice.order(m.t + 2, "buy", 11, PRICE)))
    m.service.submit_order(signed(m.alice.order(m.t + 2, "buy", 10, PRICE)))  # exactly enough


def test_seller_collateral_is_quantity_times_penalty_price(tmp_path: Path) -> None:
    m = make_market(tmp_path, deposit=1000 * PENALTY)
    # The ask's own limit price does not matter for its bond.
    m.service.submit_order(signed(m.bob.order(m.t, "sell", 1000, 1)))
    with pytest.raises(InsufficientCollateral):
        m.service.submit_order(signed(m.bob.order(m.t, "sell", 10, 1)))


def test_a_fresh_deposit_is_seen_when_the_cached_balance_falls_short(tmp_path: Path) -> None:
    m = make_market(tmp_path, deposit=10 * PRICE)
    m.service.submit_order(signed(m.alice.order(m.t, "buy", 10, PRICE)))
    body = m.alice.order(m.t, "buy", 10, PRICE)
    with pytest.raises(InsufficientCollateral):
        m.service.submit_order(signed(body))
    m.ledger.free[m.alice.account.address.lower()] += 10 * PRICE
    m.service.submit_order(signed(body))


def test_intake_does_not_read_the_chain_for_a_known_funded_participant(m: Market) -> None:
    m.service.submit_order(signed(m.alice.order(m.t, "buy", 10, PRICE)))
    reads = m.ledger.balance_reads
    for i in range(20):  # over several intervals: one holds at most 16 orders of one key
        m.service.submit_order(signed(m.alice.order(m.t + i % 4, "buy", 10, PRICE)))
    assert m.ledger.balance_reads == reads


def test_cancel_releases_collateral_and_is_only_for_the_owner(tmp_path: Path) -> None:
    m = make_market(tmp_path, deposit=1000 * PRICE)
    order = m.service.submit_order(signed(m.alice.order(m.t, "buy", 1000, PRICE)))
    with pytest.raises(NotYourOrder):
        m.service.cancel_order(order.id, signed(m.bob.cancel(order.id)))
    cancelled = m.service.cancel_order(order.id, signed(m.alice.cancel(order.id)))
    assert cancelled.status == "cancelled"
    with pytest.raises(OrderNotOpen):
        m.service.cancel_order(order.id, signed(m.alice.cancel(order.id)))
    m.service.submit_order(signed(m.alice.order(m.t, "buy", 1000, PRICE)))


def test_batch_is_all_or_nothing_and_lists_every_bad_order(m: Market) -> None:
    good = m.alice.order(m.t, "buy", 10, PRICE)
    replay = m.bob.order(m.t, "sell", 10, PRICE)
    m.service.submit_order(signed(replay))
    bodies = [good, replay, m.bob.order(m.t + 10_000, "sell", 10, PRICE)]
    with pytest.raises(BatchRejected) as caught:
        m.service.submit_orders([signed(b) for b in bodies])
    assert [(e["index"], e["code"]) for e in caught.value.extra["errors"]] == [
        (1, "nonce_used"),
        (2, "interval_too_far"),
    ]
    assert m.service.open_order_count() == 1
    m.service.submit_order(signed(good))  # its nonce was released


def test_batch_collateral_is_cumulative_within_the_batch(tmp_path: Path) -> None:
    m = make_market(tmp_path, deposit=15 * PRICE)
    bodies = [m.alice.order(m.t, "buy", 10, PRICE), m.alice.order(m.t, "buy", 10, PRICE)]
    with pytest.raises(BatchRejected) as caught:
        m.service.submit_orders([signed(b) for b in bodies])
    assert caught.value.extra["errors"][0]["code"] == "insufficient_collateral"


def test_batch_over_the_limit_is_refused(tmp_path: Path) -> None:
    m = make_market(tmp_path, config=MarketConfig(max_batch_orders=2))
    bodies = [m.alice.order(m.t, "buy", 10, PRICE) for _ in range(3)]
    with pytest.raises(BatchTooLarge):
        m.service.submit_orders([signed(b) for b in bodies])


def test_restart_recovers_open_book_nonces_sequence_and_reservations(tmp_path: Path) -> None:
    m = make_market(tmp_path, deposit=2000 * PRICE)
    body = m.alice.order(m.t, "buy", 1000, PRICE)
    kept = m.service.submit_order(signed(body))
    gone = m.service.submit_order(signed(m.alice.order(m.t, "buy", 500, PRICE)))
    m.service.cancel_order(gone.id, signed(m.alice.cancel(gone.id)))
    service = m.reopen()
    assert [o.id for o in service.book_orders(m.t)] == [kept.id]
    with pytest.raises(NonceUsed):
        service.submit_order(signed(body))
    with pytest.raises(InsufficientCollateral):
        service.submit_order(signed(m.alice.order(m.t, "buy", 1001, PRICE)))
    again = service.submit_order(signed(m.alice.order(m.t, "buy", 1000, PRICE)))
    assert again.seq > gone.seq


def test_concurrent_submissions_of_one_nonce_accept_exactly_one(m: Market) -> None:
    body = m.alice.order(m.t, "buy", 10, PRICE)
    outcomes: list[str] = []

    def submit() -> None:
        try:
            m.service.submit_order(signed(body))
            outcomes.append("ok")
        except NonceUsed:
            outcomes.append("replay")

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok"] + ["replay"] * 7


def test_large_amounts_stay_exact(tmp_path: Path) -> None:
    m = make_market(tmp_path, deposit=10**40)
    price = 2**63 - 1
    order = m.service.submit_order(signed(m.alice.order(m.t, "buy", 2**40 - 1, price)))
    assert order.price_per_wh == price
    assert m.service.participant(m.alice.account.address).reserved_base_units == (
        (2**40 - 1) * price
    )
    assert TOKEN == 10**18


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("order"), st.sampled_from(["buy", "sell"]), st.integers(1, 6)),
            st.tuples(st.just("cancel"), st.integers(0, 50), st.just(0)),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_self_cross_is_refused_exactly_when_a_naive_scan_finds_a_crossing_own_order(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, Any, int]]
) -> None:
    many = MarketConfig(max_orders_per_interval=100)  # the cap is not what this checks
    m = make_market(tmp_path_factory.mktemp("cross"), deposit=10**6 * PRICE, config=many)
    mine: dict[str, tuple[str, int]] = {}  # open order id -> (side, price), the reference
    for kind, what, level in steps:
        if kind == "cancel":
            if mine:
                order_id = sorted(mine)[what % len(mine)]
                m.service.cancel_order(order_id, signed(m.alice.cancel(order_id)))
                del mine[order_id]
            continue
        price = level * PRICE
        crosses = any(
            side != what and (price >= p if what == "buy" else p >= price)
            for side, p in mine.values()
        )
        body = m.alice.order(m.t, what, 10, price)
        if crosses:
            with pytest.raises(SelfCross):
                m.service.submit_order(signed(body))
        else:
            mine[m.service.submit_order(signed(body)).id] = (what, price)
