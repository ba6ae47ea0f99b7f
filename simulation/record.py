"""What a simulation run produced, as plain frozen data: the input of the report and summary.

A driver fills a :class:`RunRecorder` while it runs (orders, clearing, meter readings,
settlements) and calls :meth:`RunRecorder.finish` to get a :class:`RunRecord`. Everything in
it is an exact integer (Wh, base units, base units per Wh) or a string; nothing depends on
wall-clock time except :attr:`RunRecord.timing_seconds`, which the summary leaves out so the
same seed gives the same ``summary.json``.

From a record, pure functions derive:

* :func:`positions`: each participant's energy and money (net position in base units,
  bought, sold, delivered, self-supplied, grid top-up);
* :func:`check_record`: the run's conservation properties (energy, tokens, individual
  rationality, settlement completeness, data-center deadlines), each True or False with the
  first violations spelled out;
* :func:`summarize`: the JSON-ready headline figures that ``summary.json`` holds.

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
    files = write_run(record, out_dir)         # simulation.report
    print(headline_text(record, files["report.html"]))
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simulation.agents.base import Agent, MeterSample, OrderIntent, Side
from simulation.agents.datacenter import DataCenterAgent
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

    def kind_of(self) -> dict[str, str]:
        """Participant name -> kind."""
        return {p.name: p.kind for p in self.participants}


# --------------------------------------------------------------------------- building


class RunRecorder:
    """Collects a run as it happens; :meth:`finish` turns it into a :class:`RunRecord`.

    The driver calls, for each interval: :meth:`add_order` per accepted order,
    :meth:`add_clearing` once cleared (with the trades and fills), :meth:`add_meter` per
    agent reading, :meth:`mark_committed`, and :meth:`add_settlements` plus
    :meth:`mark_settled` as settlement completes (possibly several intervals later).
    """

    def __init__(self, scenario: Scenario, chain: str) -> None:
        self.scenario = scenario
        self.chain = chain
        self._participants: list[ParticipantRecord] = []
        self._orders: dict[str, OrderRecord] = {}
        self._trades: list[TradeRecord] = []
        self._settlements: list[SettlementRecord] = []
        self._meters: list[MeterRecord] = []
        self._intervals: dict[int, IntervalRecord] = {}
        self._fills: dict[tuple[int, str], tuple[int, int]] = {}
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
    ) -> None:
        """Record interval ``t``'s clearing: price and ``(buy id, sell id, Wh, price)`` trades.

        Order fills are derived from the trades.
        """
        volume = 0
        for buy_id, sell_id, quantity_wh, trade_price in trades:
            buy, sell = self._orders[buy_id], self._orders[sell_id]
            self._trades.append(
                TradeRecord(
                    t, buy_id, sell_id, buy.participant, sell.participant, quantity_wh, trade_price
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

    def mark_committed(self, t: int) -> None:
        """Interval ``t``'s trades are on-chain."""
        self._mark(t, committed=True)

    def add_settlements(self, records: Iterable[SettlementRecord]) -> None:
        """Record settled trades (any interval, any chunk)."""
        self._settlements.extend(records)

    def mark_settled(self, t: int) -> None:
        """Interval ``t`` reached ``Settled``."""
        self._mark(t, settled=True)

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
        sim, market = self.scenario.simulation, self.scenario.market
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
            orders=tuple(self._orders.values()),
            trades=tuple(self._trades),
            settlements=tuple(self._settlements),
            meters=tuple(self._meters),
            load_shift=tuple(load_shift),
            jobs=tuple(jobs),
            extra_checks=dict(self.extra_checks),
            timing_seconds=dict(self.timing_seconds),
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


# --------------------------------------------------------------------------- derived figures


