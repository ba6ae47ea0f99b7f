"""Differential: random intervals settle identically on the contract and in settlement/model.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ledger_support import DEPOSIT, MarketEnv, trade

from chain.connection import connect
from ledger.records import Reading, Terms, Trade
from settlement.model import settle_interval

N = 5


@pytest.fixture(scope="module")
def env() -> Iterator[MarketEnv]:
    yield MarketEnv.build(connect(), n_participants=N)


@st.composite
def intervals(
    draw: st.DrawFn,
) -> tuple[list[tuple[int, int, int, int]], dict[int, int], Terms, int]:
    raw = draw(
        st.lists(
            st.tuples(
                st.integers(0, N - 1),
                st.integers(0, N - 1),
                st.integers(1, 5_000),
                st.integers(1, 10**15),
            ).filter(lambda x: x[0] != x[1]),
            max_size=10,
        )
    )
    sellers = sorted({s for _, s, _, _ in raw})
    # Readings: some participants missing, some under-, some over-delivering, some buyers too.
    readers = draw(st.lists(st.integers(0, N - 1), unique=True))
    exported = {p: draw(st.integers(0, 12_000)) for p in readers}
    for s in sellers:
        if s in exported and draw(st.booleans()):
            exported[s] = draw(st.sampled_from([0, 1, 10**6]))
    terms = Terms(
        penalty_price_per_wh=draw(st.sampled_from([0, 1, 10**12, 5 * 10**14])),
        tolerance_bps=draw(st.sampled_from([0, 1, 500, 9_999, 10_000])),
        reading_window_seconds=600,
    )
    chunk = draw(st.sampled_from([1, 3, 5, 15]))
    return raw, exported, terms, chunk


@settings(max_examples=20)
@given(case=intervals())
def test_contract_and_model_agree_on_every_balance_and_trade(
    env: MarketEnv, case: tuple[list[tuple[int, int, int, int]], dict[int, int], Terms, int]
) -> None:
    raw, exported_by_index, terms, chunk = case
    snap = env.chain.snapshot()
    try:
        ps = env.participants
        trades: list[Trade] = [
            trade(ps[b], ps[s], q, price, n=i) for i, (b, s, q, price) in enumerate(raw)
        ]
        exported = {ps[i]: e for i, e in exported_by_index.items()}
        env.set_terms_now(terms)
        before = env.balances()
        t = env.commit(trades)
        env.read(t, exported, imported={p: 1 for p in exported})
        env.to_deadline(t)
        receipts = env.ledger.settle(t, max_trades=chunk)

        model = settle_interval(trades, [Reading(p, t, 1, e) for p, e in exported.items()], terms)
        events = [e for r in receipts for e in env.ledger.events(r, "TradeSettled")]
        assert [
            (
                e["tradeIndex"],
                e["deliveredWh"],
                e["paymentBaseUnits"],
                e["refundBaseUnits"],
                e["penaltyBaseUnits"],
            )
            for e in events
        ] == [(o.index, o.delivered_wh, o.payment, o.refund, o.penalty) for o in model.outcomes]
        after = env.balances()
        for p in ps:
            d = model.deltas.get(p)
            free, locked = before[p]
            expected = (free - d.released + d.credited, locked) if d else (free, locked)
            assert after[p] == expected, p
        assert env.ledger.interval_info(t).status == "settled"
        assert env.ledger.total_escrowed() == env.token_balance() == N * DEPOSIT
    finally:
        env.chain.revert(snap)
        env.ledger._trades.clear()
