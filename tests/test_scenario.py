"""Scenario files: the shipped ones load, and bad input is refused naming the key."""

from __future__ import annotations

import re
import tomllib
from datetime import date
from pathlib import Path

import pytest

import simulation.scenario_schema as schema_module
from ledger.errors import InputError
from simulation.scenario import LoadSpec, LocationSpec, Scenario, ScenarioError
from simulation.scenario_file import load_scenario, parse_scenario
from simulation.scenario_schema import (
    AGENT_KINDS,
    CALENDAR_KEYS,
    JOB_KEYS,
    LOCATION_KEYS,
    MARKET_KEYS,
    SIMULATION_KEYS,
    WEATHER_KEYS,
)

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
SHIPPED = sorted(SCENARIOS.glob("*.toml"))

MINIMAL = """
[simulation]
seed = 1
intervals = 8

[[agents.household]]
load_kwh_per_year = 3650

[[agents.pv]]
peak_w = 5000
"""


def parse(text: str) -> Scenario:
    return parse_scenario(text, source="test.toml")


def refused(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        parse(text)
    return caught.value


# --------------------------------------------------------------------------- shipped files


def test_the_shipped_scenarios_include_a_neighbourhood_a_data_center_heavy_one_and_a_feeder() -> (
    None
):
    names = {path.stem for path in SHIPPED}
    assert {"neighbourhood", "datacenter-heavy", "feeder-1000"} <= names


def test_the_feeder_has_a_thousand_homes_in_realistic_shares() -> None:
    agents = load_scenario(SCENARIOS / "feeder-1000.toml").agents
    h0 = [g for g in agents.pv + agents.battery + agents.household if g.load.profile == "h0"]
    homes = sum(g.count for g in h0) + sum(v.homes for v in agents.vpp)
    with_pv = sum(g.count for g in h0 if getattr(g, "peak_w", 0) or getattr(g, "pv_peak_w", 0))
    with_pv += sum(v.pv_homes for v in agents.vpp)
    with_battery = sum(g.count for g in agents.battery if g.load.profile == "h0" and g.pv_peak_w)
    with_battery += sum(v.battery_homes for v in agents.vpp)
    assert 950 <= homes <= 1050
    assert 0.30 <= with_pv / homes <= 0.40
    assert 0.08 <= with_battery / homes <= 0.12
    businesses = [g for g in agents.pv + agents.household if g.load.profile[0] in "gl"]
    assert len(businesses) >= 3 and agents.data_center


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenario_loads_with_a_seed_and_every_kind_of_agent(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    # one day, or a whole year for the memory ledger's year scenario
    year = path.stem.endswith("-year")
    assert scenario.simulation.intervals == (96 * 365 if year else 96)
    assert "seed" in tomllib.loads(path.read_text())["simulation"]
    kinds = scenario.agents
    assert kinds.pv and kinds.battery and kinds.household and kinds.data_center and kinds.vpp
    assert all(dc.jobs for dc in kinds.data_center)


def _documented_keys(text: str) -> set[str]:
    """Keys set on a line that also carries a comment."""
    keys = set()
    for line in text.splitlines():
        match = re.match(r"\s*([A-Za-z_]+)\s*=.*#\s*\S", line)
        if match:
            keys.add(match.group(1))
    return keys


def test_every_schema_key_is_documented_in_the_module_and_commented_in_a_shipped_file() -> None:
    doc = schema_module.__doc__ or ""
    commented: set[str] = set()
    for path in SHIPPED:
        commented |= _documented_keys(path.read_text())
    tables = [
        SIMULATION_KEYS,
        CALENDAR_KEYS,
        LOCATION_KEYS,
        MARKET_KEYS,
        WEATHER_KEYS,
        JOB_KEYS,
        *AGENT_KINDS.values(),
    ]
    for keys in tables:
        for key in keys:
            assert f"``{key.name}``" in doc, f"{key.name} is not in the schema's docstring"
            assert key.name in commented, f"{key.name} is not set with a comment in scenarios/"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_key_in_a_shipped_file_carries_a_comment(path: Path) -> None:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if re.match(r"\s*[A-Za-z_]+\s*=", line):
            assert "#" in line, f"{path.name}:{number} has no comment: {line!r}"


# --------------------------------------------------------------------------- values


def test_prices_energies_and_money_convert_exactly() -> None:
    scenario = parse(
        MINIMAL
        + """
floor_price_per_kwh = 0.25
cap_price_per_kwh = "0.3"
load_kwh_per_year = "1.234"
collateral = "12.5"
"""
    )
    pv = scenario.agents.pv[0]
    assert pv.floor_price_per_wh == 250_000_000_000_000
    assert pv.cap_price_per_wh == 300_000_000_000_000
    assert pv.load.annual_wh == 1234
    assert pv.collateral_base_units == 12_500_000_000_000_000_000


def test_defaults_fill_the_optional_keys() -> None:
    scenario = parse(MINIMAL)
    assert scenario.name == "test"
    assert scenario.simulation.interval_seconds == 900
    assert scenario.simulation.mechanism == "uniform"
    assert scenario.simulation.k == (1, 2)
    assert scenario.market.penalty_price_per_wh == 500_000_000_000_000
    assert scenario.market.tolerance_bps == 500
    assert scenario.agents.household[0].name == "household"
    assert scenario.agents.pv[0].collateral_base_units is None


def test_group_names_number_the_agents_and_later_groups_get_their_own_name() -> None:
    from simulation.scenario import agent_names

    assert agent_names("home", 1) == ["home"]
    assert agent_names("home", 12)[:2] == ["home-01", "home-02"]
    scenario = parse(MINIMAL + "\n[[agents.household]]\nload_kwh_per_year = 5\ncount = 2\n")
    assert [h.name for h in scenario.agents.household] == ["household", "household2"]


def test_intervals_override_shortens_the_run() -> None:
    scenario = load_scenario(SCENARIOS / "neighbourhood.toml", intervals=8)
    assert scenario.simulation.intervals == 8
    with pytest.raises(ScenarioError) as caught:
        scenario.with_intervals(0)
    assert caught.value.key == "simulation.intervals"


# --------------------------------------------------------------------------- bad input


def test_scenario_error_is_an_input_error_with_a_stable_code() -> None:
    error = refused(MINIMAL.replace("seed = 1", "seed = -1"))
    assert isinstance(error, InputError)
    assert error.code == "invalid_scenario"
    assert error.key == "simulation.seed"
    assert str(error).startswith("test.toml: simulation.seed: ")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("colour = 'blue'\n" + MINIMAL, "colour"),
        (
            MINIMAL.replace("intervals = 8", "intervals = 8\nintervalls = 9"),
            "simulation.intervalls",
        ),
        (MINIMAL + "peak_kw = 5\n", "agents.pv[0].peak_kw"),
        (MINIMAL + "[[agents.windmill]]\ncount = 1\n", "agents.windmill"),
        (
            MINIMAL
            + "[[agents.data_center]]\nbase_load_w = 1\n[[agents.data_center.jobs]]\n"
            + "energy_kwh = 1\nrelease_interval = 0\ndeadline_interval = 3\nmax_power_w = 4000\n"
            + "priority = 1\n",
            "agents.data_center[0].jobs[0].priority",
        ),
    ],
)
def test_unknown_keys_are_refused_by_their_full_path(text: str, key: str) -> None:
    error = refused(text)
    assert error.key == key
    assert "unknown key" in str(error)