@dataclass
class Position:
    """One participant's totals over the run (energy in Wh, money in base units)."""

    name: str
    kind: str
    bought_wh: int = 0
    sold_wh: int = 0
    received_wh: int = 0
    """Energy delivered to it on its purchases (the sellers' delivered share)."""
    delivered_wh: int = 0
    """Energy it delivered on its sales."""
    shortfall_wh: int = 0
    paid_base_units: int = 0
    earned_base_units: int = 0
    penalties_paid_base_units: int = 0
    penalties_received_base_units: int = 0
    imported_wh: int = 0
    exported_wh: int = 0
    load_wh: int = 0
    generation_wh: int = 0
    self_supplied_wh: int = 0
    grid_import_wh: int = 0
    """Import beyond what it bought in the market, interval by interval (from the utility)."""
    grid_export_wh: int = 0
    """Export beyond what it sold, interval by interval (spilled to the utility)."""

    @property
    def net_base_units(self) -> int:
        """Money in minus money out through the ledger's settlements."""
        return (
            self.earned_base_units
            - self.paid_base_units
            + self.penalties_received_base_units
            - self.penalties_paid_base_units
        )


def positions(record: RunRecord) -> dict[str, Position]:
    """Every participant's :class:`Position`, in participant order."""
    out = {p.name: Position(p.name, p.kind) for p in record.participants}

    def get(name: str) -> Position:
        if name not in out:
            out[name] = Position(name, "unknown")
        return out[name]

    bought: dict[tuple[str, int], int] = defaultdict(int)
    sold: dict[tuple[str, int], int] = defaultdict(int)
    for trade in record.trades:
        get(trade.buyer).bought_wh += trade.quantity_wh
        get(trade.seller).sold_wh += trade.quantity_wh
        bought[trade.buyer, trade.interval] += trade.quantity_wh
        sold[trade.seller, trade.interval] += trade.quantity_wh
    for s in record.settlements:
        buyer, seller = get(s.buyer), get(s.seller)
        buyer.received_wh += s.delivered_wh
        buyer.paid_base_units += s.paid_base_units
        buyer.penalties_received_base_units += s.penalty_base_units
        seller.delivered_wh += s.delivered_wh
        seller.shortfall_wh += s.shortfall_wh
        seller.earned_base_units += s.paid_base_units
        seller.penalties_paid_base_units += s.penalty_base_units
    for m in record.meters:
        p = get(m.participant)
        p.imported_wh += m.imported_wh
        p.exported_wh += m.exported_wh
        p.load_wh += m.load_wh
        p.generation_wh += m.generation_wh
        p.self_supplied_wh += m.self_supplied_wh
        p.grid_import_wh += max(0, m.imported_wh - bought[m.participant, m.interval])
        p.grid_export_wh += max(0, m.exported_wh - sold[m.participant, m.interval])
    return out


