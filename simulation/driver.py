"""The simulation run loop: agents trade through the real market API for every interval.

:func:`run_simulation` takes a scenario and a :class:`~simulation.system.System` (the market
in-process on the embedded chain or on ``--rpc-url``, or an already running ``serve``) and
returns the :class:`~simulation.record.RunRecord` the report is made from.

Set-up
    Every agent becomes a participant: the deployer sends it a little native currency for
    gas, registers it with its meter key and mints its collateral; the agent approves and
    deposits the collateral itself (:meth:`System.onboard`).

The loop
    Simulation interval ``t`` is on-chain interval ``T = T0 + t``, where ``T0`` is the first
    interval whose gate is still open after set-up; interval timing (epoch, length, reading
    window) is the contract's. Time only moves forward, one step per interval, to the gate
    closure of ``T``::

        close T's gate         the market freezes, clears and commits T (before T starts,
                               so before its end, as commitInterval demands)
        fetch T's clearing     GET /intervals/T/clearing; agents learn their fills
                               (on_fills) and what their meters measured (meter); the
                               meter of every party to a contract of T signs its reading
        orders for T+1         each agent signs its orders: POST /orders each, a VPP's
                               all at once through POST /orders:batch
        readings of T-2        in one POST /meter-readings:batch: T-2's delivery ended
                               when T-1 began, and its reading window runs for the
                               contract's readingWindowSeconds (an hour by default)
        settle                 the settlement service submits queued readings and settles,
                               in chunks, every committed interval past its deadline

    After the last interval time moves to its end (the last readings go in) and past the
    last reading deadline, and settlement finishes. The agents' calls come in the order
    :mod:`simulation.agents.base` demands (orders, fills, meter for t = 0, 1, ...). Orders
    are submitted one at a time in agent order, so arrival sequence, and with it the
    clearing of equal prices, is the same in every run of a seed.

What is recorded
    Orders as the API accepted them (ids are the order hashes), the clearing as the API
    publishes it (``GET /intervals/{t}/clearing``), the agents' meter samples, and each
    trade's settlement from the contract's ``TradeSettled`` events. Checks only the driver
    can make are added to the record: every order was accepted, the escrow's balances sum to
    its token balance, and every participant's on-chain balance equals its deposit plus its
    net position from the settlement events.

Timing
    Wall time per stage goes to :attr:`RunRecord.timing_seconds`: ``setup`` (deployment
    excluded: registration, minting and deposits, chain included), ``agents`` (strategies,
    physics, signing), ``api`` (HTTP requests, in the market's process too), ``clearing``
    (gate closure: freeze, clear, store), ``settlement`` (the settlement service's own work),
    ``chain`` (every contract call and transaction and moving chain time, wherever it is
    made) and ``checks`` (the final checks against the chain).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import coincurve

from ledger.events import TradeSettled
from ledger.records import Reading
from market.client import OrderSigner
from simulation.agents import Agent, MarketView, OrderIntent, build_agents
from simulation.errors import SimulationError
from simulation.fold import DayFolder
from simulation.grid_watch import GridWatch
from simulation.positions import positions
from simulation.profiles import intervals_per_day
from simulation.readings import signed_reading_body
from simulation.record import RunRecord, RunRecorder, SettlementRecord
from simulation.scenario import Scenario
from simulation.system import Participant, System
from simulation.transactions import local_account

PRICE_MEMORY_INTERVALS = 192
"""How many past clearing prices agents are shown (two days of 15-minute intervals)."""


@dataclass
class RunState:
    """Counters the progress display shows while a run goes on."""

    intervals_done: int = 0
    intervals: int = 0
    orders: int = 0
    rejected: int = 0
    readings_refused: int = 0
    trades: int = 0
    committed: int = 0
    settled: int = 0
    phase: str = "setting up"
    audit: list[str] = field(default_factory=list)
    """The audit's report lines, when the run was audited."""


ProgressHook = Callable[[RunState], None]


@dataclass
class _Trade:
    """A committed trade, kept until it settles (commit order = ``TradeSettled`` index)."""

    buy_order_id: str
    sell_order_id: str
    buyer: str
    seller: str
    quantity_wh: int
    price_per_wh: int
    sell_price_per_wh: int


@dataclass
class _Interval:
    """The driver's bookkeeping of one on-chain interval."""

    t: int
    trades: list[_Trade] = field(default_factory=list)
    readings: list[Any] = field(default_factory=list)
    """Signed reading bodies, or :class:`~ledger.records.Reading` where the system takes them
    unsigned."""
    committed: bool = False
    settled: bool = False


