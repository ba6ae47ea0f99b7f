"""Shared set-up for the audit tests: a whole market on eth-tester, driven through the real API.

:class:`AuditChain` deploys the contracts once and funds six participants, then snapshots the
chain; :meth:`AuditChain.session` reverts to that snapshot and starts a fresh market service
(its own SQLite store, a simulated clock at chain time, the FastAPI app reached in-process),
so each hypothesis example starts from the same state without redeploying.

A :class:`Session` places signed orders through ``POST /orders``, closes gates (the service
clears and commits on-chain from the operator key), submits meter-signed readings, settles in
chunks and moves escrow, all on the real contract. The module has no tests of its own.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from market_harness import fund_participants
from web3.middleware import Web3Middleware

from chain.client import LedgerClient
from chain.connection import Chain, connect
from chain.deployment import Deployment
from deploy.deployment import deploy_system
from ledger.eip712 import sign_reading
from ledger.records import Reading, SignedOrder, Trade
from market.chain_ledger import ChainLedger
from market.client import MarketApiError, MarketClient
from market.clock import SimulatedClock
from market.grid_operator import GridSetup
from market.http.app import create_app
from market.ledger_port import CommitReceipt
from market.service import MarketConfig, MarketService
from market.store import OrderStore

TOKEN = 10**18
PRICE = 250_000_000_000_000
PARTICIPANTS = 6
DEPOSIT = 1_000 * TOKEN
FIXED_GAS = 15_000_000


Tamper = Callable[[int, bytes, list[Trade]], tuple[bytes, list[Trade]]]
"""``(t, book_root, trades) -> (book_root, trades)``: what a dishonest operator commits."""

FORGED_ORDERS: dict[bytes, SignedOrder] = {}
"""Orders a dishonest operator adds to what it passes with its commits (it can sign only
with keys it holds)."""


class TamperingLedger(ChainLedger):
    """The market's ledger port with a dishonest operator: commits pass through ``tamper``.

    The service still publishes the true order set and clearing; only the chain gets the
    altered root or trades, exactly what an operator holding the key could do.
    """

    def __init__(self, client: LedgerClient, tamper: Tamper) -> None:
        super().__init__(client)
        self.tamper = tamper

    def commit_interval(
        self,
        interval: int,
        book_root: bytes,
        trades: Sequence[Trade],
        orders: Mapping[bytes, SignedOrder],
        *,
        grid_root: bytes = bytes(32),
    ) -> CommitReceipt:
        root, altered = self.tamper(interval, book_root, list(trades))
        return super().commit_interval(
            interval, root, altered, {**orders, **FORGED_ORDERS}, grid_root=grid_root
        )


class FixedGas(Web3Middleware):
    """Send transactions with a fixed gas limit instead of estimating it (eth-tester only).

    eth-tester estimates gas by bisection, running each transaction about twenty times; that
    is three quarters of a test market's run time. A reverting transaction still reverts.
    """

    def request_processor(self, method: Any, params: Any) -> Any:
        if method == "eth_sendTransaction" and params and "gas" not in params[0]:
            params = [{**params[0], "gas": FIXED_GAS}, *params[1:]]
        return method, params


class AuditChain:
    """One deployed, funded market, reverted to the same snapshot per session.

    ``chain`` defaults to a new embedded eth-tester chain; pass an anvil chain to run the same
    market on a real node.
    """

    def __init__(self, chain: Chain | None = None) -> None:
        self.chain: Chain = chain or connect()
        if self.chain.is_embedded:
            self.chain.w3.middleware_onion.add(FixedGas, "fixed_gas")
        self.deployment: Deployment = deploy_system(self.chain)
        client = LedgerClient.from_deployment(self.chain, self.deployment)
        self.participants: tuple[LocalAccount, ...] = tuple(
            self.chain.signers[1 : 1 + PARTICIPANTS]
        )
        fund_participants(client, self.participants, DEPOSIT)
        self.operator: LocalAccount = self.chain.signers[0]
        self.market = client.address
        self._snapshot = self.chain.snapshot()

    def session(
        self,
        config: MarketConfig | None = None,
        tamper: Tamper | None = None,
        grid: GridSetup | None = None,
    ) -> Session:
        """Revert to the funded snapshot and start a fresh market service over it (on a
        grid when ``grid`` is given)."""
        self.chain.revert(self._snapshot)
        if not self.chain.is_embedded:
            self._snapshot = self.chain.snapshot()  # anvil consumes a snapshot on revert
        return Session(self, config, tamper, grid)


class Session:
    """A market service, its API and a client per participant, on a reverted chain."""

    def __init__(
        self,
        base: AuditChain,
        config: MarketConfig | None,
        tamper: Tamper | None = None,
        grid: GridSetup | None = None,
    ) -> None:
        self.base = base
        self.chain = base.chain
        self.ledger = LedgerClient.from_deployment(base.chain, base.deployment)
        self._tmp = tempfile.TemporaryDirectory(prefix="wattledger-audit-")
        self.clock = SimulatedClock(self.chain.timestamp())
        self.service = MarketService(
            OrderStore(Path(self._tmp.name) / "market.db"),
            ChainLedger(self.ledger) if tamper is None else TamperingLedger(self.ledger, tamper),
            self.clock,
            config,
            operator_key=base.operator.key,
            grid=grid,
        )
        self.app = create_app(self.service)
        self.clients = [MarketClient(app=self.app, account=who) for who in base.participants]
        self.expiry = self.chain.timestamp() + 100 * 3600
        self.committed: list[int] = []

    def close(self) -> None:
        """Stop the in-process transports and remove the store."""
        for client in self.clients:
            client.close()
        self.service.store.close()
        self._tmp.cleanup()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def api(self) -> MarketClient:
        """A client to read the API with (participant 0's)."""
        return self.clients[0]

    def address(self, who: int) -> str:
        """Checksum address of participant ``who``."""
        return str(self.base.participants[who].address)

    def next_interval(self) -> int:
        """The first interval whose gate is open."""
        return self.api.next_interval()

    def submit(self, t: int, who: int, side: str, quantity_wh: int, price: int) -> bool:
        """Place a signed order through the API; False when the market refuses it."""
        try:
            self.clients[who].submit_order(t, side, quantity_wh, price, expiry=self.expiry)
        except MarketApiError:
            return False
        return True

    def close_gate(self, t: int) -> None:
        """Move the market clock to ``t``'s gate closure and let the service clear and commit."""
        self.clock.set(max(self.clock.now(), self.service.gate_closure_at(t)))
        self.service.tick()
        if self.ledger.interval_info(t).status != "none":
            self.committed.append(t)

    def sold_wh(self, t: int) -> dict[str, int]:
        """Energy each seller sold in committed interval ``t``."""
        sold: dict[str, int] = {}
        for trade in self.ledger.committed_trades(t):
            sold[trade.seller] = sold.get(trade.seller, 0) + trade.quantity_wh
        return sold

    def to_reading_window(self, intervals: Sequence[int]) -> None:
        """Advance chain time to just after the end of the last of ``intervals``."""
        _, end = self.ledger.interval_window(max(intervals))
        if self.chain.timestamp() < end:
            self.chain.advance_time(end - self.chain.timestamp())

    def submit_readings(self, t: int, readings: Mapping[int, tuple[int, int]]) -> None:
        """Meter-signed readings ``{participant: (imported, exported)}`` for ``t``, on-chain."""
        domain = self.ledger.domain()
        signed = [
            sign_reading(
                self.base.participants[who],
                Reading(self.address(who), t, imported, exported),
                domain,
            )
            for who, (imported, exported) in sorted(readings.items())
        ]
        if signed:
            self.ledger.submit_readings(t, signed, batch_size=2)

    def past_deadlines(self, intervals: Sequence[int]) -> None:
        """Advance chain time past the reading deadline of every interval given."""
        deadline = max(self.ledger.interval_info(t).deadline for t in intervals)
        if self.chain.timestamp() <= deadline:
            self.chain.advance_time(deadline - self.chain.timestamp() + 1)

    def settle(self, t: int, max_trades: int, chunks: int | None = None) -> None:
        """Settle ``t`` in chunks of ``max_trades``; only ``chunks`` of them if given."""
        if chunks is None:
            self.ledger.settle(t, max_trades)
            return
        for _ in range(chunks):
            info = self.ledger.interval_info(t)
            if info.status == "settled" or info.cursor >= info.trade_count:
                return
            self.ledger.settle_next(t, max_trades)


@dataclass
class MarketPlan:
    """A whole market to run: orders per interval, readings, settlement and escrow moves."""

    participants: int
    orders: list[list[tuple[int, str, int, int]]]
    """Per interval: ``(participant, side, quantity_wh, price_per_wh)``."""
    export_factors: list[dict[int, tuple[int, int] | None]]
    """Per interval and participant: exported = sold * num // den, or no reading."""
    settle_chunk: int = 2
    last_interval: str = "full"
    """``full``, ``partial`` (one chunk) or ``none``: how far the last interval settles."""
    withdrawals: dict[int, int] = field(default_factory=dict)
    """Participant -> base units withdrawn at the end."""


def run_plan(session: Session, plan: MarketPlan) -> list[int]:
    """Run ``plan`` through the API and the chain; return the intervals committed."""
    t0 = session.next_interval()
    intervals = [t0 + i for i in range(len(plan.orders))]
    for t, orders in zip(intervals, plan.orders, strict=True):
        for who, side, quantity, price in orders:
            session.submit(t, who, side, quantity, price)
    for t in intervals:
        session.close_gate(t)
    committed = list(session.committed)
    if not committed:
        return committed
    session.to_reading_window(committed)
    for t in committed:
        i = intervals.index(t)
        sold = session.sold_wh(t)
        readings = {}
        for who in range(plan.participants):
            factor = plan.export_factors[i].get(who)
            if factor is None:
                continue
            num, den = factor
            exported = sold.get(session.address(who), 0) * num // den
            readings[who] = (who * 7, exported)
        session.submit_readings(t, readings)
    session.past_deadlines(committed)
    for t in committed:
        if t != committed[-1] or plan.last_interval == "full":
            session.settle(t, plan.settle_chunk)
        elif plan.last_interval == "partial":
            session.settle(t, plan.settle_chunk, chunks=1)
    for who, amount in plan.withdrawals.items():
        free = session.ledger.balance_of(session.address(who)).free
        if 0 < amount <= free:
            session.ledger.withdraw(session.address(who), amount)
    return committed


def simple_plan(intervals: int = 1) -> MarketPlan:
    """A small market where every interval trades: two sellers, two buyers, one short."""
    orders = [
        [
            (0, "buy", 3_000, PRICE + 20_000),
            (1, "buy", 1_500, PRICE - 5_000),
            (2, "sell", 2_000, PRICE - 10_000),
            (3, "sell", 2_000, PRICE),
        ]
        for _ in range(intervals)
    ]
    factors: list[dict[int, tuple[int, int] | None]] = [
        {2: (1, 1), 3: (1, 2)} for _ in range(intervals)
    ]
    return MarketPlan(participants=4, orders=orders, export_factors=factors)


def published_books(session: Session, intervals: Sequence[int]) -> dict[int, Any]:
    """``GET /intervals/{t}/orders`` bodies for ``intervals``."""
    return {t: session.api.interval_orders(t) for t in intervals}