def test_a_misspelt_key_gets_a_did_you_mean_hint() -> None:
    error = refused(MINIMAL + "forcast_error = 0.1\n")
    assert "Did you mean 'forecast_error'?" in str(error)


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ("intervals = 8", 'intervals = "8"', "simulation.intervals", "expected an integer"),
        ("intervals = 8", "intervals = 8.0", "simulation.intervals", "expected an integer"),
        ("seed = 1", "seed = true", "simulation.seed", "expected an integer"),
        ("peak_w = 5000", "peak_w = 5000.5", "agents.pv[0].peak_w", "expected an integer"),
        ("peak_w = 5000", "peak_w = 5000\nload_noise = '0.1'", "agents.pv[0].load_noise", "number"),
        ("peak_w = 5000", "peak_w = 5000\nname = 3", "agents.pv[0].name", "expected a string"),
        (
            "peak_w = 5000",
            "peak_w = 5000\ncap_price_per_kwh = true",
            "agents.pv[0].cap_price_per_kwh",
            "number",
        ),
        ("[simulation]", "simulation = 3\n[market]", "simulation", "expected a table"),
    ],
)
def test_wrong_types_are_refused_naming_the_key(old: str, new: str, key: str, words: str) -> None:
    error = refused(MINIMAL.replace(old, new, 1))
    assert error.key == key
    assert words in str(error)


BATTERY = """
[[agents.battery]]
capacity_kwh = 10
max_power_w = 5000
"""

