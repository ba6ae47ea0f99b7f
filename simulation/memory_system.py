"""The market in memory, no chain: ``wattledger simulate --ledger memory``.

:class:`MemorySystem` is a :class:`~simulation.system.System` for studies that need many
intervals (a year of 15-minute intervals is 35,040 of them). The driver, the agents, the
record and the report are the same as on a chain; what stands behind the market changes:

What it keeps (the same code as the chain modes)
    - Clearing: :func:`market.clearing.clear` on the interval's book, with the scenario's
      mechanism and k, in arrival order (sequence numbers given in submission order, as the
      market service gives them), so the same orders give the same trades in the same order.
    - Collateral: the worst-case lock rule of order intake
      (:func:`market.collateral.worst_case_lock_base_units` against the free balance minus
      what open orders reserve), intake's refusal of an order that crosses the participant's
      own opposite order, all-or-none batches, and gate closure's leaving out of a
      participant whose free balance no longer covers its orders.
    - The contract's escrow and settlement rules: :class:`settlement.model.Ledger`, the pure
      model the contract mirrors rule for rule (the differential and stateful tests hold them
      equal, and the audit re-settles with it): ``commit`` checks the trades and locks the
      buyers' payment and the sellers' bond, ``submit_reading`` takes each party's reading
      once, ``settle`` delivers ``min(sold, exported)`` pro-rata, pays, refunds and
      penalises. Readings are taken only in the interval's reading window and an interval is
      settled only after its reading deadline, as on-chain.

What it skips
    - EIP-712 signatures of orders and meter readings: none are made, none recovered (each
      recovery costs about 0.35 ms in Python; a 200-agent interval has some 200 orders and
      100 readings, more than the whole budget of an interval in a year-long run).
    - HTTP: orders, clearings and readings are method calls, not requests to the API app.
    - The order store (SQLite), nonces, expiries and the published order sets with their
      Merkle root: there is nothing to audit without a chain (``--audit`` is refused).
    - The chain itself: no transactions, gas, blocks, events or trade hash chain; the
      settlement service's batching and chunking (the model settles an interval in one go,
      which gives the same outcomes as any chunking).

Why not :class:`market.ledger_port.MemoryLedger` and :class:`settlement.memory_chain.MemoryChain`,
the fakes behind the two services' ports? They are two separate states (a commit on one
locks nothing on the other, a settlement on the other credits nothing on the first), and
both exist to exercise the services' logic, which a memory run does not use: MemoryChain
recovers every reading's signature and hashes the trade chain, and both keep every commit
and event for ever (millions in a year). The model both are built on is what decides
outcomes, and it is what this system uses directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from eth_account.signers.local import LocalAccount

from ledger import eip712 as signing
from ledger.contract_errors import LedgerError
from ledger.eip712 import Domain
from ledger.events import TradeSettled
from ledger.records import Balance, Reading, Terms, Trade
from market.clearing import clear
from market.collateral import worst_case_lock_base_units
from market.grid_clearing import clear_grid
from market.orders import OrderBook
from market.service import DEFAULT_MAX_ORDERS_PER_INTERVAL, DEFAULT_MIN_ORDER_WH
from settlement.model import Ledger
from simulation.agents.base import OrderIntent
from simulation.errors import SimulationError
from simulation.feeder import Feeder, build_feeder
from simulation.scenario import GridSpec
from simulation.settlement_feed import SettlementProgress
from simulation.stopwatch import Stopwatch
from simulation.system import MarketTiming, Participant, System

UnsignedOrder = tuple[str, int, OrderIntent]
"""An order as the memory market takes it: ``(participant address, interval, intent)``,
without nonce, expiry or signature."""

MEMORY_LABEL = "memory (no chain)"
"""How the report and ``summary.json`` name the ledger of a memory run."""

GRID_OPERATOR = "0x" + "00" * 19 + "02"
"""The grid operator's account in a memory run with a grid: it receives, per delivered Wh,
the difference between the buyer's and the seller's price (docs/grid.md §8)."""

START_SECONDS = 1_767_225_600
"""The market's clock at the start of a memory run (2026-01-01T00:00:00Z): fixed, so that
every run of a seed is the same."""


@dataclass
class _Book:
    """The open orders of one interval, as columns in arrival order."""

    ids: list[str] = field(default_factory=list)
    is_buy: list[bool] = field(default_factory=list)
    quantity_wh: list[int] = field(default_factory=list)
    price_per_wh: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    participants: list[str] = field(default_factory=list)
    locks: list[int] = field(default_factory=list)
    best_bid: dict[str, int] = field(default_factory=dict)
    """Each participant's highest own bid in the interval (for the self-cross check)."""
    best_ask: dict[str, int] = field(default_factory=dict)
    """Each participant's lowest own ask."""
    count: dict[str, int] = field(default_factory=dict)
    """How many orders each participant has in the interval (the intake's cap)."""


