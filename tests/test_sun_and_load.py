"""Sun from pvlib and load from demandlib: envelopes, seasons, annual energy and the calendar."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pytest
from agent_support import SCENARIOS
from hypothesis import given, settings
from hypothesis import strategies as st

from simulation.agents import (
    AgentContext,
    BatteryAgent,
    DataCenterAgent,
    Household,
    PvProsumer,
    Sky,
    build_agents,
)
from simulation.agents.vpp import VppAggregator
from simulation.clock import holidays_in, sample_times, start_instant
from simulation.load import site_load_wh, standard_load_wh
from simulation.profiles import energy_wh_at_power, seeded_rng
from simulation.scenario import (
    ArraySpec,
    CalendarSpec,
    HouseholdSpec,
    LoadSpec,
    LocationSpec,
    PvSpec,
    WeatherSpec,
)
from simulation.scenario_file import load_scenario
from simulation.scenario_schema import STANDARD_PROFILES
from simulation.solar import clear_sky_wh

C = 10**15
YEAR = 35_040  # 15-minute intervals in 2026
WINTER = CalendarSpec(start_date=date(2026, 12, 21))
SUMMER = CalendarSpec(start_date=date(2026, 6, 21))


def context(calendar: CalendarSpec, intervals: int = 96, seconds: int = 900) -> AgentContext:
    return AgentContext(11, intervals, seconds, C // 2, calendar)


def pv(peak_w: int = 6000, array: ArraySpec | None = None) -> PvSpec:
    array = ArraySpec() if array is None else array
    return PvSpec("pv", 1, None, peak_w, array, LoadSpec(0), 0.1, 6 * C // 100, 30 * C // 100)


# --------------------------------------------------------------------------- PV


@pytest.mark.parametrize("path", ["neighbourhood", "datacenter-heavy"])
def test_pv_never_exceeds_the_clear_sky_envelope_of_its_array(path: str) -> None:
    scenario = load_scenario(SCENARIOS / f"{path}.toml")
    sky = Sky.from_spec(scenario.weather, context(scenario.calendar))
    checked = 0
    for agent in build_agents(scenario):
        if isinstance(agent, PvProsumer):
            array, peak = agent.spec.array, agent.spec.peak_w
        elif isinstance(agent, BatteryAgent) and agent.spec.pv_peak_w:
            array, peak = agent.spec.array, agent.spec.pv_peak_w
        else:
            continue
        envelope = sky.clear_sky_wh(array, peak)
        assert np.all(agent.generation_wh <= envelope), agent.name
        assert np.all(envelope <= energy_wh_at_power(peak, 900)), agent.name
        assert int(agent.generation_wh.sum()) > 0
        checked += 1
    assert checked > 0


@settings(max_examples=15, deadline=None)
@given(
    latitude=st.floats(-60, 70),
    longitude=st.floats(-180, 180),
    tilt=st.floats(0, 90),
    azimuth=st.floats(0, 359.9),
    peak_w=st.integers(1, 10**7),
    month=st.integers(1, 12),
    clearness=st.lists(st.integers(0, 10_000), min_size=96, max_size=96),
)
def test_pv_stays_under_the_envelope_and_the_nameplate_anywhere(
    latitude: float,
    longitude: float,
    tilt: float,
    azimuth: float,
    peak_w: int,
    month: int,
    clearness: list[int],
) -> None:
    calendar = CalendarSpec(start_date=date(2026, month, 10), time_zone="UTC")
    array = ArraySpec(LocationSpec(latitude, longitude, 0.0), tilt, azimuth)
    sky = Sky(np.asarray(clearness, dtype=np.int64), calendar, 900)
    envelope = sky.clear_sky_wh(array, peak_w)
    generation = sky.generation_wh(array, peak_w)
    assert envelope.dtype == np.int64 and generation.dtype == np.int64
    assert np.all(generation >= 0) and np.all(generation <= envelope)
    assert np.all(envelope <= energy_wh_at_power(peak_w, 900))


def test_a_summer_day_yields_more_pv_than_a_winter_day_at_the_same_place() -> None:
    array = ArraySpec(LocationSpec(51.3, 9.5, 200.0), 35.0, 180.0)
    summer = PvProsumer(
        "pv", context(SUMMER), pv(array=array), Sky.uniform(10_000, context(SUMMER))
    )
    winter = PvProsumer(
        "pv", context(WINTER), pv(array=array), Sky.uniform(10_000, context(WINTER))
    )
    assert int(summer.generation_wh.sum()) > 1.5 * int(winter.generation_wh.sum()) > 0
    # and the summer day is longer: more intervals with any output
    assert np.count_nonzero(summer.generation_wh) > np.count_nonzero(winter.generation_wh) + 16


def test_clear_sky_energy_is_plausible_for_germany() -> None:
    array = ArraySpec(LocationSpec(51.3, 9.5, 200.0), 35.0, 180.0)
    year = CalendarSpec(start_date=date(2026, 1, 1))
    energy = clear_sky_wh(array, 1000, year, YEAR, 900, WeatherSpec())
    # Clear sky all year: well above the 900-1,000 kWh/kWp of a real (cloudy) German year,
    # well below what a desert gives under clear skies.
    assert 1_200_000 < int(energy.sum()) < 1_800_000
    # A south-facing array peaks around solar noon (about 13:10 CEST at 9.5 E in summer).
    day = clear_sky_wh(array, 1000, SUMMER, 96, 900, WeatherSpec())
    assert 50 <= int(np.argmax(day)) <= 55


def test_an_east_array_peaks_before_a_west_array() -> None:
    east = ArraySpec(tilt=30.0, azimuth=90.0)
    west = ArraySpec(tilt=30.0, azimuth=270.0)
    a = clear_sky_wh(east, 5000, SUMMER, 96, 900, WeatherSpec())
    b = clear_sky_wh(west, 5000, SUMMER, 96, 900, WeatherSpec())
    assert int(np.argmax(a)) + 12 < int(np.argmax(b))


def test_hourly_intervals_hold_the_energy_of_their_quarter_hours() -> None:
    array = ArraySpec()
    quarter = clear_sky_wh(array, 10_000, SUMMER, 96, 900, WeatherSpec())
    hourly = clear_sky_wh(array, 10_000, SUMMER, 24, 3600, WeatherSpec())
    assert abs(int(hourly.sum()) - int(quarter.sum())) < 0.002 * int(quarter.sum())


def test_a_shorter_run_sees_the_start_of_a_longer_runs_pv_and_load() -> None:
    short, long = context(SUMMER, 40), context(SUMMER, 300)
    spec = pv()
    a = PvProsumer("pv", short, replace(spec, load=LoadSpec(3_000_000)), Sky.uniform(8_000, short))
    b = PvProsumer("pv", long, replace(spec, load=LoadSpec(3_000_000)), Sky.uniform(8_000, long))
    assert a.generation_wh.tolist() == b.generation_wh[:40].tolist()
    assert a.load_forecast_wh.tolist() == b.load_forecast_wh[:40].tolist()
    assert a.load_wh.tolist() == b.load_wh[:40].tolist()


def test_vpp_members_share_the_arrays_clear_sky_computation() -> None:
    from simulation.solar import clear_sky_wh_per_wp

    scenario = load_scenario(SCENARIOS / "neighbourhood.toml", intervals=8)
    clear_sky_wh_per_wp.cache_clear()
    agents = build_agents(scenario)
    distinct = {a.spec.array for a in agents if isinstance(a, PvProsumer)}
    distinct |= {a.spec.array for a in agents if isinstance(a, BatteryAgent) and a.spec.pv_peak_w}
    distinct |= {a.spec.array for a in agents if isinstance(a, VppAggregator) and a.spec.pv_homes}
    assert len(distinct) == 3  # rooftops, home batteries' roofs, the VPP's members
    assert clear_sky_wh_per_wp.cache_info().misses == len(distinct)


# --------------------------------------------------------------------------- load


def test_the_profile_names_are_demandlibs() -> None:
    from demandlib import bdew

    columns = set(bdew.ElecSlp(2026).get_profiles().columns)
    assert set(STANDARD_PROFILES) == columns


@pytest.mark.parametrize(("profile", "seed"), [("h0", 1), ("h0", 2), ("g1", 3), ("l1", 4)])
def test_a_year_of_load_is_within_one_percent_of_the_configured_energy(
    profile: str, seed: int
) -> None:
    year = context(CalendarSpec(start_date=date(2026, 1, 1)), YEAR)
    annual = 3_500_000 if profile == "h0" else 50_000_000
    load = LoadSpec(annual, profile, noise=0.25, persistence=0.8, shift_minutes=45)
    home = Household(f"h-{seed}", replace(year, seed=seed), HouseholdSpec("h", 1, None, load, C))
    assert abs(int(home.load_forecast_wh.sum()) - annual) <= 0.001 * annual
    assert abs(int(home.load_wh.sum()) - annual) <= 0.01 * annual
    assert home.load_wh.dtype == np.int64 and int(home.load_wh.min()) >= 0


def test_a_homes_load_is_rougher_than_the_standard_profile_and_shifted() -> None:
    calendar = CalendarSpec(start_date=date(2026, 3, 2))
    load = LoadSpec(3_500_000, "h0", noise=0.3, persistence=0.8, shift_minutes=60)
    standard = standard_load_wh(load, calendar, 96 * 7, 900)
    forecasts = []
    for seed in range(4):
        forecast, actual = site_load_wh(
            load,
            calendar,
            96 * 7,
            900,
            shift_rng=seeded_rng(seed, "shift"),
            noise_rng=seeded_rng(seed, "noise"),
        )
        forecasts.append(forecast.tolist())
        roughness = np.abs(np.diff(actual)).mean() / actual.mean()
        assert roughness > 2 * np.abs(np.diff(standard)).mean() / standard.mean()
    assert len({tuple(f) for f in forecasts}) == 4  # every home has its own habits


def test_weekends_and_holidays_change_a_business_load() -> None:
    # 2026-04-29 is a Wednesday, 2026-05-01 (Labour Day) a Friday, 2026-05-03 a Sunday.
    calendar = CalendarSpec(start_date=date(2026, 4, 29))
    office = LoadSpec(100_000_000, "g1")
    days = standard_load_wh(office, calendar, 96 * 5, 900).reshape(5, 96).sum(axis=1)
    wednesday, _, labour_day, saturday, sunday = days.tolist()
    assert labour_day < 0.5 * wednesday
    assert labour_day == pytest.approx(sunday, rel=0.02)
    assert sunday < saturday < wednesday
    without = replace(calendar, holiday_country=None)
    friday = standard_load_wh(office, without, 96 * 5, 900).reshape(5, 96).sum(axis=1)[2]
    assert friday > 2 * labour_day


def test_listed_holidays_and_subdivisions_reach_the_calendar() -> None:
    bavaria = CalendarSpec(holiday_country="DE-BY")
    berlin = CalendarSpec(holiday_country="DE-BE")
    assert date(2026, 1, 6) in holidays_in(bavaria, 2026)  # Epiphany in Bavaria only
    assert date(2026, 1, 6) not in holidays_in(berlin, 2026)
    listed = CalendarSpec(holiday_country=None, holiday_dates=(date(2026, 7, 7),))
    assert holidays_in(listed, 2026) == (date(2026, 7, 7),)


def test_the_clock_follows_daylight_saving_and_the_profile_the_wall_clock() -> None:
    calendar = CalendarSpec(start_date=date(2026, 3, 28))  # the night of 29 March loses an hour
    times = sample_times(calendar, 96 * 2, 900)
    assert str(start_instant(calendar)) == "2026-03-28 00:00:00+01:00"
    assert str(times[96 + 8].floor("15min")) == "2026-03-29 03:00:00+02:00"
    # Each interval takes the profile's value at its local wall-clock time: 02:45 CET is
    # followed by 03:00 CEST, and the profile's 02:00-03:00 of that day is skipped.
    from demandlib import bdew

    annual = 3_500_000
    load = standard_load_wh(LoadSpec(annual, "h0"), calendar, 96 * 2, 900)
    days = list(holidays_in(calendar, 2026))
    profile = bdew.ElecSlp(2026, holidays=days).get_profiles()["h0"]
    share = profile / profile.sum()
    for t, wall in (
        (96 + 7, "2026-03-29 01:45"),
        (96 + 8, "2026-03-29 03:00"),
        (20, "2026-03-28 05:00"),
    ):
        assert load[t] == pytest.approx(annual * float(share[wall]), rel=1e-9), wall


def test_a_data_center_keeps_its_flat_base_load_whatever_the_calendar() -> None:
    scenario = load_scenario(SCENARIOS / "neighbourhood.toml", intervals=96)
    winter = replace(scenario, calendar=WINTER)
    a = next(x for x in build_agents(scenario) if isinstance(x, DataCenterAgent))
    b = next(x for x in build_agents(winter) if isinstance(x, DataCenterAgent))
    assert a.base_forecast_wh.tolist() == b.base_forecast_wh.tolist()
