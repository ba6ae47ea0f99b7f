"""Stateful: random deposits, commits, readings, chunked settles and withdrawals on the contract,
mirrored by settlement.model.Ledger; after every step tokens are conserved, no balance is
negative, every balance equals the model's, and every trade has settled at most once.

An adversarial operator steps in too (``forged_commit``): it commits a trade against a
victim's balance with an order the victim did not sign, or beyond what it signed (price,
quantity, another interval's order). Every such commit must revert, leaving every balance
as the model (which never sees it) has it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from test_ledger_support import BOOK_ROOT, MarketEnv, trade

from chain.connection import connect
from ledger.contract_errors import (
    BadOrderSignature,
    LedgerError,
    OrderOverfilled,
    PriceOutsideLimit,
)
from ledger.eip712 import order_digest
from ledger.order_backing import back_trades, sign_order
from ledger.records import Reading, Terms, Trade
from settlement.model import Ledger

N = 4
DEPOSIT = 10**9
TERMS = Terms(penalty_price_per_wh=3, tolerance_bps=1_000, reading_window_seconds=900)
_ENV: MarketEnv | None = None


def _env() -> MarketEnv:
    global _ENV
    if _ENV is None:
        _ENV = MarketEnv.build(connect(), n_participants=N, deposit=DEPOSIT)
        _ENV.set_terms_now(TERMS)
        _ENV.ledger.set_grid_operator(_ENV.p(0))
    return _ENV


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.env = _env()
        self.snap = self.env.chain.snapshot()
        self.model = Ledger()
        self.model.grid_operator = self.env.p(0)
        for p in self.env.participants:
            self.model.register(p)
            self.model.deposit(p, DEPOSIT)
        self.settled_indices: dict[int, list[int]] = {}

    def teardown(self) -> None:
        self.env.chain.revert(self.snap)
        self.env.ledger._trades.clear()

    def _both(self, chain_call: Any, model_call: Any) -> Any:
        """Run the same step on chain and model; both succeed or both raise the same error."""
        chain_err = model_err = None
        result = None
        try:
            result = chain_call()
        except LedgerError as err:
            chain_err = err
        try:
            model_call()
        except LedgerError as err:
            model_err = err
        assert chain_err == model_err, (chain_err, model_err)
        return result

    @rule(p=st.integers(0, N - 1), amount=st.integers(0, DEPOSIT))
    def deposit(self, p: int, amount: int) -> None:
        who = self.env.p(p)
        self._both(
            lambda: self.env.ledger.deposit(who, amount), lambda: self.model.deposit(who, amount)
        )

    @rule(p=st.integers(0, N - 1), amount=st.integers(0, 2 * DEPOSIT))
    def withdraw(self, p: int, amount: int) -> None:
        who = self.env.p(p)
        self._both(
            lambda: self.env.ledger.withdraw(who, amount), lambda: self.model.withdraw(who, amount)
        )

    @rule(
        raw=st.lists(
            st.tuples(
                st.integers(0, N - 1),
                st.integers(0, N - 1),
                st.integers(1, 10**8),
                st.integers(1, 20),
                st.integers(0, 21),
            ).filter(lambda x: x[0] != x[1]),
            max_size=6,
        ),
        grid=st.booleans(),
    )
    def commit(self, raw: list[tuple[int, int, int, int, int]], grid: bool) -> None:
        """A commit, on a grid in about half the cases: seller prices drawn from 0..21, so
        some are below the price (the grid operator, participant 0, earns the difference) and
        some are 0 or above it (both sides refuse InvalidSellPrice)."""
        t = self.env.next_interval()
        if t in self.model.intervals:
            return
        trades = [
            replace(
                trade(self.env.p(b), self.env.p(s), q, price, n=i),
                sell_price_per_wh=sell if grid else None,
            )
            for i, (b, s, q, price, sell) in enumerate(raw)
        ]
        root = b"\x6e" * 32 if grid else bytes(32)
        # The sellers sign limits their valid seller prices meet; the out-of-range ones are
        # the operator's to commit (and be refused).
        signed = [
            replace(x, sell_price_per_wh=min(max(x.sell_price_per_wh, 1), x.price_per_wh))
            if x.sell_price_per_wh is not None
            else x
            for x in trades
        ]
        backed, orders = back_trades(t, signed, self.env.ledger.domain(), self.env.keys)
        backed = tuple(
            replace(b, sell_price_per_wh=x.sell_price_per_wh)
            for b, x in zip(backed, trades, strict=True)
        )
        if grid:
            event("grid commit")
        self._both(
            lambda: self.env.ledger.commit_interval(t, BOOK_ROOT, backed, orders, grid_root=root),
            lambda: self.model.commit(t, trades, TERMS),
        )

    @rule(
        victim=st.integers(0, N - 1),
        attack=st.sampled_from(["other key", "price", "quantity", "interval"]),
        amount=st.integers(1, 10**8),
    )
    def forged_commit(self, victim: int, attack: str, amount: int) -> None:
        """The operator tries to drain ``victim`` through a colluding seller: always reverts."""
        t = self.env.next_interval()
        if t in self.model.intervals:
            return
        colluder = (victim + 1) % N
        keys, domain = self.env.keys, self.env.ledger.domain()
        who, partner = self.env.p(victim), self.env.p(colluder)
        price = 20
        signer, bid_t, bid_q, bid_price = keys[who], t, amount, price
        if attack == "other key":
            signer = keys[partner]
        elif attack == "price":
            bid_price = price - 1
        elif attack == "quantity":
            bid_q = amount - 1 if amount > 1 else 1
            amount = bid_q + 1
        else:
            bid_t = t + 1
        bid = sign_order(signer, domain, who, bid_t, 0, bid_q, bid_price)
        presented = replace(bid, interval=t) if attack == "interval" else bid
        if attack == "interval":
            presented = replace(
                presented,
                order_id=order_digest(domain.separator, who, t, 0, bid_q, bid_price, 0, bid.expiry),
            )
        ask = sign_order(keys[partner], domain, partner, t, 1, amount, 1)
        forged = Trade(who, partner, amount, price, presented.order_id, ask.order_id)
        before = self.env.balances()
        orders = {presented.order_id: presented, ask.order_id: ask}
        with pytest.raises(LedgerError) as refused:
            self.env.ledger.commit_interval(t, b"\x66" * 32, [forged], orders)
        event(f"forged commit ({attack}): {type(refused.value).__name__}")
        assert isinstance(refused.value, BadOrderSignature | PriceOutsideLimit | OrderOverfilled), (
            refused.value
        )
        assert self.env.balances() == before
        assert self.env.ledger.interval_info(t).status == "none"

    def _jump_to(self, timestamp: int) -> None:
        now = self.env.chain.timestamp()
        if now + 1 < timestamp:
            self.env.chain.advance_time(timestamp - now - 1)

    @precondition(lambda self: bool(self.model.intervals))
    @rule(p=st.integers(0, N - 1), exported=st.integers(0, 3 * 10**8), pick=st.integers(0, 10))
    def read(self, p: int, exported: int, pick: int) -> None:
        """A reading for an interval before its deadline (time jumps to the interval end)."""
        now = self.env.chain.timestamp() + 1
        open_ = [t for t in self.model.intervals if now < self.env.ledger.interval_info(t).deadline]
        if not open_:
            return
        t = open_[pick % len(open_)]
        self._jump_to(self.env.ledger.interval_window(t)[1])
        reading = Reading(self.env.p(p), t, 0, exported)
        signed = self.env.sign(reading)
        self._both(
            lambda: self.env.ledger.submit_readings(t, [signed]),
            lambda: self.model.submit_reading(t, reading),
        )

    @rule(seconds=st.sampled_from([300, 900]))
    def advance(self, seconds: int) -> None:
        self.env.chain.advance_time(seconds)

    @precondition(lambda self: any(not s.settled for s in self.model.intervals.values()))
    @rule(chunk=st.integers(1, 4), pick=st.integers(0, 10))
    def settle(self, chunk: int, pick: int) -> None:
        """Settle the next chunk of an unsettled interval (time jumps to its deadline)."""
        due = [t for t, s in self.model.intervals.items() if not s.settled]
        t = due[pick % len(due)]
        self._jump_to(self.env.ledger.interval_info(t).deadline)
        receipt = self._both(
            lambda: self.env.ledger.settle_next(t, chunk), lambda: self.model.settle(t, chunk)
        )
        event("settle: " + ("reverted" if receipt is None else "chunk settled"))
        if receipt is not None:
            self.settled_indices.setdefault(t, []).extend(
                e["tradeIndex"] for e in self.env.ledger.events(receipt, "TradeSettled")
            )

    @invariant()
    def tokens_are_conserved_and_balances_match_the_model(self) -> None:
        balances = self.env.balances()
        total = sum(f + lk for f, lk in balances.values())
        assert (
            total
            == self.env.ledger.total_escrowed()
            == self.env.token_balance()
            == self.model.total_escrowed
        )
        for p, (free, locked) in balances.items():
            assert free >= 0 and locked >= 0
            m = self.model.balance(p)
            assert (free, locked) == (m.free, m.locked), p

    @invariant()
    def every_trade_settles_at_most_once_and_in_order(self) -> None:
        for t, indices in self.settled_indices.items():
            state = self.model.intervals[t]
            assert indices == list(range(len(indices)))
            assert len(indices) == state.cursor == self.env.ledger.interval_info(t).cursor
            if state.settled:
                assert self.env.ledger.interval_info(t).status == "settled"


LedgerMachine.TestCase.settings = settings(max_examples=6, stateful_step_count=20, deadline=None)
test_ledger_state_machine = LedgerMachine.TestCase
