"""The pure settlement model: allocation, penalty, conservation and the Ledger bookkeeping."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.contract_errors import (
    ChunkOutOfRange,
    InsufficientCollateral,
    InsufficientFreeBalance,
    IntervalAlreadyCommitted,
    IntervalAlreadySettled,
    ParticipantNotRegistered,
    ReadingAlreadySubmitted,
    SelfTrade,
    SoldQuantityOverflow,
    ZeroAmount,
    ZeroPrice,
    ZeroQuantity,
)
from ledger.records import Reading, Terms, Trade, seller_positions
from settlement.model import (
    UINT64_MAX,
    Ledger,
    collateral_locks,
    delivered_wh,
    penalty_base_units,
    settle_interval,
    settle_range,
    tolerance_wh,
)

A, B, C, D = (f"0x{i:040x}" for i in (0xA, 0xB, 0xC, 0xD))
TERMS = Terms(penalty_price_per_wh=7, tolerance_bps=500, reading_window_seconds=60)


def test_full_delivery_gives_every_trade_its_quantity() -> None:
    assert delivered_wh(10, 5, 20, 20) == 10
    assert delivered_wh(10, 5, 20, 1_000) == 10


def test_missing_reading_delivers_nothing() -> None:
    out = settle_interval([Trade(A, B, 100, 3)], [], TERMS)
    assert out.outcomes[0].delivered_wh == 0
    assert out.outcomes[0].refund == 300
    assert out.outcomes[0].penalty == 100 * 7


def test_remainder_carries_forward_in_commit_order() -> None:
    # Seller sold 3 x 1 Wh and exported 2: floors are 0,0,0; cumulative floors 0,1,2.
    shares = [delivered_wh(1, b, 3, 2) for b in (0, 1, 2)]
    assert shares == [0, 1, 1]
    assert sum(shares) == 2


def test_allocation_is_pro_rata_with_floor() -> None:
    trades = [Trade(A, B, 600, 1), Trade(C, B, 300, 1), Trade(A, B, 100, 1)]
    out = settle_interval(trades, [Reading(B, 0, 0, 500)], TERMS)
    assert [o.delivered_wh for o in out.outcomes] == [300, 150, 50]


def test_shortfall_exactly_at_tolerance_costs_nothing() -> None:
    assert tolerance_wh(1000, 500) == 50
    assert penalty_base_units(1000, 950, 500, 7) == 0
    assert penalty_base_units(1000, 949, 500, 7) == 51 * 7


def test_penalty_beyond_tolerance_is_the_whole_shortfall() -> None:
    assert penalty_base_units(100, 0, 10_000, 9) == 0
    assert penalty_base_units(100, 0, 9_999, 9) == 100 * 9


def test_seller_positions_track_running_totals_per_seller() -> None:
    trades = [Trade(A, B, 5, 1), Trade(A, C, 7, 1), Trade(D, B, 2, 1)]
    pos = seller_positions(trades)
    assert [(p.sold_wh, p.sold_before_wh) for p in pos] == [(7, 0), (7, 0), (7, 5)]


def test_collateral_locks_net_payments_and_bonds() -> None:
    locks = collateral_locks([Trade(A, B, 10, 3), Trade(B, C, 5, 2)], 4)
    assert locks == {A: 30, B: 40 + 10, C: 20}


parties = st.sampled_from([A, B, C, D])
trade_st = st.builds(
    Trade,
    buyer=parties,
    seller=parties,
    quantity_wh=st.integers(1, 10_000),
    price_per_wh=st.integers(1, 10**6),
).filter(lambda t: t.buyer != t.seller)
terms_st = st.builds(
    Terms, penalty_price_per_wh=st.integers(0, 10**6), tolerance_bps=st.integers(0, 10_000)
)


@settings(max_examples=300)
@given(
    trades=st.lists(trade_st, max_size=25),
    exported=st.dictionaries(parties, st.integers(0, 50_000)),
    terms=terms_st,
)
def test_settlement_conserves_value_and_delivers_min_of_sold_and_exported(
    trades: list[Trade], exported: dict[str, int], terms: Terms
) -> None:
    out = settle_range(trades, exported, terms)
    locks = collateral_locks(trades, terms.penalty_price_per_wh)
    # Everything locked is released, and everything released is credited.
    assert {p: d.released for p, d in out.deltas.items() if d.released} == {
        p: v for p, v in locks.items() if v
    }
    assert sum(d.released for d in out.deltas.values()) == sum(
        d.credited for d in out.deltas.values()
    )
    sold: dict[str, int] = {}
    delivered: dict[str, int] = {}
    for t, o in zip(trades, out.outcomes, strict=True):
        sold[t.seller] = sold.get(t.seller, 0) + t.quantity_wh
        delivered[t.seller] = delivered.get(t.seller, 0) + o.delivered_wh
        assert 0 <= o.delivered_wh <= t.quantity_wh
        assert 0 <= o.penalty <= o.bond
        assert o.payment + o.refund == t.quantity_wh * t.price_per_wh
    for seller, s in sold.items():
        assert delivered[seller] == min(s, exported.get(seller, 0))


@settings(max_examples=200)
@given(
    quantities=st.lists(st.integers(1, 1000), min_size=1, max_size=20),
    exported=st.integers(0, 25_000),
)
def test_each_share_is_floor_or_floor_plus_one_of_pro_rata(
    quantities: list[int], exported: int
) -> None:
    total = sum(quantities)
    d = min(total, exported)
    before = 0
    for q in quantities:
        share = delivered_wh(q, before, total, exported)
        assert share in (q * d // total, q * d // total + 1)
        before += q


@settings(max_examples=200)
@given(
    trades=st.lists(trade_st, min_size=1, max_size=20),
    exported=st.dictionaries(parties, st.integers(0, 50_000)),
    cuts=st.lists(st.integers(0, 20), max_size=5),
)
def test_chunking_never_changes_the_result(
    trades: list[Trade], exported: dict[str, int], cuts: list[int]
) -> None:
    whole = settle_range(trades, exported, TERMS).outcomes
    bounds = sorted({0, len(trades), *(c for c in cuts if c <= len(trades))})
    pieces: list[Any] = []
    for lo, hi in itertools.pairwise(bounds):
        pieces.extend(settle_range(trades, exported, TERMS, lo, hi).outcomes)
    assert tuple(pieces) == whole


def _ledger() -> Ledger:
    ledger = Ledger()
    for p in (A, B, C):
        ledger.register(p)
        ledger.deposit(p, 10_000)
    return ledger


def test_ledger_commit_locks_and_settle_releases_exactly_once() -> None:
    ledger = _ledger()
    ledger.commit(1, [Trade(A, B, 10, 3), Trade(C, B, 10, 2)], TERMS)
    assert (ledger.balance(A).free, ledger.balance(A).locked) == (9_970, 30)
    assert ledger.balance(B).locked == 140
    ledger.submit_reading(1, Reading(B, 1, 0, 15))
    first = ledger.settle(1, 1)
    assert [o.index for o in first.outcomes] == [0]
    second = ledger.settle(1, 5)
    assert [o.index for o in second.outcomes] == [1]
    assert all(ledger.balance(p).locked == 0 for p in (A, B, C))
    assert ledger.total_balances() == ledger.total_escrowed == 30_000
    with pytest.raises(IntervalAlreadySettled):
        ledger.settle(1, 1)


def test_ledger_rejects_bad_input_like_the_contract() -> None:
    ledger = _ledger()
    with pytest.raises(ZeroAmount):
        ledger.deposit(A, 0)
    with pytest.raises(ParticipantNotRegistered):
        ledger.deposit(D, 1)
    with pytest.raises(InsufficientFreeBalance) as info:
        ledger.withdraw(A, 10_001)
    assert info.value.values == (A, 10_001, 10_000)
    with pytest.raises(SelfTrade):
        ledger.commit(1, [Trade(A, A, 1, 1)], TERMS)
    with pytest.raises(ZeroQuantity):
        ledger.commit(1, [Trade(A, B, 0, 1)], TERMS)
    with pytest.raises(ZeroPrice):
        ledger.commit(1, [Trade(A, B, 1, 0)], TERMS)
    with pytest.raises(ParticipantNotRegistered):
        ledger.commit(1, [Trade(A, D, 1, 1)], TERMS)
    with pytest.raises(SoldQuantityOverflow):
        ledger.commit(1, [Trade(A, B, UINT64_MAX, 1), Trade(C, B, 1, 1)], TERMS)
    with pytest.raises(InsufficientCollateral) as coll:
        ledger.commit(1, [Trade(A, B, 10_001, 1)], TERMS)
    assert coll.value.values == (A, 10_001, 10_000)
    ledger.commit(1, [Trade(A, B, 1, 1)], TERMS)
    with pytest.raises(IntervalAlreadyCommitted):
        ledger.commit(1, [], TERMS)
    ledger.submit_reading(1, Reading(B, 1, 0, 1))
    with pytest.raises(ReadingAlreadySubmitted):
        ledger.submit_reading(1, Reading(B, 1, 0, 1))
    with pytest.raises(ChunkOutOfRange):
        ledger.settle(1, 0)
