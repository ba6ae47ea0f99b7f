"""Agents: the call protocol, integer outputs, determinism and each kind's behaviour."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_offline import run_offline

from simulation.agents import (
    Agent,
    AgentContext,
    AgentProtocolError,
    BatteryAgent,
    DataCenterAgent,
    Household,
    MarketView,
    MeterSample,
    OrderIntent,
    PvProsumer,
    SiteAgent,
    Sky,
    VppAggregator,
    build_agents,
)
from simulation.agents.base import SECP256K1_ORDER, address_of, percentile_price
from simulation.agents.storage import Storage
from simulation.scenario import (
    BatterySpec,
    DataCenterSpec,
    HouseholdSpec,
    JobSpec,
    PvSpec,
    Scenario,
    StrategySpec,
    VppSpec,
)
from simulation.scenario_file import load_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
C = 10**15  # base units per Wh in one currency unit per kWh
CTX = AgentContext(seed=11, intervals=96, interval_seconds=900, penalty_price_per_wh=C // 2)
NO_CLOUDS = Sky(np.full(96, 10_000, dtype=np.int64), 6.0, 20.0)

STRATEGY = StrategySpec(
    charge_price_per_wh=12 * C // 100,
    discharge_price_per_wh=20 * C // 100,
    price_window=96,
    low_percentile=25,
    high_percentile=75,
)


def pv_spec(**overrides: object) -> PvSpec:
    spec = PvSpec(
        name="pv",
        count=1,
        collateral_base_units=None,
        peak_w=6000,
        load_wh_per_day=9000,
        load_profile="residential",
        load_noise=0.1,
        forecast_error=0.15,
        floor_price_per_wh=6 * C // 100,
        cap_price_per_wh=30 * C // 100,
    )
    return replace(spec, **overrides)  # type: ignore[arg-type]


def battery_spec(**overrides: object) -> BatterySpec:
    spec = BatterySpec(
        name="battery",
        count=1,
        collateral_base_units=None,
        capacity_wh=10_000,
        max_power_w=5000,
        round_trip_efficiency=0.9,
        initial_soc=0.5,
        min_soc=0.1,
        max_soc=0.95,
        pv_peak_w=0,
        load_wh_per_day=0,
        load_profile="residential",
        load_noise=0.1,
        forecast_error=0.1,
        floor_price_per_wh=6 * C // 100,
        cap_price_per_wh=30 * C // 100,
        strategy=STRATEGY,
    )
    return replace(spec, **overrides)  # type: ignore[arg-type]


def dc_spec(jobs: Sequence[JobSpec], **overrides: object) -> DataCenterSpec:
    spec = DataCenterSpec(
        name="dc",
        count=1,
        collateral_base_units=None,
        base_load_w=40_000,
        base_load_noise=0.03,
        max_price_per_wh=40 * C // 100,
        flex_prices_per_wh=(6 * C // 100, 9 * C // 100, 12 * C // 100, 16 * C // 100),
        jobs=tuple(jobs),
    )
    return replace(spec, **overrides)  # type: ignore[arg-type]


def fills_at(price: int, intents: Sequence[OrderIntent], fraction: float = 1.0) -> tuple[int, int]:
    """A price-taking market: bids at or above ``price`` and asks at or below it fill."""
    bought = sum(i.quantity_wh for i in intents if i.side == "buy" and i.price_per_wh >= price)
    sold = sum(i.quantity_wh for i in intents if i.side == "sell" and i.price_per_wh <= price)
    return math.floor(bought * fraction), math.floor(sold * fraction)


def drive(
    agent: Agent,
    prices: Sequence[int],
    fraction: Callable[[int], float] = lambda t: 1.0,
) -> list[tuple[list[OrderIntent], tuple[int, int], MeterSample]]:
    """Run ``agent`` through ``len(prices)`` intervals of a price-taking market."""
    out = []
    history: list[int | None] = []
    for t, price in enumerate(prices):
        intents = agent.orders(t, MarketView(900, tuple(history)))
        bought, sold = fills_at(price, intents, fraction(t))
        agent.on_fills(t, bought, sold, price if bought or sold else None)
        out.append((intents, (bought, sold), agent.meter(t)))
        history.append(price)
    return out


def day_prices(cheap: int = 6, dear: int = 30) -> list[int]:
    """Dear at night and in the evening, cheap around midday (currency cents per kWh)."""
    return [(cheap if 36 <= t < 68 else dear) * C // 100 for t in range(96)]


# --------------------------------------------------------------------------- interface


def test_order_intent_accepts_only_plain_ints_within_the_order_bounds() -> None:
    assert OrderIntent("buy", 1, 1).quantity_wh == 1
    with pytest.raises(TypeError):
        OrderIntent("buy", np.int64(5), 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        OrderIntent("sell", 5, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        OrderIntent("sell", 0, 1)
    with pytest.raises(ValueError):
        OrderIntent("sell", 5, 0)
    with pytest.raises(ValueError):
        OrderIntent("hold", 5, 1)  # type: ignore[arg-type]


def test_meter_sample_refuses_negative_or_non_int_energy() -> None:
    with pytest.raises(ValueError):
        MeterSample(-1, 0, 0, 0)
    with pytest.raises(TypeError):
        MeterSample(1, 0, np.int64(0), 0)  # type: ignore[arg-type]
    assert MeterSample(300, 0, 1000, 0).self_supplied_wh == 700


def test_calls_out_of_order_are_refused() -> None:
    agent = Household("h", CTX, HouseholdSpec("h", 1, None, 10_000, "residential", 0.1, C))
    view = MarketView(900)
    with pytest.raises(AgentProtocolError):
        agent.meter(0)
    with pytest.raises(AgentProtocolError):
        agent.orders(1, view)
    intents = agent.orders(0, view)
    with pytest.raises(AgentProtocolError):
        agent.orders(0, view)
    with pytest.raises(AgentProtocolError):
        agent.on_fills(0, intents[0].quantity_wh + 1, 0, C)
    with pytest.raises(AgentProtocolError):
        agent.on_fills(0, 0, 1, C)  # it never asked
    agent.on_fills(0, intents[0].quantity_wh, 0, C)
    with pytest.raises(AgentProtocolError):
        agent.orders(1, view)
    agent.meter(0)
    agent.orders(1, view)


def test_an_agent_refuses_intervals_past_the_run() -> None:
    short = replace(CTX, intervals=1)
    agent = Household("h", short, HouseholdSpec("h", 1, None, 10_000, "flat", 0.0, C))
    agent.orders(0, MarketView(900))
    agent.on_fills(0, 0, 0, None)
    agent.meter(0)
    with pytest.raises(AgentProtocolError):
        agent.orders(1, MarketView(900))


def test_keys_are_reproducible_distinct_and_valid() -> None:
    scenario = load_scenario(SCENARIOS / "neighbourhood.toml", intervals=4)
    agents = build_agents(scenario)
    again = build_agents(scenario)
    keys = [a.participant_private_key for a in agents] + [a.meter_private_key for a in agents]
    assert len(set(keys)) == len(keys)
    assert all(0 < int.from_bytes(k, "big") < SECP256K1_ORDER for k in keys)
    assert [a.participant_private_key for a in again] == keys[: len(agents)]
    other = build_agents(replace(scenario, simulation=replace(scenario.simulation, seed=2)))
    assert other[0].participant_private_key != agents[0].participant_private_key
    assert agents[0].participant_address == address_of(agents[0].participant_private_key)
    assert agents[0].participant_address.startswith("0x") and len(agents[0].meter_address) == 42


def test_build_agents_names_every_agent_once_in_kind_and_file_order() -> None:
    scenario = load_scenario(SCENARIOS / "neighbourhood.toml")
    agents = build_agents(scenario)
    assert len(agents) == scenario.agents.count == 73
    names = [a.name for a in agents]
    assert len(set(names)) == len(names)
    kinds = [a.kind for a in agents]
    assert kinds == sorted(kinds, key=["pv", "battery", "household", "data_center", "vpp"].index)
    assert names[0] == "rooftop-01" and names[-1] == "sunny-vpp"
    assert [a.batch for a in agents].count(True) == 1


def test_collateral_is_the_configured_deposit_or_covers_every_interval() -> None:
    configured = PvProsumer("pv", CTX, pv_spec(collateral_base_units=123), NO_CLOUDS)
    assert configured.collateral_base_units() == 123
    agent = PvProsumer("pv", CTX, pv_spec(), NO_CLOUDS)
    deposit = agent.collateral_base_units()
    assert type(deposit) is int and deposit > 0
    # enough for the largest possible bid plus the largest possible ask's bond, every interval
    worst = (
        max(int(agent.load_forecast_wh.max()) * agent.cap_price_per_wh, 0)
        + int(agent.generation_forecast_wh.max()) * CTX.penalty_price_per_wh
    )
    assert deposit == worst * CTX.intervals


# --------------------------------------------------------------------------- determinism


def _trace(scenario: Scenario) -> list[object]:
    record, _ = run_offline(scenario)
    return [record.orders, record.meters, record.trades, record.settlements]


def test_the_same_seed_gives_identical_orders_and_readings_and_another_seed_does_not() -> None:
    scenario = load_scenario(SCENARIOS / "neighbourhood.toml", intervals=40)
    assert _trace(scenario) == _trace(scenario)
    reseeded = replace(scenario, simulation=replace(scenario.simulation, seed=1))
    assert _trace(reseeded)[:2] != _trace(scenario)[:2]


def test_a_shorter_run_is_exactly_the_beginning_of_a_longer_one() -> None:
    day = load_scenario(SCENARIOS / "datacenter-heavy.toml")
    long_record, _ = run_offline(day)
    short_record, _ = run_offline(day.with_intervals(30))
    assert short_record.orders == tuple(o for o in long_record.orders if o.interval < 30)
    assert short_record.meters == tuple(m for m in long_record.meters if m.interval < 30)
    assert short_record.settlements == tuple(s for s in long_record.settlements if s.interval < 30)


def test_every_kind_draws_from_its_own_stream_not_the_global_one() -> None:
    np.random.seed(0)
    marker = np.random.random()
    np.random.seed(0)
    build_agents(load_scenario(SCENARIOS / "datacenter-heavy.toml", intervals=8))
    assert np.random.random() == marker


# --------------------------------------------------------------------------- whole days


@pytest.mark.parametrize("name", ["neighbourhood", "datacenter-heavy"])
def test_a_day_on_the_reference_market_conserves_energy_and_tokens_and_meets_deadlines(
    name: str,
) -> None:
    from simulation.checks import check_record

    record, _ = run_offline(load_scenario(SCENARIOS / f"{name}.toml"))
    failed = [c for c in check_record(record) if not c.ok]
    assert failed == []
    assert record.jobs and all(job.met for job in record.jobs)
    assert sum(r.volume_wh for r in record.interval_results) > 0


def test_no_agent_ever_quotes_a_bid_that_meets_its_own_ask() -> None:
    record, _ = run_offline(load_scenario(SCENARIOS / "neighbourhood.toml"))
    best: dict[tuple[int, str], dict[str, list[int]]] = {}
    for order in record.orders:
        best.setdefault((order.interval, order.participant), {"buy": [], "sell": []})[
            order.side
        ].append(order.price_per_wh)
    for sides in best.values():
        if sides["buy"] and sides["sell"]:
            assert max(sides["buy"]) < min(sides["sell"])


# --------------------------------------------------------------------------- PV


def test_pv_sells_forecast_surplus_at_its_floor_and_buys_its_deficit_at_its_cap() -> None:
    agent = PvProsumer("pv", CTX, pv_spec(), NO_CLOUDS)
    trace = drive(agent, [20 * C // 100] * 96)
    for t, (intents, _, _) in enumerate(trace):
        surplus = int(agent.generation_forecast_wh[t]) - int(agent.load_forecast_wh[t])
        expected = (
            [OrderIntent("sell", surplus, agent.floor_price_per_wh)]
            if surplus > 0
            else [OrderIntent("buy", -surplus, agent.cap_price_per_wh)]
            if surplus < 0
            else []
        )
        assert intents == expected


def test_pv_forecast_error_makes_delivery_fall_short_sometimes() -> None:
    agent = PvProsumer("pv", CTX, pv_spec(forecast_error=0.2), NO_CLOUDS)
    trace = drive(agent, [6 * C // 100] * 96)
    sold_and_exported = [(fill[1], meter.exported_wh) for _, fill, meter in trace if fill[1]]
    assert any(exported < sold for sold, exported in sold_and_exported)
    assert any(exported > sold for sold, exported in sold_and_exported)


def test_pv_without_forecast_error_or_noise_delivers_exactly_what_it_sold() -> None:
    agent = PvProsumer("pv", CTX, pv_spec(forecast_error=0.0, load_noise=0.0), NO_CLOUDS)
    trace = drive(agent, [6 * C // 100] * 96)
    for _, (bought, sold), meter in trace:
        assert meter.exported_wh == sold and meter.imported_wh == bought


def test_pv_generation_follows_the_sun_and_the_clouds() -> None:
    cloudy = Sky(np.full(96, 3_000, dtype=np.int64), 6.0, 20.0)
    sunny = PvProsumer("pv", CTX, pv_spec(), NO_CLOUDS)
    dull = PvProsumer("pv", CTX, pv_spec(), cloudy)
    assert int(sunny.generation_wh[:24].sum()) == 0
    assert int(dull.generation_wh.sum()) == pytest.approx(
        0.3 * int(sunny.generation_wh.sum()), rel=0.01
    )


# --------------------------------------------------------------------------- household


def test_household_bids_its_expected_load_at_its_cap_and_meters_the_actual_load() -> None:
    spec = HouseholdSpec("h", 1, None, 10_000, "residential", 0.2, 30 * C // 100)
    agent = Household("h", CTX, spec)
    assert int(agent.load_forecast_wh.sum()) == 10_000  # exactly the daily energy
    trace = drive(agent, [20 * C // 100] * 96)
    for t, (intents, _, meter) in enumerate(trace):
        assert intents == [
            OrderIntent("buy", int(agent.load_forecast_wh[t]), spec.cap_price_per_wh)
        ]
        assert meter.imported_wh == int(agent.load_wh[t]) and meter.exported_wh == 0
    assert agent.load_wh.tolist() != agent.load_forecast_wh.tolist()  # the noise is there


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
    load_wh_per_day=st.sampled_from([0, 8000, 40_000]),
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
    load_wh_per_day: int,
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
        load_wh_per_day=load_wh_per_day,
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
        load_wh_per_day=7000,
        load_profile="residential",
        load_noise=0.15,
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
    vpp = VppAggregator("vpp", CTX, vpp_spec(battery_homes=0, load_noise=0.0), NO_CLOUDS)
    single = PvProsumer("pv", CTX, pv_spec(peak_w=4000, forecast_error=0.2), NO_CLOUDS)

    def relative_error(actual: np.ndarray, forecast: np.ndarray) -> float:
        return float(np.abs(forecast - actual).sum() / actual.sum())

    assert relative_error(vpp.generation_wh, vpp.generation_forecast_wh) < 0.5 * relative_error(
        single.generation_wh, single.generation_forecast_wh
    )