DATA_CENTER = """
[[agents.data_center]]
base_load_w = 10000
[[agents.data_center.jobs]]
energy_kwh = 5
release_interval = 0
deadline_interval = 7
max_power_w = 10000
[[agents.data_center.jobs]]
energy_kwh = 5
release_interval = 2
deadline_interval = 6
max_power_w = 10000
[[agents.data_center.jobs]]
energy_kwh = 5
release_interval = 4
deadline_interval = 7
max_power_w = 10000
"""


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        (
            BATTERY.replace("capacity_kwh = 10", "capacity_kwh = -10"),
            "agents.battery[0].capacity_kwh",
            "impossible",
        ),
        (
            BATTERY.replace("capacity_kwh = 10", "capacity_kwh = 0"),
            "agents.battery[0].capacity_kwh",
            "impossible",
        ),
        (
            BATTERY + "round_trip_efficiency = 1.01\n",
            "agents.battery[0].round_trip_efficiency",
            "out of range",
        ),
        (
            BATTERY + "round_trip_efficiency = 0\n",
            "agents.battery[0].round_trip_efficiency",
            "out of range",
        ),
        (BATTERY + "initial_soc = 0.05\n", "agents.battery[0].initial_soc", "between min_soc"),
        (
            BATTERY + "min_soc = 0.9\nmax_soc = 0.5\ninitial_soc = 0.7\n",
            "agents.battery[0].max_soc",
            "above min_soc",
        ),
        (
            BATTERY + "discharge_price_per_kwh = '0.10'\n",
            "agents.battery[0].discharge_price_per_kwh",
            "above",
        ),
        (
            BATTERY + "low_percentile = 80\nhigh_percentile = 20\n",
            "agents.battery[0].high_percentile",
            "above",
        ),
        (BATTERY.replace("5000", "3"), "agents.battery[0].max_power_w", "less than 1 Wh"),
        (
            # the third job: released at 4, deadline 3
            DATA_CENTER.replace(
                "release_interval = 4\ndeadline_interval = 7",
                "release_interval = 4\ndeadline_interval = 3",
            ),
            "agents.data_center[0].jobs[2].deadline_interval",
            "before the job's release_interval 4",
        ),
        (
            DATA_CENTER.replace("deadline_interval = 6", "deadline_interval = 8"),
            "agents.data_center[0].jobs[1].deadline_interval",
            "past the run",
        ),
        (
            DATA_CENTER.replace(
                "energy_kwh = 5\nrelease_interval = 2", "energy_kwh = 12.6\nrelease_interval = 2"
            ),
            "agents.data_center[0].jobs[1].energy_kwh",
            "cannot be delivered",
        ),
        (
            DATA_CENTER
            + "[[agents.data_center.jobs]]\nrelease_interval = 0\ndeadline_interval = 1\n"
            + "max_power_w = 1\n",
            "agents.data_center[0].jobs[3].energy_kwh",
            "required",
        ),
        (
            DATA_CENTER.replace(
                "base_load_w = 10000", "base_load_w = 10000\nflex_prices_per_kwh = ['0.1', '0.1']"
            ),
            "agents.data_center[0].flex_prices_per_kwh",
            "ascending",
        ),
        (
            DATA_CENTER.replace(
                "base_load_w = 10000", "base_load_w = 10000\nflex_prices_per_kwh = ['0.1', '0.5']"
            ),
            "agents.data_center[0].flex_prices_per_kwh",
            "below max_price",
        ),
        (
            DATA_CENTER.replace("base_load_w = 10000", "base_load_w = -1"),
            "agents.data_center[0].base_load_w",
            "out of range",
        ),
        (
            "[[agents.vpp]]\nhomes = 3\npv_homes = 4\npv_peak_w = 100\n",
            "agents.vpp[0].pv_homes",
            "more than homes",
        ),
        (
            "[[agents.vpp]]\nhomes = 3\nbattery_homes = 2\n",
            "agents.vpp[0].battery_capacity_kwh",
            "must be > 0",
        ),
        (
            "[[agents.household]]\nload_kwh_per_year = 0\n",
            "agents.household[1].load_kwh_per_year",
            "impossible",
        ),
        (
            "[[agents.household]]\nload_kwh_per_year = 1\ncount = 0\n",
            "agents.household[1].count",
            "out of range",
        ),
        (
            "[[agents.household]]\nload_kwh_per_year = 1\nload_profile = 'office'\n",
            "agents.household[1].load_profile",
            "not one of",
        ),
        (
            "[[agents.household]]\nname = 'pv'\nload_kwh_per_year = 1\n",
            "agents.household[1].name",
            "already used",
        ),
        (
            "[[agents.household]]\nname = 'bad name'\nload_kwh_per_year = 1\n",
            "agents.household[1].name",
            "not a valid name",
        ),
        (
            "[[agents.household]]\nload_kwh_per_year = '0.0005'\n",
            "agents.household[1].load_kwh_per_year",
            "finer than one Wh",
        ),
        (
            "[[agents.household]]\nload_kwh_per_year = 1\n"
            + "cap_price_per_kwh = '0.0000000000000001'\n",
            "agents.household[1].cap_price_per_kwh",
            "finer than one base unit/Wh",
        ),
        (
            "[[agents.household]]\nload_kwh_per_year = 1\ncap_price_per_kwh = 0\n",
            "agents.household[1].cap_price_per_kwh",
            "positive",
        ),
        (
            "[[agents.household]]\nload_kwh_per_year = 1\ncollateral = '-1'\n",
            "agents.household[1].collateral",
            "negative",
        ),
    ],
)
def test_impossible_values_are_refused_naming_the_key(extra: str, key: str, words: str) -> None:
    error = refused(MINIMAL + extra)
    assert error.key == key, str(error)
    assert words in str(error)


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        (
            "intervals = 8",
            "intervals = 8\ninterval_seconds = 420",
            "simulation.interval_seconds",
            "divide a day",
        ),
        ("intervals = 8", "intervals = 8\nk = '3/2'", "simulation.k", "NUM <= DEN"),
        ("intervals = 8", "intervals = 8\nk = 'half'", "simulation.k", "not a fraction"),
        (
            "intervals = 8",
            "intervals = 8\nmechanism = 'vickrey'",
            "simulation.mechanism",
            "not one of",
        ),
        ("intervals = 8", "intervals = 0", "simulation.intervals", "out of range"),
        (
            "[simulation]",
            "[weather]\npersistence = 1\n[simulation]",
            "weather.persistence",
            "out of range",
        ),
        (
            "[simulation]",
            "[market]\ntolerance_bps = 10001\n[simulation]",
            "market.tolerance_bps",
            "out of range",
        ),
        ("seed = 1\n", "", "simulation.seed", "required"),
    ],
)
def test_bad_simulation_market_and_weather_values_are_refused(
    old: str, new: str, key: str, words: str
) -> None:
    error = refused(MINIMAL.replace(old, new, 1))
    assert error.key == key, str(error)
    assert words in str(error)


