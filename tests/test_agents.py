"""Agents: the call protocol, integer outputs, determinism, whole days, PV and households."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from agent_support import (
    CTX,
    HOME_LOAD,
    NO_CLOUDS,
    SCENARIOS,
    C,
    drive,
    pv_spec,
)
from sim_offline import run_offline

from market.service import DEFAULT_MIN_ORDER_WH as MIN_ORDER_WH
from simulation.agents import (
    AgentProtocolError,
    Household,
    MarketView,
    MeterSample,
    OrderIntent,
    PvProsumer,
    Sky,
    build_agents,
)
from simulation.agents.base import SECP256K1_ORDER, address_of
from simulation.scenario import (
    HouseholdSpec,
    LoadSpec,
    Scenario,
)
from simulation.scenario_file import load_scenario

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
    agent = Household("h", CTX, HouseholdSpec("h", 1, None, LoadSpec(3_650_000), C))
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
    agent = Household("h", short, HouseholdSpec("h", 1, None, LoadSpec(3_650_000, "flat", 0.0), C))
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


def sold_any(trace: Any) -> bool:
    return any(sold for _, (_, sold), _ in trace)


def test_pv_without_forecast_error_or_noise_delivers_exactly_what_it_sold() -> None:
    agent = PvProsumer(
        "pv", CTX, pv_spec(forecast_error=0.0, load=replace(HOME_LOAD, noise=0.0)), NO_CLOUDS
    )
    trace = drive(agent, [6 * C // 100] * 96)
    small = 0
    for _, (bought, sold), meter in trace:
        # a surplus or deficit below the market's minimum order is not offered: it goes to or
        # comes from the grid unsold
        assert meter.exported_wh == sold or (sold == 0 and meter.exported_wh < MIN_ORDER_WH)
        assert meter.imported_wh == bought or (bought == 0 and meter.imported_wh < MIN_ORDER_WH)
        small += meter.exported_wh != sold or meter.imported_wh != bought
    assert sold_any(trace) and small < 10


def test_pv_generation_follows_the_sun_and_the_clouds() -> None:
    cloudy = Sky.uniform(3_000, CTX)
    sunny = PvProsumer("pv", CTX, pv_spec(), NO_CLOUDS)
    dull = PvProsumer("pv", CTX, pv_spec(), cloudy)
    # 1 June in central Germany: dark until after four in the morning (CEST) and after ten at night
    assert int(sunny.generation_wh[:16].sum()) == 0 and int(sunny.generation_wh[90:].sum()) == 0
    assert int(sunny.generation_wh[48:56].min()) > 0
    assert int(dull.generation_wh.sum()) == pytest.approx(
        0.3 * int(sunny.generation_wh.sum()), rel=0.01
    )


# --------------------------------------------------------------------------- household


def test_household_bids_its_expected_load_at_its_cap_and_meters_the_actual_load() -> None:
    spec = HouseholdSpec("h", 1, None, LoadSpec(3_650_000, "h0", 0.2), 30 * C // 100)
    agent = Household("h", CTX, spec)
    # a June Monday of an h0 home of 3,650 kWh a year: near the yearly average of 10 kWh a day
    assert 8_000 < int(agent.load_forecast_wh.sum()) < 12_000
    trace = drive(agent, [20 * C // 100] * 96)
    for t, (intents, _, meter) in enumerate(trace):
        assert intents == [
            OrderIntent("buy", int(agent.load_forecast_wh[t]), spec.cap_price_per_wh)
        ]
        assert meter.imported_wh == int(agent.load_wh[t]) and meter.exported_wh == 0
    assert agent.load_wh.tolist() != agent.load_forecast_wh.tolist()  # the noise is there