class MemorySystem(System):
    """The market in memory: clearing, collateral and the contract's settlement model.

    ``gate_closure_seconds`` and ``reading_window_seconds``: the market's gate closure lead
    time and the contract's reading window (what ``wattledger serve`` and the deployment use
    by default; the composition root passes them).
    """

    signs = False
    supports_grid = True

    def __init__(
        self,
        *,
        interval_seconds: int,
        mechanism: str,
        k: tuple[int, int],
        penalty_price_per_wh: int,
        tolerance_bps: int,
        gate_closure_seconds: int,
        reading_window_seconds: int,
        grid: GridSpec | None = None,
        seed: int = 0,
    ) -> None:
        self.stopwatch = Stopwatch()
        self.label = MEMORY_LABEL
        self.min_order_wh = DEFAULT_MIN_ORDER_WH
        """The market's bounds, as ``wattledger serve`` defaults them (intake's rules)."""
        self.max_orders_per_interval = DEFAULT_MAX_ORDERS_PER_INTERVAL
        self.timing = MarketTiming(
            0, interval_seconds, gate_closure_seconds, reading_window_seconds
        )
        self.domain = Domain(31337, "0x" + "00" * 19 + "01")
        self.mechanism = mechanism
        self.k = k
        self.terms = Terms(penalty_price_per_wh, tolerance_bps, reading_window_seconds)
        self.model = Ledger()
        self.deposited = 0
        """What every participant deposited: the settlement token the escrow holds."""
        self._now = START_SECONDS
        self._seq = 0
        self._books: dict[int, _Book] = {}
        self._closed: set[int] = set()
        self._reserved: dict[str, int] = {}
        self._clearings: dict[int, dict[str, Any]] = {}
        self._trade_counts: dict[int, int] = {}
        self._grid_spec = grid
        self._seed = seed
        self.feeder: Feeder | None = None
        """The grid the market clears on (built at :meth:`onboard`, where the agents' names
        are known); None without ``[grid]``."""
        self._node: dict[str, str] = {}
        self._spreads: dict[int, list[int]] = {}
        """Per committed interval with a grid: buyer price minus seller price of each trade."""
        self.grid_revenue_base_units = 0
        """What the grid operator was credited at settlement."""

    # -- time and set-up ------------------------------------------------------------------------

    def order_minimum_wh(self) -> int:
        """The smallest order intake takes: ``wattledger serve``'s default."""
        return self.min_order_wh

    def now(self) -> int:
        return self._now

    def advance_to(self, unix_seconds: int) -> None:
        self._now = max(self._now, unix_seconds)

    def onboard(self, participants: Sequence[Participant]) -> int:
        """Register each participant and deposit its collateral (no transactions); with a
        grid, place each on its bus."""
        if self._grid_spec is not None:
            self.feeder = build_feeder(
                self._grid_spec,
                [p.name for p in participants],
                seed=self._seed,
                interval_seconds=self.timing.interval_seconds,
            )
            self.model.register(GRID_OPERATOR)
            for p in participants:
                self._node[p.account.address.lower()] = self.feeder.node_of(p.name)
        for p in participants:
            who = p.account.address.lower()
            self.model.register(who)
            if p.collateral_base_units:
                self.model.deposit(who, p.collateral_base_units)
                self.deposited += p.collateral_base_units
        return 0

    def _deployer_account(self) -> LocalAccount:
        raise SimulationError("a memory run has no chain and no deployer")

    # -- intake ---------------------------------------------------------------------------------

    def submit_orders(
        self, submissions: Sequence[tuple[bool, Sequence[Any]]]
    ) -> list[list[dict[str, Any] | None]]:
        """Take unsigned orders (:data:`UnsignedOrder`) in the order given,
        a batch all or none, by the rules of order intake."""
        out: list[list[dict[str, Any] | None]] = []
        one = self._admit_one
        for batch, bodies in submissions:
            if batch and len(bodies) > 1:
                out.append(self._admit(bodies))
            else:
                out.append([one(*body) for body in bodies])
        return out

    def _admit_one(
        self, participant: str, interval: int, intent: OrderIntent
    ) -> dict[str, Any] | None:
        """One order on its own: what :meth:`_admit` does for a batch of one, without its
        staging (most orders come alone)."""
        book = self._books.get(interval)
        if book is None:
            if interval in self._closed or self._now >= self.timing.gate_closure(interval):
                return None
            book = self._books[interval] = _Book()
        who = participant.lower()
        if who not in self.model.registered:
            return None
        quantity, price = intent.quantity_wh, intent.price_per_wh
        buy = intent.side == "buy"
        if buy:
            own_ask = book.best_ask.get(who)
            if own_ask is not None and price >= own_ask:
                return None
            lock = quantity * price  # worst_case_lock_base_units of a bid
        else:
            own_bid = book.best_bid.get(who)
            if own_bid is not None and own_bid >= price:
                return None
            lock = quantity * self.terms.penalty_price_per_wh  # ... of an ask
        reserved = self._reserved.get(who, 0)
        balance = self.model.balances.get(who)
        if (balance.free if balance is not None else 0) - reserved < lock:
            return None
        self._reserved[who] = reserved + lock
        if buy:
            best = book.best_bid.get(who)
            if best is None or price > best:
                book.best_bid[who] = price
        else:
            best = book.best_ask.get(who)
            if best is None or price < best:
                book.best_ask[who] = price
        self._seq = seq = self._seq + 1
        order_id = f"m{seq}"
        book.ids.append(order_id)
        book.is_buy.append(buy)
        book.quantity_wh.append(quantity)
        book.price_per_wh.append(price)
        book.seq.append(seq)
        book.participants.append(who)
        book.locks.append(lock)
        return {"id": order_id}

    def _admit(self, bodies: Sequence[UnsignedOrder]) -> list[dict[str, Any] | None]:
        """Check ``bodies`` in order, each against the book as the earlier ones left it; keep
        all of them, or none when one fails."""
        refused: list[dict[str, Any] | None] = [None] * len(bodies)
        penalty = self.terms.penalty_price_per_wh
        registered = self.model.registered
        balances = self.model.balances
        staged: list[tuple[_Book, str, bool, int, int, int]] = []
        reserving: dict[str, int] = {}
        bids: dict[tuple[int, str], int] = {}
        asks: dict[tuple[int, str], int] = {}
        counting: dict[tuple[int, str], int] = {}
        for participant, interval, intent in bodies:
            book = self._books.get(interval)
            if book is None:
                if interval in self._closed or self._now >= self.timing.gate_closure(interval):
                    return refused  # the interval's gate has closed
                book = self._books[interval] = _Book()
            who = participant.lower()
            if who not in registered:
                return refused
            quantity, price = intent.quantity_wh, intent.price_per_wh
            if quantity < self.min_order_wh:
                return refused  # OrderTooSmall
            placed = book.count.get(who, 0) + counting.get((interval, who), 0)
            if placed >= self.max_orders_per_interval:
                return refused  # TooManyOrders
            counting[interval, who] = counting.get((interval, who), 0) + 1
            # the participant's own opposite order must not cross this one (SelfCross)
            if intent.side == "buy":
                buy = True
                own_ask = asks.get((interval, who), book.best_ask.get(who))
                if own_ask is not None and price >= own_ask:
                    return refused
                best = bids.get((interval, who), book.best_bid.get(who))
                bids[interval, who] = price if best is None or price > best else best
                lock = worst_case_lock_base_units(signing.SIDE_BUY, quantity, price, penalty)
            else:
                buy = False
                own_bid = bids.get((interval, who), book.best_bid.get(who))
                if own_bid is not None and own_bid >= price:
                    return refused
                best = asks.get((interval, who), book.best_ask.get(who))
                asks[interval, who] = price if best is None or price < best else best
                lock = worst_case_lock_base_units(signing.SIDE_SELL, quantity, price, penalty)
            reserved = self._reserved.get(who, 0) + reserving.get(who, 0)
            balance = balances.get(who)
            if (balance.free if balance is not None else 0) - reserved < lock:
                return refused  # InsufficientCollateral
            reserving[who] = reserving.get(who, 0) + lock
            staged.append((book, who, buy, quantity, price, lock))
        stored: list[dict[str, Any] | None] = []
        for book, who, buy, quantity, price, lock in staged:
            self._seq += 1
            order_id = f"m{self._seq}"
            book.ids.append(order_id)
            book.is_buy.append(buy)
            book.quantity_wh.append(quantity)
            book.price_per_wh.append(price)
            book.seq.append(self._seq)
            book.participants.append(who)
            book.locks.append(lock)
            stored.append({"id": order_id})
        for (interval, who), price in bids.items():
            self._books[interval].best_bid[who] = price
        for (interval, who), price in asks.items():
            self._books[interval].best_ask[who] = price
        for (interval, who), n in counting.items():
            book = self._books[interval]
            book.count[who] = book.count.get(who, 0) + n
        for who, amount in reserving.items():
            self._reserved[who] = self._reserved.get(who, 0) + amount
        return stored

    # -- gate closure ---------------------------------------------------------------------------

    def close_gate(self, interval: int) -> None:
        """Freeze ``interval``'s book, leave out uncovered participants, clear it and commit
        the trades to the model (which locks the collateral)."""
        if self._now < self.timing.gate_closure(interval):
            raise SimulationError(f"interval {interval}: its gate closure time has not come")
        if interval in self._closed:
            return
        self._closed.add(interval)
        book = self._books.pop(interval, None)
        if book is None:
            return  # no order: nothing to commit (an empty interval)
        needs: dict[str, int] = {}
        for who, lock in zip(book.participants, book.locks, strict=True):
            needs[who] = needs.get(who, 0) + lock
            self._reserved[who] -= lock
        balances = self.model.balances
        short = {
            who
            for who, need in needs.items()
            if who not in self.model.registered or balances[who].free < need
        }
        rows = [r for r, who in enumerate(book.participants) if who not in short]
        if short:
            book = _Book(
                [book.ids[r] for r in rows],
                [book.is_buy[r] for r in rows],
                [book.quantity_wh[r] for r in rows],
                [book.price_per_wh[r] for r in rows],
                [book.seq[r] for r in rows],
                [book.participants[r] for r in rows],
            )
        columns = OrderBook(
            book.ids,
            np.array(book.is_buy, dtype=np.bool_),
            np.array(book.quantity_wh, dtype=np.int64),
            np.array(book.price_per_wh, dtype=np.int64),
            np.array(book.seq, dtype=np.int64),
        )
        parties = book.participants
        grid_outcome: dict[str, Any] | None = None
        if self.feeder is None:
            result: Any = clear(columns, mechanism=self.mechanism, k=self.k)
            sell_prices = result.trade_price_per_wh.tolist()
        else:
            grid = self.feeder.grid(interval)
            nodes = [self._node[who] for who in parties]
            result = clear_grid(columns, grid, nodes, self.mechanism, self.k)
            sell_prices = result.trade_sell_price_per_wh.tolist()
            grid_outcome = grid_outcome_of(result)
        trades: list[Trade] = []
        published: list[dict[str, Any]] = []
        spreads: list[int] = []
        for b, s, q, p, sp in zip(
            result.trade_buy_rows.tolist(),
            result.trade_sell_rows.tolist(),
            result.trade_quantity_wh.tolist(),
            result.trade_price_per_wh.tolist(),
            sell_prices,
            strict=True,
        ):
            # The model settles at the buyer's price; the seller's share of a grid trade is
            # its own price, the rest goes to the grid operator at settlement (settle()).
            trades.append(Trade(parties[b], parties[s], q, p))
            spreads.append(p - sp)
            published.append(
                {
                    "buyOrder": book.ids[b],
                    "sellOrder": book.ids[s],
                    "buyer": parties[b],
                    "seller": parties[s],
                    "quantityWh": q,
                    "pricePerWh": p,
                    "sellPricePerWh": sp,
                }
            )
        try:
            self.model.commit(interval, trades, self.terms)
        except LedgerError as err:
            raise SimulationError(f"interval {interval}: the commit was refused: {err}") from err
        self._trade_counts[interval] = len(trades)
        if any(spreads):
            self._spreads[interval] = spreads
        self._clearings[interval] = {
            "state": "committed",
            "pricePerWh": None if result.price is None else int(result.price),
            "trades": published,
        }
        if grid_outcome is not None:
            self._clearings[interval]["grid"] = grid_outcome

    def clearing(self, interval: int) -> dict[str, Any]:
        """``interval``'s clearing, in the shape ``GET /intervals/{t}/clearing`` has (handed
        out once: the driver asks once per interval)."""
        found = self._clearings.pop(interval, None)
        if found is None:
            return {"state": "open", "pricePerWh": None, "trades": []}
        return found

    # -- readings and settlement -------------------------------------------------------------

    def submit_readings(self, interval: int, bodies: Sequence[Any]) -> int:
        """Take ``interval``'s readings (:class:`~ledger.records.Reading`, unsigned) in its
        reading window; return how many were refused."""
        if not self.timing.end(interval) <= self._now < self.timing.deadline(interval):
            return len(bodies)  # IntervalNotEnded / ReadingWindowClosed
        refused = 0
        for reading in bodies:
            r = Reading(
                reading.participant.lower(), interval, reading.imported_wh, reading.exported_wh
            )
            try:
                self.model.submit_reading(interval, r)
            except LedgerError:
                refused += 1
        return refused

    def settle(self, due: Sequence[int]) -> SettlementProgress:
        """Settle every committed interval whose reading deadline has passed, each in one go."""
        progress = SettlementProgress()
        for t in sorted(self._trade_counts):
            if self.timing.deadline(t) > self._now:
                continue
            count = self._trade_counts.pop(t)
            result = self.model.settle(t, count)
            spreads = self._spreads.pop(t, None)
            if spreads is not None:
                self._credit_grid(t, result.outcomes, spreads)
            progress.outcomes += [
                TradeSettled(t, o.index, o.delivered_wh, o.payment, o.refund, o.penalty)
                for o in result.outcomes
            ]
            progress.settled.append(t)
            # A settled interval is final: keep its state, not its trades and readings
            # (a year holds millions of them).
            state = self.model.intervals[t]
            state.trades = ()
            state.outcomes = []
            state.exported_wh = {}
            state.read = set()
        return progress

    def _credit_grid(self, t: int, outcomes: Sequence[Any], spreads: Sequence[int]) -> None:
        """Move ``delivered · (price − sell price)`` of each settled trade from its seller,
        whom the model paid the buyer's price, to the grid operator: the two-price
        settlement of docs/grid.md §8 (undelivered energy earns the grid nothing; balances
        still sum to the deposits)."""
        trades = self.model.intervals[t].trades
        balances = self.model.balances
        credited = 0
        for o in outcomes:
            share = o.delivered_wh * spreads[o.index]
            if share:
                balances[trades[o.index].seller].free -= share
                credited += share
        if credited:
            self.model.balance(GRID_OPERATOR).free += credited
            self.grid_revenue_base_units += credited

    # -- checks ---------------------------------------------------------------------------------

    def escrow_balanced(self) -> bool:
        """The balances sum to what was deposited (the token the escrow would hold)."""
        model = self.model
        return model.total_balances() == model.total_escrowed == self.deposited

    def balances_of(self, addresses: Sequence[str]) -> dict[str, Balance]:
        out = {}
        for a in addresses:
            b = self.model.balance(a.lower())
            out[a] = Balance(b.free, b.locked)
        return out

    def audit(self, intervals: Sequence[int]) -> Any:
        raise SimulationError(
            "a memory run has no chain and publishes no signed order sets: nothing to audit",
            hint="Audit a run on the embedded chain or on anvil (drop --ledger memory).",
        )


def grid_outcome_of(result: Any) -> dict[str, Any]:
    """What a memory run records of a grid clearing (:class:`GridClearingResult`): node
    prices by node id, the edges at a cap, flows, fee revenue and congestion rent."""
    grid = result.grid
    ids, terms, root = grid.node_ids, grid.edge_terms, grid.root_index
    at_cap = []
    flows = {}
    for i, z in enumerate(result.flows_wh):
        if not z or i == root:  # no flow: not at a cap either
            continue
        node = ids[i]
        flows[node] = z
        import_cap, export_cap, _fee = terms[i]
        if (z > 0 and z == export_cap) or (z < 0 and -z == import_cap):
            at_cap.append(node)
    return {
        "nodePrices": dict(zip(ids, result.node_prices, strict=True)),
        "flows": flows,
        "atCap": at_cap,
        "feeRevenue": int(result.fee_revenue_base_units),
        "congestionRent": int(result.congestion_rent_base_units),
        "gridRoot": grid.grid_root_hex,
    }


__all__ = ["GRID_OPERATOR", "MEMORY_LABEL", "START_SECONDS", "MemorySystem", "UnsignedOrder"]
