"""What a simulation run produced, as plain frozen data: the input of the report and summary.

A driver fills a :class:`RunRecorder` while it runs (orders, clearing, meter readings,
settlements) and calls :meth:`RunRecorder.finish` to get a :class:`RunRecord`. Everything in
it is an exact integer (Wh, base units, base units per Wh) or a string; nothing depends on
wall-clock time except :attr:`RunRecord.timing_seconds`, which the summary leaves out so the
same seed gives the same ``summary.json``.

From a record, pure functions derive:

* :func:`~simulation.positions.positions`: each participant's energy and money (net
  position in base units, bought, sold, delivered, self-supplied, grid top-up);
* :func:`~simulation.checks.check_record`: the run's conservation properties (energy,
  tokens, individual rationality, settlement completeness, data-center deadlines), each True
  or False with the first violations spelled out;
* :func:`~simulation.summary.summarize`: the JSON-ready headline figures that
  ``summary.json`` holds.

A driver's loop, in outline (signing, HTTP and the chain are the driver's business)::

    agents = build_agents(scenario)
    recorder = RunRecorder(scenario, chain="eth-tester")
    for agent in agents:                       # deposit, register keys
        recorder.add_participant(agent)        # agent.collateral_base_units(), addresses
    prices = []
    for t in range(scenario.simulation.intervals):
        view = MarketView(scenario.simulation.interval_seconds, tuple(prices))
        for agent in agents:
            for intent in agent.orders(t, view):   # submit; agent.batch -> /orders:batch
                recorder.add_order(t, order_id, agent.name, intent)
        recorder.add_clearing(t, result.price, [(buy_id, sell_id, wh, price), ...])
        recorder.mark_committed(t)             # once commitInterval went through
        for agent in agents:
            agent.on_fills(t, *recorder.fills_of(t, agent.name), result.price)
            sample = agent.meter(t)            # sign (imported_wh, exported_wh), submit
            recorder.add_meter(t, agent.name, sample)
        recorder.add_settlements([...]); recorder.mark_settled(t)   # when settled
        prices.append(result.price)            # pay-as-bid: the volume-weighted price
    record = recorder.finish(agents)
    files = write_run(record, out_dir)         # simulation.report.files
    print(headline_text(record, files["report.html"]))
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from simulation.agents.base import Agent, MeterSample, OrderIntent, Side
from simulation.agents.datacenter import DataCenterAgent
from simulation.aggregates import Season
from simulation.grid_log import GridIntervalRecord, GridRecord
from simulation.profiles import intervals_per_day
from simulation.scenario import Scenario

# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class ParticipantRecord:
    """One participant: its agent name and kind, address and initial deposit."""

    name: str
    kind: str
    address: str
    collateral_base_units: int
    batch: bool = False


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One accepted order and how much of it filled."""

    interval: int
    order_id: str
    participant: str
    side: Side
    quantity_wh: int
    price_per_wh: int
    filled_wh: int = 0


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One cleared trade (a dynamic energy contract once committed)."""

    interval: int
    buy_order_id: str
    sell_order_id: str
    buyer: str
    seller: str
    quantity_wh: int
    price_per_wh: int
    sell_price_per_wh: int | None = None
    """What the seller receives per Wh on a grid (docs/grid.md §4); None: ``price_per_wh``."""

    @property
    def value_base_units(self) -> int:
        """What the buyer locked: ``quantity_wh * price_per_wh``."""
        return self.quantity_wh * self.price_per_wh


@dataclass(frozen=True, slots=True)
class SettlementRecord:
    """How one trade settled (DESIGN §5): delivery, payment, refund and penalty.

    ``paid_base_units`` moves from buyer to seller (``delivered_wh * price``),
    ``refunded_base_units`` returns to the buyer (``(quantity - delivered) * price``), and
    ``penalty_base_units`` moves from the seller's bond to the buyer.
    """

    interval: int
    buy_order_id: str
    sell_order_id: str
    buyer: str
    seller: str
    quantity_wh: int
    delivered_wh: int
    price_per_wh: int
    paid_base_units: int
    refunded_base_units: int
    penalty_base_units: int
    grid_base_units: int = 0
    """Of ``paid_base_units``, what the grid operator received (``delivered * (price −
    sell price)``); the seller received the rest."""

    @property
    def shortfall_wh(self) -> int:
        """Contracted energy the seller did not deliver."""
        return self.quantity_wh - self.delivered_wh


@dataclass(frozen=True, slots=True)
class IntervalRecord:
    """One delivery interval's market outcome and settlement state.

    ``price_per_wh`` is the uniform clearing price (``None`` when nothing traded, or under
    pay-as-bid); ``committed`` once its trades are on-chain, ``settled`` once settlement
    reached the end of its trades.
    """

    interval: int
    price_per_wh: int | None
    volume_wh: int
    committed: bool = False
    settled: bool = False


@dataclass(frozen=True, slots=True)
class MeterRecord:
    """One participant's meter reading for one interval, with what stayed behind the meter."""

    interval: int
    participant: str
    imported_wh: int
    exported_wh: int
    load_wh: int
    generation_wh: int

    @property
    def self_supplied_wh(self) -> int:
        """Own load met on site: ``max(0, load - imported)``."""
        return max(0, self.load_wh - self.imported_wh)