def test_a_scenario_without_agents_is_refused() -> None:
    error = refused("[simulation]\nseed = 1\nintervals = 4\n")
    assert error.key == "agents"


def test_a_file_that_is_not_toml_is_refused_with_the_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[simulation\nseed = 1\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.key is None
    assert "not valid TOML" in str(caught.value) and "line 1" in str(caught.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.toml")


def test_the_job_path_of_the_issue_example_is_named_exactly() -> None:
    text = (SCENARIOS / "neighbourhood.toml").read_text()
    # The third job of the first data center gets a deadline before its release.
    broken = text.replace("deadline_interval = 71", "deadline_interval = 59", 1)
    assert broken != text
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(broken, source="neighbourhood.toml")
    assert caught.value.key == "agents.data_center[0].jobs[2].deadline_interval"


# --------------------------------------------------------------------------- calendar, site, loads


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ("[simulation]", "[location]\nlatitude = 91\n[simulation]", "location.latitude", "range"),
        (
            "[simulation]",
            "[location]\nlongitude = -181\n[simulation]",
            "location.longitude",
            "range",
        ),
        (
            "[simulation]",
            "[calendar]\ntime_zone = 'Europe/Berlinn'\n[simulation]",
            "calendar.time_zone",
            "not a known IANA time zone",
        ),
        (
            "[simulation]",
            "[calendar]\nstart_date = '2026-13-01'\n[simulation]",
            "calendar.start_date",
            "not a date",
        ),
        (
            "[simulation]",
            "[calendar]\nstart_date = '1 June 2026'\n[simulation]",
            "calendar.start_date",
            "YYYY-MM-DD",
        ),
        (
            "[simulation]",
            "[calendar]\nstart_date = 2026-06-01T00:00:00\n[simulation]",
            "calendar.start_date",
            "date-time",
        ),
        (
            "[simulation]",
            "[calendar]\nholidays = 'XX'\n[simulation]",
            "calendar.holidays",
            "not a country",
        ),
        (
            "[simulation]",
            "[calendar]\nholidays = 'DE-XX'\n[simulation]",
            "calendar.holidays",
            "not a subdivision",
        ),
        (
            "[simulation]",
            "[calendar]\nholidays = ['2026-12-25', '2026-02-30']\n[simulation]",
            "calendar.holidays",
            "item 1",
        ),
        ("peak_w = 5000", "peak_w = 5000\ntilt = 91", "agents.pv[0].tilt", "out of range"),
        ("peak_w = 5000", "peak_w = 5000\ntilt = -1", "agents.pv[0].tilt", "out of range"),
        ("peak_w = 5000", "peak_w = 5000\nazimuth = 360", "agents.pv[0].azimuth", "out of range"),
        ("peak_w = 5000", "peak_w = 5000\nlatitude = -90.5", "agents.pv[0].latitude", "range"),
        (
            "peak_w = 5000",
            "peak_w = 5000\nload_profile = 'h7'",
            "agents.pv[0].load_profile",
            "not one of",
        ),
        (
            "peak_w = 5000",
            "peak_w = 5000\nload_persistence = 1",
            "agents.pv[0].load_persistence",
            "out of range",
        ),
    ],
)
def test_bad_calendar_location_array_and_load_values_are_refused_naming_the_key(
    old: str, new: str, key: str, words: str
) -> None:
    error = refused(MINIMAL.replace(old, new, 1))
    assert error.key == key, str(error)
    assert words in str(error)