def interval_average_prices(record: RunRecord) -> list[int | None]:
    """Per interval: the uniform price, or the volume-weighted trade price rounded down."""
    value: dict[int, int] = defaultdict(int)
    volume: dict[int, int] = defaultdict(int)
    for trade in record.trades:
        value[trade.interval] += trade.value_base_units
        volume[trade.interval] += trade.quantity_wh
    out: list[int | None] = []
    for result in record.interval_results:
        t = result.interval
        if result.price_per_wh is not None:
            out.append(result.price_per_wh)
        elif volume[t]:
            out.append(value[t] // volume[t])
        else:
            out.append(None)
    return out


@dataclass(frozen=True)
class CheckResult:
    """One property of the run: whether it holds and, if not, the first violations."""

    name: str
    ok: bool
    detail: tuple[str, ...] = ()


_MAX_DETAIL = 5


def check_record(record: RunRecord) -> list[CheckResult]:
    """Check the run's properties. Each check names what it pins:

    * ``energy_conserved``: per interval, trades add up to the cleared volume and to the
      fills of both sides; no order filled above its quantity; no trade delivered above its
      quantity; each seller's delivered energy is ``min(sold, exported)`` (DESIGN §5).
    * ``tokens_conserved``: per settled trade, payment plus refund equals what the buyer
      locked and the penalty is at most ``shortfall * penalty price``; settlement net
      positions sum to zero.
    * ``individually_rational``: no trade above its bid's limit or below its ask's.
    * ``committed_intervals_settled``: every committed interval settled, every trade of a
      settled interval settled exactly once.
    * ``deadlines_met``: every data-center job due within the run finished by its deadline.
    """
    results: list[CheckResult] = []
    orders = {o.order_id: o for o in record.orders}

    energy: list[str] = []
    by_interval: dict[int, list[TradeRecord]] = defaultdict(list)
    traded_per_order: dict[str, int] = defaultdict(int)
    for trade in record.trades:
        by_interval[trade.interval].append(trade)
        traded_per_order[trade.buy_order_id] += trade.quantity_wh
        traded_per_order[trade.sell_order_id] += trade.quantity_wh
    side_fill: dict[tuple[int, str], int] = defaultdict(int)
    for o in record.orders:
        side_fill[o.interval, o.side] += o.filled_wh
    for result in record.interval_results:
        t = result.interval
        total = sum(trade.quantity_wh for trade in by_interval.get(t, []))
        bids, asks = side_fill[t, "buy"], side_fill[t, "sell"]
        if total != result.volume_wh or bids != total or asks != total:
            energy.append(
                f"interval {t}: trades {total} Wh, volume {result.volume_wh} Wh, "
                f"bids filled {bids} Wh, asks filled {asks} Wh"
            )
    for order in record.orders:
        if order.filled_wh > order.quantity_wh or traded_per_order[order.order_id] != (
            order.filled_wh
        ):
            energy.append(
                f"order {order.order_id}: filled {order.filled_wh} of {order.quantity_wh} Wh"
            )
    exported = {(m.participant, m.interval): m.exported_wh for m in record.meters}
    sold: dict[tuple[str, int], int] = defaultdict(int)
    delivered: dict[tuple[str, int], int] = defaultdict(int)
    for s in record.settlements:
        if not 0 <= s.delivered_wh <= s.quantity_wh:
            energy.append(
                f"trade {s.buy_order_id}/{s.sell_order_id}: delivered {s.delivered_wh} Wh"
            )
        sold[s.seller, s.interval] += s.quantity_wh
        delivered[s.seller, s.interval] += s.delivered_wh
    for key, quantity in sold.items():
        if key in exported and delivered[key] != min(quantity, exported[key]):
            energy.append(
                f"{key[0]} interval {key[1]}: delivered {delivered[key]} Wh, but sold "
                f"{quantity} Wh and exported {exported[key]} Wh"
            )
    results.append(CheckResult("energy_conserved", not energy, tuple(energy[:_MAX_DETAIL])))

    tokens: list[str] = []
    for s in record.settlements:
        locked = s.quantity_wh * s.price_per_wh
        if s.paid_base_units + s.refunded_base_units != locked or s.paid_base_units != (
            s.delivered_wh * s.price_per_wh
        ):
            tokens.append(
                f"trade {s.buy_order_id}/{s.sell_order_id}: paid {s.paid_base_units} + refunded "
                f"{s.refunded_base_units} != locked {locked}"
            )
        if not 0 <= s.penalty_base_units <= s.shortfall_wh * record.penalty_price_per_wh:
            tokens.append(
                f"trade {s.buy_order_id}/{s.sell_order_id}: penalty {s.penalty_base_units} for "
                f"{s.shortfall_wh} Wh short"
            )
    net_sum = sum(p.net_base_units for p in positions(record).values())
    if net_sum:
        tokens.append(f"net positions sum to {net_sum} base units, not 0")
    results.append(CheckResult("tokens_conserved", not tokens, tuple(tokens[:_MAX_DETAIL])))

    rational: list[str] = []
    for trade in record.trades:
        buy, sell = orders.get(trade.buy_order_id), orders.get(trade.sell_order_id)
        if buy is None or sell is None or buy.side != "buy" or sell.side != "sell":
            rational.append(f"trade {trade.buy_order_id}/{trade.sell_order_id}: unknown orders")
        elif not sell.price_per_wh <= trade.price_per_wh <= buy.price_per_wh:
            rational.append(
                f"trade {trade.buy_order_id}/{trade.sell_order_id} at {trade.price_per_wh}: "
                f"bid {buy.price_per_wh}, ask {sell.price_per_wh}"
            )
    results.append(
        CheckResult("individually_rational", not rational, tuple(rational[:_MAX_DETAIL]))
    )

    settled: list[str] = []
    settled_count: dict[tuple[int, str, str], int] = defaultdict(int)
    for s in record.settlements:
        settled_count[s.interval, s.buy_order_id, s.sell_order_id] += 1
    for result in record.interval_results:
        if result.committed and not result.settled:
            settled.append(f"interval {result.interval} committed but not settled")
        if result.settled:
            for trade in by_interval.get(result.interval, []):
                n = settled_count[trade.interval, trade.buy_order_id, trade.sell_order_id]
                if n != 1:
                    settled.append(
                        f"trade {trade.buy_order_id}/{trade.sell_order_id} settled {n} times"
                    )
    results.append(
        CheckResult("committed_intervals_settled", not settled, tuple(settled[:_MAX_DETAIL]))
    )

    missed = [
        f"{j.participant} {j.job}: {j.consumed_wh} of {j.energy_wh} Wh by interval "
        f"{j.deadline_interval}"
        for j in record.jobs
        if not j.open and not j.met
    ]
    results.append(CheckResult("deadlines_met", not missed, tuple(missed[:_MAX_DETAIL])))

    for name, ok in sorted(record.extra_checks.items()):
        results.append(CheckResult(name, bool(ok)))
    return results


def summarize(record: RunRecord) -> dict[str, Any]:
    """The run's headline figures as a JSON-ready dict (the content of ``summary.json``).

    Energies are integer Wh; amounts of money are decimal *strings* of base units, since
    they can exceed the 2**53 that JSON readers in other languages hold exactly; prices are
    integer base units per Wh. Deterministic: no wall-clock time, keys in a fixed order.
    """
    pos = positions(record)
    kinds: dict[str, int] = defaultdict(int)
    for p in record.participants:
        kinds[p.kind] += 1
    prices = [p for p in interval_average_prices(record) if p is not None]
    traded_wh = sum(t.quantity_wh for t in record.trades)
    traded_value = sum(t.value_base_units for t in record.trades)
    settled_wh = sum(s.quantity_wh for s in record.settlements)
    delivered_wh = sum(s.delivered_wh for s in record.settlements)
    penalties = sum(s.penalty_base_units for s in record.settlements)
    paid = sum(s.paid_base_units for s in record.settlements)
    checks = check_record(record)
    due = [j for j in record.jobs if not j.open]
    return {
        "scenario": record.scenario,
        "seed": record.seed,
        "chain": record.chain,
        "intervals": record.intervals,
        "interval_seconds": record.interval_seconds,
        "mechanism": record.mechanism,
        "k": f"{record.k[0]}/{record.k[1]}",
        "penalty_price_per_wh": record.penalty_price_per_wh,
        "tolerance_bps": record.tolerance_bps,
        "participants": {"total": len(record.participants), "by_kind": dict(sorted(kinds.items()))},
        "market": {
            "orders": len(record.orders),
            "trades": len(record.trades),
            "intervals_with_trades": sum(1 for r in record.interval_results if r.volume_wh),
            "traded_wh": traded_wh,
            "traded_value_base_units": str(traded_value),
            "average_price_per_wh": traded_value // traded_wh if traded_wh else None,
            "min_price_per_wh": min(prices) if prices else None,
            "max_price_per_wh": max(prices) if prices else None,
        },
        "settlement": {
            "committed_intervals": sum(1 for r in record.interval_results if r.committed),
            "settled_intervals": sum(1 for r in record.interval_results if r.settled),
            "settled_trades": len(record.settlements),
            "contracted_wh": settled_wh,
            "delivered_wh": delivered_wh,
            "shortfall_wh": settled_wh - delivered_wh,
            "paid_base_units": str(paid),
            "penalties_base_units": str(penalties),
        },
        "data_centers": {
            "jobs": len(record.jobs),
            "jobs_due_in_run": len(due),
            "deadlines_met": sum(1 for j in due if j.met),
            "open_at_end": sum(1 for j in record.jobs if j.open),
            "batch_wh": sum(s.batch_wh for s in record.load_shift),
            "flexible_wh": sum(s.flexible_wh for s in record.load_shift),
        },
        "positions": {
            name: {
                "kind": p.kind,
                "bought_wh": p.bought_wh,
                "sold_wh": p.sold_wh,
                "delivered_wh": p.delivered_wh,
                "shortfall_wh": p.shortfall_wh,
                "imported_wh": p.imported_wh,
                "exported_wh": p.exported_wh,
                "self_supplied_wh": p.self_supplied_wh,
                "net_base_units": str(p.net_base_units),
            }
            for name, p in pos.items()
        },
        "checks": {c.name: c.ok for c in checks},
    }
