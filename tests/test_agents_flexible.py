"""Agents with flexibility: batteries, data centers that shift work, and VPP aggregators."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from agent_support import (
    CTX,
    NO_CLOUDS,
    STRATEGY,
    C,
    battery_spec,
    day_prices,
    dc_spec,
    drive,
    fills_at,
    pv_spec,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from simulation.agents import (
    BatteryAgent,
    DataCenterAgent,
    MarketView,
    OrderIntent,
    PvProsumer,
    SiteAgent,
    VppAggregator,
)
from simulation.agents.base import percentile_price
from simulation.agents.storage import Storage
from simulation.scenario import (
    ArraySpec,
    JobSpec,
    LoadSpec,
    VppSpec,
)

# --------------------------------------------------------------------------- battery


def test_storage_charging_and_discharging_lose_sqrt_eta_each_way() -> None:
    storage = Storage(
        capacity_wh=10_000,
        max_power_w=40_000,
        interval_seconds=900,
        round_trip_efficiency=0.81,
        initial_soc=0.1,
        min_soc=0.1,
        max_soc=1.0,
    )
    assert storage.charge(1000) == 1000
    assert storage.soc_wh == 1000 + 900
    assert storage.discharge(810) == 810
    assert storage.soc_wh == 1000  # 810 / 0.9 = 900 drawn
    assert storage.deliverable_wh() == 0


def test_battery_charges_when_cheap_and_sells_when_dear() -> None:
    agent = BatteryAgent("b", CTX, battery_spec(), NO_CLOUDS)
    trace = drive(agent, day_prices())
    bought = [(t, f[0]) for t, (_, f, _) in enumerate(trace) if f[0]]
    sold = [(t, f[1]) for t, (_, f, _) in enumerate(trace) if f[1]]
    assert bought and sold
    prices = day_prices()
    assert all(prices[t] == 6 * C // 100 for t, _ in bought)
    assert all(prices[t] == 30 * C // 100 for t, _ in sold)
    # it refilled at midday (to within the last Wh, which rounding keeps) and emptied again
    # into the dear evening
    storage = agent.storage
    assert storage is not None
    assert max(agent.soc_wh_log[36:68]) >= storage.max_wh - 1
    assert agent.soc_wh_log[-1] == storage.min_wh


def test_battery_limits_follow_recent_percentiles_but_respect_its_configured_bounds() -> None:
    agent = BatteryAgent("b", CTX, battery_spec(), NO_CLOUDS)
    assert agent.strategy is not None
    prices = [p * C // 100 for p in (5, 6, 7, 8, 25, 26, 27, 28)]
    low, high = agent.strategy.limits(MarketView(900, tuple(prices)))
    assert low == percentile_price(prices, 25) == 6 * C // 100
    assert high == percentile_price(prices, 75) == 26 * C // 100
    # too little history: the configured limits
    assert agent.strategy.limits(MarketView(900, (C,))) == (12 * C // 100, 20 * C // 100)
    # recent prices all dear: it still never pays more than its charge price
    dear = tuple([50 * C // 100] * 10)
    low, high = agent.strategy.limits(MarketView(900, dear))
    assert low == 12 * C // 100 and high == 50 * C // 100


def test_battery_sell_limit_covers_the_round_trip_loss() -> None:
    spec = battery_spec(
        round_trip_efficiency=0.5,
        strategy=replace(
            STRATEGY, charge_price_per_wh=10 * C // 100, discharge_price_per_wh=11 * C // 100
        ),
    )
    agent = BatteryAgent("b", CTX, spec, NO_CLOUDS)
    assert agent.strategy is not None
    low, high = agent.strategy.limits(MarketView(900))
    assert high >= 2 * low


@settings(max_examples=60)
@given(
    capacity_wh=st.integers(1_000, 500_000),
    power_w=st.integers(500, 400_000),
    efficiency=st.floats(0.3, 1.0),
    soc=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)).map(sorted),
    pv_peak_w=st.sampled_from([0, 3000, 20_000]),
    load_wh_per_year=st.sampled_from([0, 2_920_000, 14_600_000]),
    prices=st.lists(st.integers(1, 60), min_size=96, max_size=96),
    fractions=st.lists(st.sampled_from([0.0, 0.3, 1.0]), min_size=96, max_size=96),
    seed=st.integers(0, 2**32),
)
def test_battery_never_leaves_its_soc_bounds_nor_makes_energy(
    capacity_wh: int,
    power_w: int,
    efficiency: float,
    soc: list[float],
    pv_peak_w: int,
    load_wh_per_year: int,
    prices: list[int],
    fractions: list[float],
    seed: int,
) -> None:
    low_soc, initial, high_soc = soc
    if high_soc - low_soc < 0.01:
        high_soc = min(1.0, low_soc + 0.01)
        low_soc = high_soc - 0.01
        initial = low_soc
    spec = battery_spec(
        capacity_wh=capacity_wh,
        max_power_w=power_w,
        round_trip_efficiency=efficiency,
        min_soc=low_soc,
        initial_soc=initial,
        max_soc=high_soc,
        pv_peak_w=pv_peak_w,
        load=LoadSpec(annual_wh=load_wh_per_year),
    )
    agent = BatteryAgent("b", replace(CTX, seed=seed), spec, NO_CLOUDS)
    storage = agent.storage
    assert storage is not None
    start = storage.soc_wh
    drive(agent, [p * C // 100 for p in prices], lambda t: fractions[t])
    assert all(storage.min_wh <= s <= storage.max_wh for s in agent.soc_wh_log)
    assert all(type(s) is int for s in agent.soc_wh_log)
    leg = math.sqrt(efficiency)
    # energy out of the cells never exceeds what was in them plus what charging stored
    assert (
        storage.discharged_wh
        <= (start - storage.min_wh) * leg + storage.charged_wh * efficiency + 1e-6
    )


# --------------------------------------------------------------------------- data center


def test_data_center_bids_base_and_must_run_at_its_max_price_and_flexible_work_in_steps() -> None:
    job = JobSpec(
        "train", energy_wh=200_000, release_interval=0, deadline_interval=95, max_power_w=40_000
    )
    agent = DataCenterAgent("dc", CTX, dc_spec([job]))
    intents = agent.orders(0, MarketView(900))
    assert intents[0] == OrderIntent("buy", 10_000, agent.spec.max_price_per_wh)  # base only
    steps = intents[1:]
    assert steps and all(i.price_per_wh in agent.spec.flex_prices_per_wh for i in steps)
    assert [i.price_per_wh for i in steps] == sorted((i.price_per_wh for i in steps), reverse=True)
    assert sum(i.quantity_wh for i in steps) == 10_000  # the job's power limit for 15 min
    # a relaxed job (200 kWh over 96 intervals of 10 kWh) only bids the cheapest step
    assert [i.price_per_wh for i in steps] == [agent.spec.flex_prices_per_wh[0]]


def test_data_center_runs_must_run_work_even_when_the_market_never_fills_it() -> None:
    jobs = [
        JobSpec("a", 50_000, 0, 9, 20_000),
        JobSpec("b", 30_000, 5, 8, 40_000),
        JobSpec("c", 1_000, 90, 95, 1_000),
    ]
    agent = DataCenterAgent("dc", CTX, dc_spec(jobs))
    trace = drive(agent, [C] * 96, lambda t: 0.0)  # nothing ever fills
    assert all(outcome.met for outcome in agent.job_outcomes())
    assert all(fill == (0, 0) for _, fill, _ in trace)
    # with no fills at all, every job ran as late as it could: only must-run work
    assert all(shift.flexible_wh == 0 for shift in agent.load_log)
    assert agent.job_outcomes()[0].finished_interval == 9
    # and the meter shows all of it as import
    for shift, (_, _, meter) in zip(agent.load_log, trace, strict=True):
        assert meter.imported_wh == shift.base_wh + shift.batch_wh


def test_data_center_shifts_deferrable_work_out_of_expensive_intervals() -> None:
    job = JobSpec(
        "train", energy_wh=300_000, release_interval=0, deadline_interval=95, max_power_w=40_000
    )
    agent = DataCenterAgent("dc", CTX, dc_spec([job]))
    prices = day_prices(cheap=6, dear=30)
    drive(agent, prices)
    flexible = [s.flexible_wh for s in agent.load_log]
    cheap = [f for t, f in enumerate(flexible) if prices[t] == 6 * C // 100]
    dear = [f for t, f in enumerate(flexible) if prices[t] == 30 * C // 100]
    assert sum(dear) == 0
    assert sum(cheap) > 0
    assert agent.job_outcomes()[0].met


def test_data_center_sorts_partial_fills_by_earliest_deadline() -> None:
    jobs = [JobSpec("late", 10_000, 0, 50, 40_000), JobSpec("soon", 10_000, 0, 10, 40_000)]
    agent = DataCenterAgent("dc", replace(CTX, seed=3), dc_spec(jobs, base_load_w=0))
    intents = agent.orders(0, MarketView(900))
    cheapest = [i for i in intents if i.price_per_wh == agent.spec.flex_prices_per_wh[0]]
    agent.on_fills(0, 1_000, 0, agent.spec.flex_prices_per_wh[0])
    agent.meter(0)
    outcome = {o.name: o.consumed_wh for o in agent.job_outcomes()}
    assert cheapest and outcome == {"late": 0, "soon": 1_000}


@st.composite
def job_lists(draw: st.DrawFn) -> list[JobSpec]:
    jobs = []
    for n in range(draw(st.integers(1, 5))):
        release = draw(st.integers(0, 90))
        deadline = draw(st.integers(release, 95))
        power = draw(st.integers(4, 200_000))
        per_interval = power * 900 // 3600
        energy = draw(st.integers(1, per_interval * (deadline - release + 1)))
        jobs.append(JobSpec(f"j{n}", energy, release, deadline, power))
    return jobs


@settings(max_examples=80)
@given(
    jobs=job_lists(),
    prices=st.lists(st.integers(1, 50), min_size=96, max_size=96),
    fractions=st.lists(st.sampled_from([0.0, 0.0, 0.5, 0.9, 1.0]), min_size=96, max_size=96),
    seed=st.integers(0, 2**32),
)
def test_data_center_never_misses_a_deadline_nor_exceeds_a_job_power_limit(
    jobs: list[JobSpec], prices: list[int], fractions: list[float], seed: int
) -> None:
    agent = DataCenterAgent("dc", replace(CTX, seed=seed), dc_spec(jobs))
    consumed_before = [0] * len(jobs)
    for t, price in enumerate(prices):
        intents = agent.orders(t, MarketView(900, tuple(p * C // 100 for p in prices[:t])))
        bought, _ = fills_at(price * C // 100, intents, fractions[t])
        agent.on_fills(t, bought, 0, price * C // 100)
        agent.meter(t)
        for n, job_progress in enumerate(agent.jobs):
            step = job_progress.consumed_wh - consumed_before[n]
            assert 0 <= step <= job_progress.max_wh
            if step:
                assert jobs[n].release_interval <= t <= jobs[n].deadline_interval
            consumed_before[n] = job_progress.consumed_wh
    for outcome in agent.job_outcomes():
        assert outcome.met, outcome


# --------------------------------------------------------------------------- VPP


def vpp_spec(**overrides: object) -> VppSpec:
    spec = VppSpec(
        name="vpp",
        count=1,
        collateral_base_units=None,
        homes=30,
        pv_homes=20,
        battery_homes=10,
        pv_peak_w=4000,
        battery_capacity_wh=6000,
        battery_max_power_w=3000,
        round_trip_efficiency=0.9,
        array=ArraySpec(),
        load=LoadSpec(annual_wh=2_555_000, noise=0.15),
        forecast_error=0.2,
        member_spread=0.25,
        floor_price_per_wh=5 * C // 100,
        cap_price_per_wh=29 * C // 100,
        strategy=STRATEGY,
    )
    return replace(spec, **overrides)  # type: ignore[arg-type]


def test_vpp_is_one_batch_participant_trading_its_members_net_position() -> None:
    agent = VppAggregator("vpp", CTX, vpp_spec(), NO_CLOUDS)
    assert agent.batch and isinstance(agent, SiteAgent)
    assert len(agent.member_sizes) == 30
    assert all(0.75 <= s <= 1.25 for s in agent.member_sizes)
    storage = agent.storage
    assert storage is not None
    # ten members' batteries pooled: capacity near 10 x 6 kWh
    assert 45_000 <= storage.capacity_wh <= 75_000
    trace = drive(agent, day_prices())
    assert any(len(intents) > 1 for intents, _, _ in trace)  # a stepped curve in one batch
    for intents, _, _ in trace:
        bids = [i.price_per_wh for i in intents if i.side == "buy"]
        asks = [i.price_per_wh for i in intents if i.side == "sell"]
        assert not (bids and asks) or max(bids) < min(asks)


def test_vpp_aggregate_forecast_is_better_than_a_single_members() -> None:
    vpp = VppAggregator(
        "vpp",
        CTX,
        vpp_spec(battery_homes=0, load=LoadSpec(annual_wh=2_555_000, noise=0.0)),
        NO_CLOUDS,
    )
    single = PvProsumer("pv", CTX, pv_spec(peak_w=4000, forecast_error=0.2), NO_CLOUDS)

    def relative_error(actual: np.ndarray, forecast: np.ndarray) -> float:
        return float(np.abs(forecast - actual).sum() / actual.sum())

    assert relative_error(vpp.generation_wh, vpp.generation_forecast_wh) < 0.5 * relative_error(
        single.generation_wh, single.generation_forecast_wh
    )