def run_simulation(
    scenario: Scenario,
    system: System,
    *,
    on_progress: ProgressHook | None = None,
    audit: bool = False,
    fold: bool | None = None,
) -> RunRecord:
    """Run ``scenario`` on ``system``; return the finished record (nothing is written).

    ``audit``: at the end, audit every committed interval as ``wattledger audit`` would
    (published order sets re-cleared and checked against the chain) and add the outcome to
    the record's checks as ``audit_passes`` (the audit's own lines go to ``on_progress``'s
    :attr:`RunState.audit`).

    ``fold``: add the run up day by day (:mod:`simulation.fold`) and keep no rows; by
    default when it is longer than a day.
    """
    with _collect_less():
        return _Run(scenario, system, on_progress or (lambda _state: None), audit, fold).run()


GC_THRESHOLD = 100_000
"""Allocations between two young-generation collections during a run (Python's default is
700)."""


@contextlib.contextmanager
def _collect_less() -> Iterator[None]:
    """Run with fewer garbage collections, then restore the collector's settings.

    An interval allocates tens of thousands of short-lived objects (orders, intents, records)
    and creates almost no reference cycles, while the objects that live for the whole run
    (agents, their profiles, the record) grow with it: with the default thresholds the
    collector took a third of a memory run's time (11 against 7.5 ms of CPU per interval for
    200 agents). Objects alive at the start, and the agents once set up, are frozen out of
    collection, and young collections come every :data:`GC_THRESHOLD` allocations.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, thresholds[1], thresholds[2])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


class _Run:
    def __init__(
        self,
        scenario: Scenario,
        system: System,
        on_progress: ProgressHook,
        audit: bool,
        fold: bool | None = None,
    ) -> None:
        self.audit = audit
        self.scenario = scenario
        self.system = system
        self.sw = system.stopwatch
        self.on_progress = on_progress
        self.state = RunState(intervals=scenario.simulation.intervals)
        sim = scenario.simulation
        if fold is None:
            fold = sim.intervals > intervals_per_day(sim.interval_seconds)
        folder = DayFolder(sim.interval_seconds, scenario.calendar.start_date) if fold else None
        self.recorder = RunRecorder(scenario, chain=system.label, fold=folder)
        self.agents: list[Agent] = []
        self.signers: dict[str, OrderSigner] = {}
        self.nonces: dict[str, itertools.count[int]] = {}
        self.name_of: dict[str, str] = {}
        self.meter_keys: dict[str, coincurve.PrivateKey] = {}
        self.intervals: dict[int, _Interval] = {}
        self.unsettled: set[int] = set()
        """Committed intervals not settled yet."""
        self.prices: list[int | None] = []
        self.accepted: dict[int, int] = {}
        self.t0 = 0
        self.min_order_wh = 1
        self.grid: GridWatch | None = None
        """The feeder's clearing outcomes, curtailment and power flow (with ``[grid]``)."""

    # ------------------------------------------------------------------ top level

    def run(self) -> RunRecord:
        sim = self.scenario.simulation
        timing = self.system.timing
        with self.sw.stage("setup", split_chain=False):
            self._setup()
            self.min_order_wh = self.system.order_minimum_wh()
        gc.freeze()  # the agents and their profiles live as long as the run
        self.t0 = timing.current(self.system.now()) + 2
        self._place_orders(0)
        last = self.t0 + sim.intervals - 1
        for t in range(sim.intervals):
            interval = self.t0 + t
            self._advance(timing.gate_closure(interval))
            self._close(t)
            if t < sim.intervals - 1:
                self._place_orders(t + 1)
            self._deliver_readings(interval - 2)
            self._settle()
            self.state.intervals_done = t + 1
            self._report("trading")
        self._report("settling")
        self._advance(timing.end(last))
        self._deliver_readings(last - 1)
        self._deliver_readings(last)
        self._settle()
        self._advance(timing.deadline(last))
        self._settle()
        pending = sorted(self.intervals[i].t for i in self.unsettled)
        if pending:
            raise SimulationError(
                f"intervals {pending} (simulation numbering) were committed but did not "
                "settle after their reading deadline"
            )
        with self.sw.stage("checks", split_chain=False):
            self._final_checks()
        if self.audit:
            self._report("auditing")
            with self.sw.stage("audit", split_chain=False):
                self._audit()
        self._report("done")
        self.recorder.timing_seconds.update(self.sw.seconds)
        return self.recorder.finish(self.agents)

    def _report(self, phase: str) -> None:
        self.state.phase = phase
        self.on_progress(self.state)

    def _advance(self, unix_seconds: int) -> None:
        with self.sw.stage("chain"):
            self.system.advance_to(unix_seconds)

    # ------------------------------------------------------------------ set-up

    def _setup(self) -> None:
        if self.scenario.grid is not None and not self.system.supports_grid:
            raise SimulationError(
                "grid scenarios run with --ledger memory until the contract supports the grid",
                hint="Add --ledger memory, or drop the scenario's [grid] section.",
            )
        self.agents = build_agents(self.scenario)
        participants = []
        for agent in self.agents:
            account = local_account(agent.participant_private_key)
            self.signers[agent.name] = OrderSigner(account, self.system.domain)
            self.nonces[agent.name] = itertools.count(1)
            self.name_of[account.address.lower()] = agent.name
            participants.append(
                Participant(agent.name, account, agent.meter_address, agent.collateral_base_units())
            )
            self.recorder.add_participant(agent, account.address)
        self._report("registering participants")
        self.system.onboard(participants)
        if self.scenario.grid is not None:
            self.grid = GridWatch(self.scenario, self.system.feeder)
            self.recorder.grid_template = self.grid.template

    # ------------------------------------------------------------------ orders

    def _place_orders(self, t: int) -> None:
        interval = self.t0 + t
        view = MarketView(
            self.scenario.simulation.interval_seconds,
            tuple(self.prices[-PRICE_MEMORY_INTERVALS:]),
            self.min_order_wh,
        )
        expiry = self.system.timing.gate_closure(interval)
        signs = self.system.signs
        placed: list[tuple[Agent, list[OrderIntent]]] = []
        submissions: list[tuple[bool, list[Any]]] = []
        with self.sw.stage("agents"):
            for agent in self.agents:
                intents = agent.orders(t, view)
                if not intents:
                    continue
                signer = self.signers[agent.name]
                if signs:
                    nonces = self.nonces[agent.name]
                    bodies: list[Any] = [
                        signer.order(
                            interval,
                            i.side,
                            i.quantity_wh,
                            i.price_per_wh,
                            nonce=next(nonces),
                            expiry=expiry,
                        )
                        for i in intents
                    ]
                else:
                    address = signer.account.address
                    bodies = [(address, interval, i) for i in intents]
                placed.append((agent, intents))
                submissions.append((agent.batch, bodies))
        with self.sw.stage("api"):
            results = self.system.submit_orders(submissions)
        for (agent, intents), stored in zip(placed, results, strict=True):
            for intent, order in zip(intents, stored, strict=True):
                if order is None:
                    self.state.rejected += 1
                    continue
                self.recorder.add_order(t, order["id"], agent.name, intent)
                self.accepted[t] = self.accepted.get(t, 0) + 1
                self.state.orders += 1

    # ------------------------------------------------------------------ gate closure

    def _close(self, t: int) -> None:
        interval = self.t0 + t
        record = _Interval(t)
        self.intervals[interval] = record
        has_orders = self.accepted.get(t, 0) > 0
        price: int | None = None
        trades: list[tuple[str, str, int, int]] = []
        sell_prices: list[int] = []
        grid_outcome: dict[str, Any] | None = None
        if has_orders:
            with self.sw.stage("clearing"):
                self.system.close_gate(interval)
            with self.sw.stage("api"):
                clearing = self.system.clearing(interval)
            if clearing["state"] != "committed":
                raise SimulationError(
                    f"interval {interval}: gate closed but the market reports "
                    f"{clearing['state']!r}, not committed"
                )
            price = None if clearing["pricePerWh"] is None else int(clearing["pricePerWh"])
            grid_outcome = clearing.get("grid")
            for trade in clearing["trades"]:
                quantity, trade_price = int(trade["quantityWh"]), int(trade["pricePerWh"])
                stated = trade.get("sellPricePerWh")  # null outside a grid market
                sell_price = trade_price if stated is None else int(stated)
                trades.append((trade["buyOrder"], trade["sellOrder"], quantity, trade_price))
                sell_prices.append(sell_price)
                record.trades.append(
                    _Trade(
                        trade["buyOrder"],
                        trade["sellOrder"],
                        self.name_of[trade["buyer"].lower()],
                        self.name_of[trade["seller"].lower()],
                        quantity,
                        trade_price,
                        sell_price,
                    )
                )
            record.committed = True
            self.unsettled.add(interval)
            self.state.committed += 1
            self.state.trades += len(trades)
        self.recorder.add_clearing(t, price, trades, sell_prices if self.grid is not None else None)
        if record.committed:
            self.recorder.mark_committed(t)
        self.prices.append(_reference_price(price, trades))
        separator = self.system.domain.separator
        signs = self.system.signs
        grid = self.grid
        metered: dict[str, tuple[int, int]] = {}
        curtailed = 0
        with self.sw.stage("agents"):
            for agent in self.agents:
                bought, sold = self.recorder.fills_of(t, agent.name)
                agent.on_fills(t, bought, sold, price)
                sample = agent.meter(t)
                if grid is not None:
                    sample, cut = grid.limit_export(sample, bought, sold)
                    curtailed += cut
                    metered[agent.name] = (sample.imported_wh, sample.exported_wh)
                self.recorder.add_meter(t, agent.name, sample)
                if bought or sold:
                    address = self.signers[agent.name].account.address
                    reading = Reading(address, interval, sample.imported_wh, sample.exported_wh)
                    record.readings.append(
                        signed_reading_body(self._meter_key(agent), separator, reading)
                        if signs
                        else reading
                    )

        if grid is not None:
            with self.sw.stage("power_flow"):
                self.recorder.add_grid(grid.observe(t, grid_outcome, curtailed, metered))

    def _meter_key(self, agent: Agent) -> coincurve.PrivateKey:
        """The agent's meter key, made once (making one derives its public key)."""
        key = self.meter_keys.get(agent.name)
        if key is None:
            key = self.meter_keys[agent.name] = coincurve.PrivateKey(agent.meter_private_key)
        return key

    # ------------------------------------------------------------------ settlement

    def _deliver_readings(self, interval: int) -> None:
        """The meters of ``interval``'s parties post their signed readings."""
        record = self.intervals.get(interval)
        if record is None or not record.readings:
            return
        with self.sw.stage("api"):
            self.state.readings_refused += self.system.submit_readings(interval, record.readings)
        record.readings = []

    def _settle(self) -> None:
        now = self.system.now()
        deadline = self.system.timing.deadline
        due = sorted(i for i in self.unsettled if deadline(i) <= now)
        with self.sw.stage("settlement"):
            progress = self.system.settle(due)
        by_interval: dict[int, list[TradeSettled]] = {}
        for outcome in progress.outcomes:
            by_interval.setdefault(outcome.interval, []).append(outcome)
        for interval, outcomes in by_interval.items():
            record = self.intervals[interval]
            settled = []
            for o in outcomes:
                trade = record.trades[o.trade_index]
                settled.append(
                    SettlementRecord(
                        record.t,
                        trade.buy_order_id,
                        trade.sell_order_id,
                        trade.buyer,
                        trade.seller,
                        trade.quantity_wh,
                        o.delivered_wh,
                        trade.price_per_wh,
                        o.payment_base_units,
                        o.refund_base_units,
                        o.penalty_base_units,
                        o.delivered_wh * (trade.price_per_wh - trade.sell_price_per_wh),
                    )
                )
            self.recorder.add_settlements(settled)
        for interval in progress.settled:
            record = self.intervals[interval]
            if not record.settled:
                record.settled = True
                record.trades = []  # settled: its outcomes are recorded
                self.unsettled.discard(interval)
                self.recorder.mark_settled(record.t)
                self.state.settled += 1

    # ------------------------------------------------------------------ checks

    def _audit(self) -> None:
        committed = sorted(i for i, r in self.intervals.items() if r.committed)
        if not committed:
            self.recorder.extra_checks["audit_passes"] = True
            return
        report = self.system.audit(committed)
        self.state.audit = report.lines()
        self.recorder.extra_checks["audit_passes"] = report.ok

    def _final_checks(self) -> None:
        """Checks against the chain that only the driver can make (added to the record)."""
        checks = self.recorder.extra_checks
        checks["all_orders_accepted"] = self.state.rejected == 0
        checks["all_readings_accepted"] = self.state.readings_refused == 0
        checks["escrow_equals_token_balance"] = self.system.escrow_balanced()
        interim = self.recorder.finish(self.agents)
        net = positions(interim)
        balances = self.system.balances_of([p.address for p in interim.participants])
        matches = True
        for p in interim.participants:
            balance = balances[p.address]
            expected = p.collateral_base_units + net[p.name].net_base_units
            if balance.locked != 0 or balance.free != expected:
                matches = False
        checks["ledger_balances_match_settlements"] = matches


def _reference_price(price: int | None, trades: Sequence[tuple[str, str, int, int]]) -> int | None:
    """What agents see as the interval's price: the uniform price, or under pay-as-bid the
    volume-weighted trade price rounded down; ``None`` when nothing traded."""
    if not trades:
        return None
    if price is not None:
        return price
    volume = sum(q for _, _, q, _ in trades)
    return sum(q * p for _, _, q, p in trades) // volume


__all__ = ["PRICE_MEMORY_INTERVALS", "ProgressHook", "RunState", "run_simulation"]
