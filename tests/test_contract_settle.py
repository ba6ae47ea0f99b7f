"""EnergyMarket.settle: allocation, payment, penalty, chunking, exactly-once and every revert."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_ledger_support import (
    DEFAULT_TERMS,
    DEPOSIT,
    PRICE,
    MarketEnv,
    raises,
    snapshot_env,
    trade,
)

from chain.connection import connect
from ledger.calldata import settle_chunk_args
from ledger.contract_errors import (
    ChunkNotAtCursor,
    ChunkOutOfRange,
    IntervalAlreadySettled,
    IntervalNotCommitted,
    PartiesNotAscending,
    PartyIndexOutOfRange,
    ReadingWindowOpen,
    TradesMismatch,
)
from ledger.records import Reading, Terms, Trade
from ledger.trade_chain import settlement_chain
from settlement.model import settle_interval

UINT64_MAX = 2**64 - 1


@pytest.fixture(scope="module")
def base_env() -> MarketEnv:
    return MarketEnv.build(connect(), n_participants=5)


@pytest.fixture
def env(base_env: MarketEnv) -> Iterator[MarketEnv]:
    yield from snapshot_env(base_env)


def _indices(env: MarketEnv) -> dict[str, int]:
    return {p: env.ledger.participant_index(p) for p in env.participants}


def _ready(env: MarketEnv, trades: list[Trade], exported: dict[str, int]) -> int:
    t = env.commit(trades)
    env.read(t, exported)
    env.to_deadline(t)
    return t


def test_settle_pays_delivered_refunds_rest_and_penalises_shortfall(env: MarketEnv) -> None:
    a, b, c, d = env.p(0), env.p(1), env.p(2), env.p(3)
    trades = [trade(a, b, 600, n=0), trade(c, b, 300, 2 * PRICE, n=1), trade(a, d, 100, n=2)]
    exported = {b: 450, d: 100}
    t = _ready(env, trades, exported)
    receipts = env.ledger.settle(t)
    expected = settle_interval(
        trades, [Reading(p, t, 0, e) for p, e in exported.items()], DEFAULT_TERMS
    )
    events = env.ledger.events(receipts[0], "TradeSettled")
    assert [
        (
            e["tradeIndex"],
            e["deliveredWh"],
            e["paymentBaseUnits"],
            e["refundBaseUnits"],
            e["penaltyBaseUnits"],
        )
        for e in events
    ] == [(o.index, o.delivered_wh, o.payment, o.refund, o.penalty) for o in expected.outcomes]
    assert [o.delivered_wh for o in expected.outcomes] == [300, 150, 100]
    for p in (a, b, c, d):
        delta = expected.deltas[p]
        assert env.ledger.balance_of(p).free == DEPOSIT - delta.released + delta.credited
        assert env.ledger.balance_of(p).locked == 0
    assert env.ledger.interval_info(t).status == "settled"
    assert env.ledger.events(receipts[0], "IntervalSettled") == [{"interval": t}]
    assert (
        env.ledger.total_escrowed()
        == env.token_balance()
        == sum(sum(x) for x in env.balances().values())
    )


def test_shortfall_within_tolerance_costs_no_penalty(env: MarketEnv) -> None:
    a, b = env.p(0), env.p(1)
    t = _ready(env, [trade(a, b, 1000)], {b: 950})  # 5 % short, tolerance 500 bps
    (receipt,) = env.ledger.settle(t)
    (ev,) = env.ledger.events(receipt, "TradeSettled")
    assert (ev["deliveredWh"], ev["penaltyBaseUnits"]) == (950, 0)


def test_missing_reading_counts_as_zero_and_pays_the_full_penalty(env: MarketEnv) -> None:
    a, b = env.p(0), env.p(1)
    t = _ready(env, [trade(a, b, 1000)], {})
    (receipt,) = env.ledger.settle(t)
    (ev,) = env.ledger.events(receipt, "TradeSettled")
    assert (
        ev["deliveredWh"] == 0
        and ev["penaltyBaseUnits"] == 1000 * DEFAULT_TERMS.penalty_price_per_wh
    )
    assert env.ledger.balance_of(a).free == DEPOSIT + 1000 * DEFAULT_TERMS.penalty_price_per_wh


def test_over_delivery_is_capped_at_sold(env: MarketEnv) -> None:
    a, b = env.p(0), env.p(1)
    t = _ready(env, [trade(a, b, 10)], {b: 10_000})
    (receipt,) = env.ledger.settle(t)
    assert env.ledger.events(receipt, "TradeSettled")[0]["deliveredWh"] == 10


def test_chunked_settlement_equals_one_shot_and_settles_each_trade_once(env: MarketEnv) -> None:
    ps = env.participants
    trades = [
        trade(ps[i % 5], ps[(i * 3 + 1) % 5], 100 + 7 * i, n=i)
        for i in range(12)
        if i % 5 != (i * 3 + 1) % 5
    ]
    exported = {ps[1]: 333, ps[4]: 50, ps[3]: 1_000}
    t = _ready(env, trades, exported)
    receipts = env.ledger.settle(t, max_trades=4)
    assert len(receipts) == -(-len(trades) // 4)
    indices = [e["tradeIndex"] for r in receipts for e in env.ledger.events(r, "TradeSettled")]
    assert indices == list(range(len(trades)))
    expected = settle_interval(
        trades, [Reading(p, t, 0, e) for p, e in exported.items()], DEFAULT_TERMS
    )
    for p in ps:
        d = expected.deltas.get(p)
        free = DEPOSIT - (d.released - d.credited if d else 0)
        assert env.ledger.balance_of(p).free == free


def test_settle_twice_reverts(env: MarketEnv) -> None:
    t = _ready(env, [trade(env.p(0), env.p(1), 10)], {})
    env.ledger.settle(t)
    with raises(IntervalAlreadySettled, interval=t):
        env.ledger.settle_chunk(
            t, settle_chunk_args(env.ledger.committed_trades(t), _indices(env), 0, 1)
        )


def test_replaying_a_settled_chunk_reverts(env: MarketEnv) -> None:
    trades = [trade(env.p(0), env.p(1), 10, n=i) for i in range(3)]
    t = _ready(env, trades, {})
    first = settle_chunk_args(trades, _indices(env), 0, 2)
    env.ledger.settle_chunk(t, first)
    with raises(ChunkNotAtCursor, interval=t, cursor=2, first_index=0):
        env.ledger.settle_chunk(t, first)


def test_settle_before_deadline_reverts(env: MarketEnv) -> None:
    t = env.commit([trade(env.p(0), env.p(1), 10)])
    deadline = env.ledger.interval_info(t).deadline
    with raises(ReadingWindowOpen, interval=t, deadline=deadline):
        env.ledger.settle(t)


def test_settle_exactly_at_deadline_succeeds(env: MarketEnv) -> None:
    t = env.commit([trade(env.p(0), env.p(1), 10)])
    deadline = env.ledger.interval_info(t).deadline
    env.chain.advance_time(deadline - 1 - env.chain.timestamp())  # next block is at the deadline
    env.ledger.settle(t)
    assert env.ledger.interval_info(t).status == "settled"


def test_settle_uncommitted_interval_reverts(env: MarketEnv) -> None:
    with raises(IntervalNotCommitted, interval=77):
        env.ledger.settle_chunk(77, settle_chunk_args([], {}, 0, 0))


def test_empty_interval_settles_with_empty_chunk(env: MarketEnv) -> None:
    t = _ready(env, [], {})
    env.ledger.settle(t)
    assert env.ledger.interval_info(t).status == "settled"


def test_tampered_trade_reverts_with_trades_mismatch(env: MarketEnv) -> None:
    trades = [trade(env.p(0), env.p(1), 10, n=0), trade(env.p(2), env.p(1), 20, n=1)]
    t = _ready(env, trades, {})
    forged = [trades[0], Trade(env.p(2), env.p(1), 19, PRICE)]
    heads = settlement_chain(trades, _indices(env))
    args = settle_chunk_args(forged, _indices(env), 0, 2, heads)
    with raises(TradesMismatch, interval=t, cursor=0):
        env.ledger.settle_chunk(t, args)


def test_wrong_seller_totals_revert(env: MarketEnv) -> None:
    trades = [trade(env.p(0), env.p(1), 10, n=0), trade(env.p(2), env.p(1), 20, n=1)]
    t = _ready(env, trades, {env.p(1): 5})
    args = settle_chunk_args(trades, _indices(env), 0, 2)
    bad = list(args.trades)
    bad[1] = (*bad[1][:4], 40, 0)  # claims the seller sold 40 Wh, 0 before this trade
    with raises(TradesMismatch):
        env.ledger.settle_chunk(t, type(args)(0, args.parties, tuple(bad), args.tail_hash))


def test_wrong_participant_index_reverts(env: MarketEnv) -> None:
    trades = [trade(env.p(0), env.p(1), 10)]
    t = _ready(env, trades, {env.p(1): 10})
    idx = _indices(env)
    idx[env.p(1)] = idx[env.p(3)]  # would read another participant's export
    with raises(TradesMismatch):
        env.ledger.settle_chunk(
            t, settle_chunk_args(trades, idx, 0, 1, settlement_chain(trades, _indices(env)))
        )


def test_chunk_past_the_end_or_empty_reverts(env: MarketEnv) -> None:
    trades = [trade(env.p(0), env.p(1), 10, n=i) for i in range(2)]
    t = _ready(env, trades, {})
    too_long = settle_chunk_args([*trades, trades[0]], _indices(env), 0, 3)
    with raises(ChunkOutOfRange, interval=t, cursor=0, length=3, trade_count=2):
        env.ledger.settle_chunk(t, too_long)
    with raises(ChunkOutOfRange, length=0):
        env.ledger.settle_chunk(t, settle_chunk_args(trades, _indices(env), 0, 0))


def test_last_chunk_must_end_the_chain(env: MarketEnv) -> None:
    trades = [trade(env.p(0), env.p(1), 10)]
    t = _ready(env, trades, {})
    args = settle_chunk_args(trades, _indices(env), 0, 1)
    with raises(TradesMismatch):
        env.ledger.settle_chunk(t, type(args)(0, args.parties, args.trades, b"\x01" * 32))


def test_malformed_party_table_reverts(env: MarketEnv) -> None:
    trades = [trade(env.p(0), env.p(1), 10)]
    t = _ready(env, trades, {})
    args = settle_chunk_args(trades, _indices(env), 0, 1)
    rev = tuple(reversed(args.parties))
    with raises(PartiesNotAscending, position=1):
        env.ledger.settle_chunk(t, type(args)(0, rev, args.trades, args.tail_hash))
    bad = ((0, 9, *args.trades[0][2:]),)
    with raises(PartyIndexOutOfRange, trade_index=0, party_index=9, party_count=2):
        env.ledger.settle_chunk(t, type(args)(0, args.parties, bad, args.tail_hash))


def test_settle_works_while_paused(env: MarketEnv) -> None:
    """Attack: a pause blocked settle indefinitely, freezing every lock of a committed interval.
    A pause now stops commits and deposits only."""
    t = _ready(env, [trade(env.p(0), env.p(1), 10)], {})
    env.ledger.pause()
    env.ledger.settle(t)
    assert env.ledger.interval_info(t).status == "settled"
    env.ledger.withdraw(env.p(2), 1)  # withdraw of free balance works too


def test_arithmetic_at_uint64_quantity_and_uint128_balance_limits(env: MarketEnv) -> None:
    env.set_terms_now(Terms(0, 0, 3600))
    a, b = env.p(0), env.p(1)
    # Buyer locks its whole deposit with one uint64-sized trade at price 1 (no bond).
    q = DEPOSIT if DEPOSIT <= UINT64_MAX else UINT64_MAX
    t = _ready(env, [trade(a, b, q, price=1)], {b: UINT64_MAX})
    env.ledger.settle(t)
    assert env.ledger.balance_of(b).free == DEPOSIT + q
    assert env.ledger.balance_of(a).free == DEPOSIT - q