@dataclass(frozen=True, slots=True)
class LoadShiftRecord:
    """A data center's load in one interval: base, must-run and flexible batch work (Wh)."""

    participant: str
    interval: int
    base_wh: int
    must_run_wh: int
    flexible_wh: int
    bought_wh: int

    @property
    def batch_wh(self) -> int:
        """All batch work run in the interval."""
        return self.must_run_wh + self.flexible_wh


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A data-center job's outcome. ``open``: its deadline lies after the run's end."""

    participant: str
    job: str
    energy_wh: int
    release_interval: int
    deadline_interval: int
    consumed_wh: int
    finished_interval: int | None
    open: bool = False

    @property
    def met(self) -> bool:
        """All its energy consumed by its deadline (within its window)."""
        return (
            self.consumed_wh == self.energy_wh
            and self.finished_interval is not None
            and self.release_interval <= self.finished_interval <= self.deadline_interval
        )


@dataclass(frozen=True)
class RunRecord:
    """Everything the report, the CSVs and ``summary.json`` are made from.

    Sequences are in the order the run produced them (interval, then arrival). ``chain``
    names the ledger the run used (``"eth-tester"``, ``"anvil (chain 31337)"``...).
    ``extra_checks`` are properties only the driver can test (for instance that the market
    contract's balances sum to its token balance), shown with the record's own checks.
    ``timing_seconds`` is wall time per stage (agents, API, clearing, chain); it is shown in
    the report but kept out of the summary, which must not depend on the machine.
    """

    scenario: str
    seed: int
    intervals: int
    interval_seconds: int
    mechanism: str
    k: tuple[int, int]
    penalty_price_per_wh: int
    tolerance_bps: int
    chain: str
    participants: tuple[ParticipantRecord, ...]
    interval_results: tuple[IntervalRecord, ...]
    orders: tuple[OrderRecord, ...] = ()
    trades: tuple[TradeRecord, ...] = ()
    settlements: tuple[SettlementRecord, ...] = ()
    meters: tuple[MeterRecord, ...] = ()
    load_shift: tuple[LoadShiftRecord, ...] = ()
    jobs: tuple[JobRecord, ...] = ()
    extra_checks: Mapping[str, bool] = field(default_factory=dict)
    timing_seconds: Mapping[str, float] = field(default_factory=dict)
    description: str = ""
    grid: GridRecord | None = None
    """The feeder and its per-interval outcomes, for a scenario with ``[grid]``."""
    season: Season | None = None
    """For a run folded day by day (longer than a day, :mod:`simulation.fold`): the totals
    of every day. Then ``orders`` holds only the busiest interval's orders (for its supply
    and demand curves) and ``trades``, ``settlements`` and ``meters`` are empty: their
    totals, positions and checks are in the season."""

    def kind_of(self) -> dict[str, str]:
        """Participant name -> kind."""
        return {p.name: p.kind for p in self.participants}


# --------------------------------------------------------------------------- recording


class DayFold(Protocol):
    """Adds up a run day by day (:class:`simulation.fold.DayFolder`)."""

    def add_day(self, day: int, chunk: RunRecord) -> None:
        """Add day ``day``: ``chunk`` holds its intervals' results and every order, trade,
        settlement and meter reading of them, and nothing else."""
        ...

    def season(self) -> Season:
        """The totals of the days added so far."""
        ...


class RunRecorder:
    """Collects a run as it happens; :meth:`finish` turns it into a :class:`RunRecord`.

    The driver calls, for each interval: :meth:`add_order` per accepted order,
    :meth:`add_clearing` once cleared (with the trades and fills), :meth:`add_meter` per
    agent reading, :meth:`mark_committed`, and :meth:`add_settlements` plus
    :meth:`mark_settled` as settlement completes (possibly several intervals later).
    """

    def __init__(self, scenario: Scenario, chain: str, fold: DayFold | None = None) -> None:
        self.scenario = scenario
        self.chain = chain
        self.fold = fold
        """When given, each day is added to it and its rows dropped once all of the day has
        settled (see :attr:`RunRecord.season`), so a year's record stays small."""
        self._per_day = intervals_per_day(scenario.simulation.interval_seconds)
        self._folded_days = 0
        self._metered_upto = -1
        self._book: tuple[int, int, tuple[OrderRecord, ...]] = (-1, 0, ())
        """The busiest folded interval so far: (interval, volume, its orders)."""
        self._participants: list[ParticipantRecord] = []
        self._orders: dict[str, OrderRecord] = {}
        self._trades: list[TradeRecord] = []
        self._settlements: list[SettlementRecord] = []
        self._meters: list[MeterRecord] = []
        self._intervals: dict[int, IntervalRecord] = {}
        self._fills: dict[tuple[int, str], tuple[int, int]] = {}
        self._grid: list[GridIntervalRecord] = []
        self.grid_template: GridRecord | None = None
        """Set by the driver for a run on a grid: the feeder (its intervals are added)."""
        self.extra_checks: dict[str, bool] = {}
        self.timing_seconds: dict[str, float] = defaultdict(float)

    def add_participant(self, agent: Agent, address: str | None = None) -> None:
        """Register an agent as a participant (address defaults to its participant key's)."""
        self._participants.append(
            ParticipantRecord(
                agent.name,
                agent.kind,
                address or agent.participant_address,
                agent.collateral_base_units(),
                agent.batch,
            )
        )

    def add_order(self, t: int, order_id: str, participant: str, intent: OrderIntent) -> None:
        """Record an order the market accepted for interval ``t``."""
        if order_id in self._orders:
            raise ValueError(f"order id {order_id!r} recorded twice")
        self._orders[order_id] = OrderRecord(
            t, order_id, participant, intent.side, intent.quantity_wh, intent.price_per_wh
        )

    def add_clearing(
        self,
        t: int,
        price_per_wh: int | None,
        trades: Iterable[tuple[str, str, int, int]],
        sell_prices: Sequence[int] | None = None,
    ) -> None:
        """Record interval ``t``'s clearing: price and ``(buy id, sell id, Wh, price)`` trades,
        with each trade's seller price on a grid (``sell_prices``).

        Order fills are derived from the trades.
        """
        volume = 0
        for n, (buy_id, sell_id, quantity_wh, trade_price) in enumerate(trades):
            buy, sell = self._orders[buy_id], self._orders[sell_id]
            self._trades.append(
                TradeRecord(
                    t,
                    buy_id,
                    sell_id,
                    buy.participant,
                    sell.participant,
                    quantity_wh,
                    trade_price,
                    None if sell_prices is None else sell_prices[n],
                )
            )
            for order_id in (buy_id, sell_id):
                order = self._orders[order_id]
                self._orders[order_id] = _replace_fill(order, order.filled_wh + quantity_wh)
            self._add_fill(t, buy.participant, quantity_wh, 0)
            self._add_fill(t, sell.participant, 0, quantity_wh)
            volume += quantity_wh
        self._intervals[t] = IntervalRecord(t, price_per_wh if volume else None, volume)

    def _add_fill(self, t: int, participant: str, bought_wh: int, sold_wh: int) -> None:
        bought, sold = self._fills.get((t, participant), (0, 0))
        self._fills[t, participant] = (bought + bought_wh, sold + sold_wh)

    def fills_of(self, t: int, participant: str) -> tuple[int, int]:
        """``(bought_wh, sold_wh)`` of ``participant`` in ``t``, for ``Agent.on_fills``."""
        return self._fills.get((t, participant), (0, 0))

    def add_meter(self, t: int, participant: str, sample: MeterSample) -> None:
        """Record an agent's meter sample for ``t``."""
        if t > self._metered_upto:
            self._metered_upto = t
        self._meters.append(
            MeterRecord(
                t,
                participant,
                sample.imported_wh,
                sample.exported_wh,
                sample.load_wh,
                sample.generation_wh,
            )
        )

    def add_grid(self, record: GridIntervalRecord) -> None:
        """Record one interval on the grid (node prices dropped in a folded run)."""
        if self.fold is not None and record.node_prices:
            record = GridIntervalRecord(
                record.interval,
                (),
                record.at_cap,
                record.fee_revenue_base_units,
                record.congestion_rent_base_units,
                record.curtailed_wh,
                record.flow,
            )
        self._grid.append(record)

    def mark_committed(self, t: int) -> None:
        """Interval ``t``'s trades are on-chain."""
        self._mark(t, committed=True)

    def add_settlements(self, records: Iterable[SettlementRecord]) -> None:
        """Record settled trades (any interval, any chunk)."""
        self._settlements.extend(records)

    def mark_settled(self, t: int) -> None:
        """Interval ``t`` reached ``Settled``."""
        self._mark(t, settled=True)
        if self.fold is not None:
            self._fold_ready()

    def _fold_ready(self, *, final: bool = False) -> None:
        """Fold every day that is over (its last interval metered, the next one begun) and
        whose committed intervals have all settled; at the end (``final``) every day left."""
        intervals = self.scenario.simulation.intervals
        while self._folded_days * self._per_day < intervals:
            first = self._folded_days * self._per_day
            end = min(first + self._per_day, intervals)
            if not final:
                if self._metered_upto < end:
                    return
                for t in range(first, end):
                    r = self._intervals.get(t)
                    if r is not None and r.committed and not r.settled:
                        return
            self._fold_day(self._folded_days, first, end)
            self._folded_days += 1

    def _fold_day(self, day: int, first: int, end: int) -> None:
        assert self.fold is not None
        orders: list[OrderRecord] = []
        for order in self._orders.values():
            if order.interval >= end:
                break
            orders.append(order)
        for order in orders:
            del self._orders[order.order_id]
        cut = next(
            (n for n, tr in enumerate(self._trades) if tr.interval >= end), len(self._trades)
        )
        trades, self._trades = self._trades[:cut], self._trades[cut:]
        settlements = [s for s in self._settlements if s.interval < end]
        self._settlements = [s for s in self._settlements if s.interval >= end]
        cut = next((n for n, m in enumerate(self._meters) if m.interval >= end), len(self._meters))
        meters, self._meters = self._meters[:cut], self._meters[cut:]
        self._fills = {key: fill for key, fill in self._fills.items() if key[0] >= end}
        results = tuple(
            self._intervals.get(t, IntervalRecord(t, None, 0)) for t in range(first, end)
        )
        busiest = max(results, key=lambda r: (r.volume_wh, -r.interval))
        if busiest.volume_wh > self._book[1]:
            book = tuple(o for o in orders if o.interval == busiest.interval)
            self._book = (busiest.interval, busiest.volume_wh, book)
        self.fold.add_day(
            day,
            self._record(
                results,
                orders=tuple(orders),
                trades=tuple(trades),
                settlements=tuple(settlements),
                meters=tuple(meters),
            ),
        )

    def _mark(self, t: int, **flags: bool) -> None:
        current = self._intervals.get(t, IntervalRecord(t, None, 0))
        values = {
            "committed": current.committed,
            "settled": current.settled,
            **flags,
        }
        self._intervals[t] = IntervalRecord(
            t, current.price_per_wh, current.volume_wh, values["committed"], values["settled"]
        )

    def finish(self, agents: Sequence[Agent]) -> RunRecord:
        """The finished record; data-center load and job outcomes are read from ``agents``."""
        sim = self.scenario.simulation
        load_shift: list[LoadShiftRecord] = []
        jobs: list[JobRecord] = []
        for agent in agents:
            if isinstance(agent, DataCenterAgent):
                load_shift += [
                    LoadShiftRecord(
                        agent.name, s.interval, s.base_wh, s.must_run_wh, s.flexible_wh, s.bought_wh
                    )
                    for s in agent.load_log
                ]
                jobs += [
                    JobRecord(
                        agent.name,
                        o.name,
                        o.energy_wh,
                        o.release_interval,
                        o.deadline_interval,
                        o.consumed_wh,
                        o.finished_interval,
                        open=o.deadline_interval >= sim.intervals,
                    )
                    for o in agent.job_outcomes()
                    if o.release_interval < sim.intervals
                ]
        intervals = tuple(
            self._intervals.get(t, IntervalRecord(t, None, 0)) for t in range(sim.intervals)
        )
        if self.fold is not None:
            self._fold_ready(final=True)
            return self._record(
                intervals,
                orders=self._book[2],
                load_shift=tuple(load_shift),
                jobs=tuple(jobs),
                season=self.fold.season(),
            )
        return self._record(
            intervals,
            orders=tuple(self._orders.values()),
            trades=tuple(self._trades),
            settlements=tuple(self._settlements),
            meters=tuple(self._meters),
            load_shift=tuple(load_shift),
            jobs=tuple(jobs),
        )

    def _record(
        self,
        intervals: tuple[IntervalRecord, ...],
        *,
        orders: tuple[OrderRecord, ...] = (),
        trades: tuple[TradeRecord, ...] = (),
        settlements: tuple[SettlementRecord, ...] = (),
        meters: tuple[MeterRecord, ...] = (),
        load_shift: tuple[LoadShiftRecord, ...] = (),
        jobs: tuple[JobRecord, ...] = (),
        season: Season | None = None,
    ) -> RunRecord:
        sim, market = self.scenario.simulation, self.scenario.market
        grid = None
        if self.grid_template is not None and (self.fold is None or season is not None):
            grid = GridRecord(
                self.grid_template.network,
                self.grid_template.root,
                self.grid_template.nodes,
                self.grid_template.agent_nodes,
                self.grid_template.caps_wh,
                tuple(self._grid),
                node_prices_kept=self.fold is None,
                power_flow_seconds=self.grid_template.power_flow_seconds,
            )
        return RunRecord(
            scenario=self.scenario.name,
            description=self.scenario.description,
            seed=sim.seed,
            intervals=sim.intervals,
            interval_seconds=sim.interval_seconds,
            mechanism=sim.mechanism,
            k=sim.k,
            penalty_price_per_wh=market.penalty_price_per_wh,
            tolerance_bps=market.tolerance_bps,
            chain=self.chain,
            participants=tuple(self._participants),
            interval_results=intervals,
            orders=orders,
            trades=trades,
            settlements=settlements,
            meters=meters,
            load_shift=load_shift,
            jobs=jobs,
            extra_checks=dict(self.extra_checks),
            timing_seconds=dict(self.timing_seconds),
            grid=grid,
            season=season,
        )


def _replace_fill(order: OrderRecord, filled_wh: int) -> OrderRecord:
    return OrderRecord(
        order.interval,
        order.order_id,
        order.participant,
        order.side,
        order.quantity_wh,
        order.price_per_wh,
        filled_wh,
    )
