"""EnergyMarket on a grid (GRID.md §8): two-price commit and settle, the grid operator's
credit, the node registry, and every grid revert; differential against settlement/model.py."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ledger_support import (
    BOOK_ROOT,
    DEFAULT_TERMS,
    DEPOSIT,
    MarketEnv,
    raises,
    snapshot_env,
    trade,
)

from chain.connection import connect
from ledger.contract_errors import (
    AccessControlUnauthorizedAccount,
    GridOperatorUnset,
    GridRootMismatch,
    InvalidSellPrice,
    ParticipantNotRegistered,
    PriceOutsideLimit,
    SellPricesLength,
    SellPricesWithoutGrid,
)
from ledger.grid_nodes import node_hash
from ledger.order_backing import back_trades
from ledger.records import Reading, Terms, Trade
from settlement.model import Ledger, settle_interval

N = 5
GRID_ROOT = b"\x6e" * 32


@pytest.fixture(scope="module")
def base() -> Iterator[MarketEnv]:
    env = MarketEnv.build(connect(), n_participants=N + 1)
    yield env


@pytest.fixture
def env(base: MarketEnv) -> Iterator[MarketEnv]:
    yield from snapshot_env(base)


def _operator(env: MarketEnv) -> str:
    """The last account is the grid operator (registered, so it can withdraw like anyone)."""
    return env.participants[N]


def _commit(
    env: MarketEnv, trades: Sequence[Trade], t: int | None = None, grid_root: bytes = GRID_ROOT
) -> int:
    t = env.next_interval() if t is None else t
    backed, orders = back_trades(t, trades, env.ledger.domain(), env.keys)
    env.ledger.commit_interval(t, BOOK_ROOT, backed, orders, grid_root=grid_root)
    return t


def test_grid_commit_snapshots_root_and_operator_and_settle_credits_it(env: MarketEnv) -> None:
    ps, op = env.participants, _operator(env)
    env.ledger.set_grid_operator(op)
    trades = [
        replace(trade(ps[0], ps[1], 100, 20, n=0), sell_price_per_wh=3),
        trade(ps[2], ps[1], 50, 9, n=1),
        replace(trade(ps[3], ps[4], 40, 7, n=2), sell_price_per_wh=7),
    ]
    t = _commit(env, trades)
    assert env.ledger.grid_of(t) == (GRID_ROOT, op)
    assert env.ledger.committed_trades(t)[0].sell_price_per_wh == 3
    # Seller 1 delivers 120 of 150 Wh; seller 4 everything.
    env.read(t, {ps[1]: 120, ps[4]: 40})
    env.to_deadline(t)
    env.ledger.set_grid_operator(ps[0])  # a later change does not reach a committed interval
    before = env.balances()
    receipts = env.ledger.settle(t, max_trades=2)
    model = settle_interval(
        trades, [Reading(ps[1], t, 0, 120), Reading(ps[4], t, 0, 40)], DEFAULT_TERMS
    )
    credited = [e for r in receipts for e in env.ledger.events(r, "GridRevenueCredited")]
    assert model.grid_revenue == 80 * 17
    assert [(e["gridOperator"], e["amount"]) for e in credited] == [(op, 80 * 17)]
    after = env.balances()
    assert after[op] == (before[op][0] + 80 * 17, before[op][1])
    for p in ps[:N]:
        d = model.deltas[p]
        assert after[p] == (before[p][0] + d.credited, before[p][1] - d.released), p
    # The seller got 80 Wh at 3 and 40 Wh at 9; the buyer paid 80 at 20 and got 20 refunded.
    assert model.outcomes[0].seller_payment == 80 * 3
    assert env.ledger.total_escrowed() == env.token_balance() == (N + 1) * DEPOSIT


def test_non_grid_commit_stores_no_grid(env: MarketEnv) -> None:
    ps = env.participants
    t = env.commit([trade(ps[0], ps[1], 10)])
    assert env.ledger.grid_of(t) == (bytes(32), "0x" + "0" * 40)


def test_sell_price_zero_or_above_price_reverts(env: MarketEnv) -> None:
    ps = env.participants
    env.ledger.set_grid_operator(_operator(env))
    ok = trade(ps[2], ps[3], 5, 9, n=1)
    with raises(InvalidSellPrice, trade_index=1, sell_price=0, price=9):
        _commit(
            env,
            [
                replace(trade(ps[0], ps[1], 10, 9), sell_price_per_wh=9),
                replace(ok, sell_price_per_wh=0),
            ],
        )
    t = env.next_interval()
    backed, orders = back_trades(t, [trade(ps[0], ps[1], 10, 9)], env.ledger.domain(), env.keys)
    with raises(InvalidSellPrice, trade_index=0, sell_price=10, price=9):
        env.ledger.commit_interval(
            t, BOOK_ROOT, [replace(backed[0], sell_price_per_wh=10)], orders, grid_root=GRID_ROOT
        )
    _commit(env, [replace(trade(ps[0], ps[1], 10, 9), sell_price_per_wh=1), ok])


def test_a_sell_price_below_the_sellers_signed_limit_reverts(env: MarketEnv) -> None:
    """The operator cannot hand the grid operator part of what the seller signed for."""
    ps = env.participants
    env.ledger.set_grid_operator(_operator(env))
    t = env.next_interval()
    honest = replace(trade(ps[0], ps[1], 10, 9), sell_price_per_wh=7)
    backed, orders = back_trades(t, [honest], env.ledger.domain(), env.keys)  # ask limit 7
    shaved = [replace(backed[0], sell_price_per_wh=6)]
    with raises(PriceOutsideLimit, trade_index=0, price=6, bid_limit=9, ask_limit=7):
        env.ledger.commit_interval(t, BOOK_ROOT, shaved, orders, grid_root=GRID_ROOT)
    env.ledger.commit_interval(t, BOOK_ROOT, backed, orders, grid_root=GRID_ROOT)
    assert env.ledger.interval_info(t).status == "committed"


def test_sell_prices_need_a_grid_root_and_a_grid_root_an_operator(env: MarketEnv) -> None:
    ps = env.participants
    grid_trade = replace(trade(ps[0], ps[1], 10, 9), sell_price_per_wh=4)
    with raises(GridOperatorUnset):
        _commit(env, [trade(ps[0], ps[1], 10, 9)])
    env.ledger.set_grid_operator(_operator(env))
    with raises(SellPricesWithoutGrid):
        _commit(env, [grid_trade], grid_root=bytes(32))


def test_sell_prices_length_is_checked(env: MarketEnv) -> None:
    from test_contract_commit import _chunk, _send_raw

    env.ledger.set_grid_operator(_operator(env))
    t = env.next_interval()
    parties, orders, trades = _chunk(env, t)
    with raises(SellPricesLength, expected=1, actual=2):
        _send_raw(env, t, parties, orders, trades, [1, 1], GRID_ROOT)
    with raises(InvalidSellPrice, trade_index=1):  # the unused high half must be zero
        _send_raw(env, t, parties, orders, trades, [1 | 1 << 128], GRID_ROOT)
    price = trades[0] >> 128
    with raises(PriceOutsideLimit, trade_index=0, price=1):  # below the ask's signed limit
        _send_raw(env, t, parties, orders, trades, [1], GRID_ROOT)
    _send_raw(env, t, parties, orders, trades, [price], GRID_ROOT)


def test_later_chunk_must_carry_the_first_chunks_grid_root(env: MarketEnv) -> None:
    ps = env.participants
    env.ledger.set_grid_operator(_operator(env))
    trades = [
        replace(trade(ps[0], ps[1], 10, 9, n=0), sell_price_per_wh=5),
        replace(trade(ps[2], ps[3], 10, 9, n=1), sell_price_per_wh=6),
    ]
    t = env.next_interval()
    backed, orders = back_trades(t, trades, env.ledger.domain(), env.keys)
    from ledger.commit_plan import commit_calldata, plan_commit

    indices = {p: env.ledger.participant_index(p) for p in ps}
    plan = plan_commit(t, backed, orders, indices, max_gas=215_000)
    assert len(plan.chunks) == 2
    env.ledger.transact_data(commit_calldata(t, BOOK_ROOT, plan.chunks[0], GRID_ROOT))
    with raises(GridRootMismatch, interval=t, expected=GRID_ROOT, actual=b"\x01" * 32):
        env.ledger.transact_data(commit_calldata(t, BOOK_ROOT, plan.chunks[1], b"\x01" * 32))
    env.ledger.transact_data(commit_calldata(t, BOOK_ROOT, plan.chunks[1], GRID_ROOT))
    assert [x.sell_price_per_wh for x in env.ledger.committed_trades(t)] == [5, 6]


def test_record_node_emits_the_node_hash(env: MarketEnv) -> None:
    ps = env.participants
    receipt = env.ledger.record_node(ps[0], "feeder-7")
    (event,) = env.ledger.events(receipt, "NodeRecorded")
    assert (event["participant"], bytes(event["node"])) == (ps[0], node_hash("feeder-7"))
    with raises(ParticipantNotRegistered):
        env.ledger.record_node(env.chain.accounts[N + 3], "feeder-7")
    with raises(AccessControlUnauthorizedAccount):
        env.ledger.record_node(ps[0], "feeder-7", sender=ps[1])


@st.composite
def grid_intervals(
    draw: st.DrawFn,
) -> tuple[list[tuple[int, int, int, int, int]], dict[int, int], Terms, int]:
    raw = draw(
        st.lists(
            st.tuples(
                st.integers(0, N - 1),
                st.integers(0, N - 1),
                st.integers(1, 5_000),
                st.integers(1, 10**15),
                st.integers(0, 10**15),
            ).filter(lambda x: x[0] != x[1]),
            min_size=1,
            max_size=9,
        )
    )
    raw = [(b, s, q, p, 1 + f % p) for b, s, q, p, f in raw]
    sellers = sorted({s for _, s, _, _, _ in raw})
    exported = {
        s: draw(st.sampled_from([0, 1, 10**6, draw(st.integers(0, 12_000))]))
        for s in sellers
        if draw(st.booleans())
    }
    terms = Terms(
        penalty_price_per_wh=draw(st.sampled_from([0, 1, 10**12])),
        tolerance_bps=draw(st.sampled_from([0, 500, 10_000])),
        reading_window_seconds=600,
    )
    chunk = draw(st.sampled_from([1, 2, 5]))
    return raw, exported, terms, chunk


@settings(max_examples=15, deadline=None)
@given(case=grid_intervals())
def test_two_price_settlement_agrees_with_the_model(
    base: MarketEnv,
    case: tuple[list[tuple[int, int, int, int, int]], dict[int, int], Terms, int],
) -> None:
    """sellPrice <= price (mostly below): every TradeSettled, balance and the grid credit
    equal settlement/model.py's; escrow is conserved."""
    env = base
    raw, exported_by_index, terms, chunk = case
    snap = env.chain.snapshot()
    try:
        ps, op = env.participants, _operator(env)
        env.ledger.set_grid_operator(op)
        trades = [
            replace(trade(ps[b], ps[s], q, price, n=i), sell_price_per_wh=sell)
            for i, (b, s, q, price, sell) in enumerate(raw)
        ]
        exported = {ps[i]: e for i, e in exported_by_index.items()}
        env.set_terms_now(terms)
        before = env.balances()
        t = _commit(env, trades)
        env.read(t, exported)
        env.to_deadline(t)
        receipts = env.ledger.settle(t, max_trades=chunk)
        readings = [Reading(p, t, 0, e) for p, e in exported.items()]
        model = settle_interval(trades, readings, terms)
        events = [e for r in receipts for e in env.ledger.events(r, "TradeSettled")]
        assert [
            (e["tradeIndex"], e["deliveredWh"], e["paymentBaseUnits"], e["refundBaseUnits"])
            for e in events
        ] == [(o.index, o.delivered_wh, o.payment, o.refund) for o in model.outcomes]
        credited = sum(
            e["amount"] for r in receipts for e in env.ledger.events(r, "GridRevenueCredited")
        )
        assert credited == model.grid_revenue
        after = env.balances()
        for p in ps[:N]:
            d = model.deltas.get(p)
            free, locked = before[p]
            assert after[p] == ((free - d.released + d.credited, locked) if d else (free, locked))
        assert after[op] == (before[op][0] + model.grid_revenue, before[op][1])
        # The memory ledger mirrors the same interval.
        mem = Ledger()
        mem.grid_operator = op
        for p in ps:
            mem.register(p)
            mem.deposit(p, DEPOSIT)
        mem.commit(t, trades, terms)
        for r in readings:
            mem.submit_reading(t, r)
        mem.settle(t, len(trades))
        assert mem.balance(op).free == DEPOSIT + model.grid_revenue
        assert mem.total_balances() == mem.total_escrowed
        assert env.ledger.total_escrowed() == env.token_balance() == (N + 1) * DEPOSIT
    finally:
        env.chain.revert(snap)
        env.ledger._trades.clear()