@pytest.mark.parametrize(
    ("extra", "key", "words", "hint"),
    [
        (
            "load_kwh_per_day = 9\n",
            "agents.pv[0].load_kwh_per_day",
            "replaced by load_kwh_per_year",
            "load_kwh_per_year = 3285",
        ),
        (
            "load_profile = 'residential'\n",
            "agents.pv[0].load_profile",
            "no longer a load profile",
            '"h0"',
        ),
        (
            "load_profile = 'commercial'\n",
            "agents.pv[0].load_profile",
            "no longer a load profile",
            '"g1"',
        ),
        ("[weather]\nsunrise_hour = 6\n", "weather.sunrise_hour", "pvlib", "[location]"),
    ],
)
def test_keys_of_earlier_files_are_refused_with_the_translation(
    extra: str, key: str, words: str, hint: str
) -> None:
    error = refused(MINIMAL + extra)
    assert error.key == key, str(error)
    assert words in str(error)
    assert error.hint is not None and hint in error.hint


def test_calendar_location_and_arrays_are_read_with_group_overrides() -> None:
    scenario = parse(
        """
[simulation]
seed = 1
intervals = 8
[calendar]
start_date = 2026-12-21
time_zone = "America/New_York"
holidays = ["2026-12-24", "2026-12-25"]
[location]
latitude = 40.7
longitude = -74.0
altitude_m = 10
[[agents.pv]]
peak_w = 5000
tilt = 10
azimuth = 90
latitude = 35.5
[[agents.battery]]
capacity_kwh = 10
max_power_w = 5000
pv_peak_w = 3000
pv_azimuth = 270
"""
    )
    calendar = scenario.calendar
    assert calendar.start_date == date(2026, 12, 21) and calendar.time_zone == "America/New_York"
    assert calendar.holiday_country is None
    assert calendar.holiday_dates == (date(2026, 12, 24), date(2026, 12, 25))
    pv, battery = scenario.agents.pv[0], scenario.agents.battery[0]
    assert (pv.array.tilt, pv.array.azimuth) == (10.0, 90.0)
    assert pv.array.location == LocationSpec(35.5, -74.0, 10.0)
    assert battery.array.location == LocationSpec(40.7, -74.0, 10.0)
    assert (battery.array.tilt, battery.array.azimuth) == (30.0, 270.0)
    assert pv.load == LoadSpec(3_000_000, "h0", 0.1, 0.8, 30.0)


def test_a_bad_value_is_refused_before_any_physics_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scenario is checked whole before pvlib or demandlib is asked for anything."""
    import simulation.load as load
    import simulation.solar as solar

    def boom(*args: object, **kwargs: object) -> object:
        raise AssertionError("physics ran before the scenario was valid")

    monkeypatch.setattr(solar, "clear_sky_wh_per_wp", boom)
    monkeypatch.setattr(load, "standard_load_wh", boom)
    error = refused(MINIMAL + "tilt = 95\n")
    assert error.key == "agents.pv[0].tilt"
