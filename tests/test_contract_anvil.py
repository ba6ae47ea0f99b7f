"""The contract against a real anvil node: deploy, commit, readings, chunked settle, reverts."""

from __future__ import annotations

import pytest
from test_ledger_support import DEFAULT_TERMS, DEPOSIT, MarketEnv, raises, trade

from chain.connection import Chain
from ledger.contract_errors import InsufficientFreeBalance, InvalidMeterSignature, ReadingWindowOpen
from ledger.records import Reading
from settlement.model import settle_interval

pytestmark = pytest.mark.anvil


def test_full_interval_lifecycle_on_anvil_matches_the_model(anvil_chain: Chain) -> None:
    env = MarketEnv.build(anvil_chain, n_participants=5)
    ps = env.participants
    trades = [trade(ps[i % 5], ps[(i + 2) % 5], 100 + 13 * i, n=i) for i in range(9)]
    t = env.commit(trades)
    with raises(ReadingWindowOpen, interval=t):
        env.ledger.settle(t)
    exported = {ps[2]: 150, ps[3]: 10_000, ps[4]: 0, ps[0]: 77}
    env.read(t, exported)
    env.to_deadline(t)
    receipts = env.ledger.settle(t, max_trades=4)
    assert len(receipts) == 3
    model = settle_interval(
        trades, [Reading(p, t, 0, e) for p, e in exported.items()], DEFAULT_TERMS
    )
    events = [e for r in receipts for e in env.ledger.events(r, "TradeSettled")]
    assert [(e["tradeIndex"], e["deliveredWh"], e["penaltyBaseUnits"]) for e in events] == [
        (o.index, o.delivered_wh, o.penalty) for o in model.outcomes
    ]
    for p in ps:
        d = model.deltas[p]
        assert env.ledger.balance_of(p).free == DEPOSIT - d.released + d.credited
        assert env.ledger.balance_of(p).locked == 0
    assert env.ledger.total_escrowed() == env.token_balance()


def test_reverts_decode_on_anvil(anvil_chain: Chain) -> None:
    env = MarketEnv.build(anvil_chain, n_participants=2)
    with raises(InsufficientFreeBalance, participant=env.p(0), requested=DEPOSIT + 1, free=DEPOSIT):
        env.ledger.withdraw(env.p(0), DEPOSIT + 1)
    t = env.commit([trade(env.p(0), env.p(1), 10)])
    env.to_reading_window(t)
    with raises(InvalidMeterSignature, participant=env.p(1), signer=env.meters[env.p(0)].address):
        env.ledger.submit_readings(t, [env.sign(Reading(env.p(1), t, 0, 1), env.meters[env.p(0)])])
