"""Reading a scenario file: TOML in, a checked :class:`~simulation.scenario.Scenario` out.

:func:`load_scenario` reads a TOML file with :mod:`tomllib` (floats as exact
:class:`~decimal.Decimal` values) and :func:`parse_scenario` checks its text: every key is
converted as :mod:`simulation.scenario_schema` documents it, unknown keys are refused (with
the nearest known key as a hint), and the checks that involve several keys are made here
(``min_soc < max_soc``, a job's deadline within the run and reachable at its power limit,
unique agent names). Every refusal is a :class:`~simulation.scenario.ScenarioError` naming
the key by its full path (``agents.data_center[0].jobs[2].deadline_interval``).
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from simulation.profiles import energy_wh_at_power
from simulation.scenario import (
    AgentsSpec,
    ArraySpec,
    BatterySpec,
    CalendarSpec,
    DataCenterSpec,
    GridSpec,
    HouseholdSpec,
    JobSpec,
    LoadSpec,
    LocationSpec,
    MarketSpec,
    PvSpec,
    Scenario,
    ScenarioError,
    SimulationSpec,
    StrategySpec,
    VppSpec,
    WeatherSpec,
    agent_names,
)
from simulation.scenario_schema import (
    AGENT_KINDS,
    CALENDAR_KEYS,
    GRID_KEYS,
    JOB_KEYS,
    LOCATION_KEYS,
    MARKET_KEYS,
    REQUIRED,
    RETIRED_KEYS,
    SIMULATION_KEYS,
    TOP_LEVEL_KEYS,
    WEATHER_KEYS,
    InvalidValue,
    Key,
    meta_keys,
    type_name,
)


class _Reader:
    """Reads a TOML document, tracking the key path for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str, hint: str | None = None) -> ScenarioError:
        return ScenarioError(message, key=path, source=self.source, hint=hint)

    def check_known(self, raw: Mapping[str, Any], path: str, allowed: tuple[str, ...]) -> None:
        for name in raw:
            if name not in allowed and name in RETIRED_KEYS:
                why, hint_from = RETIRED_KEYS[name]
                where = f"{path}.{name}" if path else name
                raise self.fail(where, why, hint=hint_from(raw[name]))
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f"Did you mean {close[0]!r}?" if close else None
                where = f"{path}.{name}" if path else name
                raise self.fail(
                    where,
                    f"unknown key; expected one of {', '.join(allowed)}",
                    hint=hint,
                )

    def table(self, raw: Mapping[str, Any], name: str, path: str) -> dict[str, Any]:
        value = raw.get(name, {})
        where = f"{path}.{name}" if path else name
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a table, got {type_name(value)}")
        return value

    def tables(self, raw: Mapping[str, Any], name: str, path: str) -> list[dict[str, Any]]:
        value = raw.get(name, [])
        where = f"{path}.{name}"
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(
                where,
                f"expected an array of tables ([[{where}]]), got {type_name(value)}",
            )
        return value

    def values(
        self,
        raw: Mapping[str, Any],
        path: str,
        keys: tuple[Key, ...],
        nested: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Convert every key of ``keys`` in ``raw`` (or take its default); refuse the rest.

        ``nested`` names sub-tables the caller reads itself (``jobs``).
        """
        self.check_known(raw, path, tuple(k.name for k in keys) + nested)
        out: dict[str, Any] = {}
        for key in keys:
            where = f"{path}.{key.name}"
            if key.name not in raw:
                if key.default is REQUIRED:
                    raise self.fail(where, "is required but missing")
                default = key.default
                out[key.name] = None if default is None else key.convert(default)
                continue
            try:
                out[key.name] = key.convert(raw[key.name])
            except InvalidValue as problem:
                raise self.fail(where, problem.message, problem.hint) from None
        return out


# --------------------------------------------------------------------------- building the specs


def _strategy(v: Mapping[str, Any], path: str, reader: _Reader) -> StrategySpec:
    if v["discharge_price_per_kwh"] <= v["charge_price_per_kwh"]:
        raise reader.fail(
            f"{path}.discharge_price_per_kwh",
            "must be above charge_price_per_kwh, or the battery would sell below what it paid",
        )
    if v["low_percentile"] >= v["high_percentile"]:
        raise reader.fail(f"{path}.high_percentile", "must be above low_percentile")
    return StrategySpec(
        charge_price_per_wh=v["charge_price_per_kwh"],
        discharge_price_per_wh=v["discharge_price_per_kwh"],
        price_window=v["price_window"],
        low_percentile=v["low_percentile"],
        high_percentile=v["high_percentile"],
    )


def _check_power_per_interval(
    reader: _Reader, path: str, power_w: int, interval_seconds: int
) -> None:
    if power_w and energy_wh_at_power(power_w, interval_seconds) < 1:
        raise reader.fail(
            path, f"{power_w} W moves less than 1 Wh in a {interval_seconds} s interval"
        )


def _load(v: Mapping[str, Any]) -> LoadSpec:
    return LoadSpec(
        annual_wh=v["load_kwh_per_year"],
        profile=v["load_profile"],
        noise=v["load_noise"],
        persistence=v["load_persistence"],
        shift_minutes=v["load_shift_minutes"],
    )


def _array(v: Mapping[str, Any], site: LocationSpec, prefix: str = "") -> ArraySpec:
    """The group's array: its tilt and azimuth, at the scenario's site unless it names its own
    latitude, longitude or altitude."""
    location = LocationSpec(
        latitude=site.latitude if v["latitude"] is None else v["latitude"],
        longitude=site.longitude if v["longitude"] is None else v["longitude"],
        altitude_m=site.altitude_m if v["altitude_m"] is None else v["altitude_m"],
    )
    return ArraySpec(location, tilt=v[f"{prefix}tilt"], azimuth=v[f"{prefix}azimuth"])


def _pv(v: dict[str, Any], path: str, reader: _Reader, sim: SimulationSpec) -> PvSpec:
    return PvSpec(
        name=v["name"],
        count=v["count"],
        collateral_base_units=v["collateral"],
        peak_w=v["peak_w"],
        array=_array(v, v["_site"]),
        load=_load(v),
        forecast_error=v["forecast_error"],
        floor_price_per_wh=v["floor_price_per_kwh"],
        cap_price_per_wh=v["cap_price_per_kwh"],
    )


def _battery(v: dict[str, Any], path: str, reader: _Reader, sim: SimulationSpec) -> BatterySpec:
    if v["min_soc"] >= v["max_soc"]:
        raise reader.fail(f"{path}.max_soc", f"{v['max_soc']} must be above min_soc")
    if not v["min_soc"] <= v["initial_soc"] <= v["max_soc"]:
        raise reader.fail(
            f"{path}.initial_soc",
            f"{v['initial_soc']} must lie between min_soc ({v['min_soc']}) and max_soc "
            f"({v['max_soc']})",
        )
    _check_power_per_interval(reader, f"{path}.max_power_w", v["max_power_w"], sim.interval_seconds)
    return BatterySpec(
        name=v["name"],
        count=v["count"],
        collateral_base_units=v["collateral"],
        capacity_wh=v["capacity_kwh"],
        max_power_w=v["max_power_w"],
        round_trip_efficiency=v["round_trip_efficiency"],
        initial_soc=v["initial_soc"],
        min_soc=v["min_soc"],
        max_soc=v["max_soc"],
        pv_peak_w=v["pv_peak_w"],
        array=_array(v, v["_site"], "pv_"),
        load=_load(v),
        forecast_error=v["forecast_error"],
        floor_price_per_wh=v["floor_price_per_kwh"],
        cap_price_per_wh=v["cap_price_per_kwh"],
        strategy=_strategy(v, path, reader),
    )


def _household(v: dict[str, Any], path: str, reader: _Reader, sim: SimulationSpec) -> HouseholdSpec:
    return HouseholdSpec(
        name=v["name"],
        count=v["count"],
        collateral_base_units=v["collateral"],
        load=_load(v),
        cap_price_per_wh=v["cap_price_per_kwh"],
    )


def _jobs(
    raw: Mapping[str, Any], path: str, reader: _Reader, sim: SimulationSpec
) -> tuple[JobSpec, ...]:
    jobs: list[JobSpec] = []
    seen: set[str] = set()
    for j, table in enumerate(reader.tables(raw, "jobs", path)):
        where = f"{path}.jobs[{j}]"
        v = reader.values(table, where, JOB_KEYS)
        name = v["name"] or f"job-{j + 1}"
        if name in seen:
            raise reader.fail(f"{where}.name", f"{name!r} is already used by another job")
        seen.add(name)
        release, deadline = v["release_interval"], v["deadline_interval"]
        if deadline < release:
            raise reader.fail(
                f"{where}.deadline_interval",
                f"{deadline} is before the job's release_interval {release}",
            )
        if deadline >= sim.intervals:
            raise reader.fail(
                f"{where}.deadline_interval",
                f"{deadline} is past the run's last interval {sim.intervals - 1} "
                "(simulation.intervals - 1)",
            )
        _check_power_per_interval(
            reader, f"{where}.max_power_w", v["max_power_w"], sim.interval_seconds
        )
        per_interval = energy_wh_at_power(v["max_power_w"], sim.interval_seconds)
        reachable = per_interval * (deadline - release + 1)
        if v["energy_kwh"] > reachable:
            raise reader.fail(
                f"{where}.energy_kwh",
                f"{Fraction(v['energy_kwh'], 1000)} kWh cannot be delivered between intervals "
                f"{release} and {deadline} at {v['max_power_w']} W (at most "
                f"{Fraction(reachable, 1000)} kWh)",
            )
        jobs.append(JobSpec(name, v["energy_kwh"], release, deadline, v["max_power_w"]))
    return tuple(jobs)


def _data_center(
    v: dict[str, Any], path: str, reader: _Reader, sim: SimulationSpec, raw: Mapping[str, Any]
) -> DataCenterSpec:
    if v["flex_prices_per_kwh"][-1] >= v["max_price_per_kwh"]:
        raise reader.fail(
            f"{path}.flex_prices_per_kwh",
            "every step must be below max_price_per_kwh, which is kept for must-run load",
        )
    return DataCenterSpec(
        name=v["name"],
        count=v["count"],
        collateral_base_units=v["collateral"],
        base_load_w=v["base_load_w"],
        base_load_noise=v["base_load_noise"],
        max_price_per_wh=v["max_price_per_kwh"],
        flex_prices_per_wh=v["flex_prices_per_kwh"],
        jobs=_jobs(raw, path, reader, sim),
    )


def _vpp(v: dict[str, Any], path: str, reader: _Reader, sim: SimulationSpec) -> VppSpec:
    for members in ("pv_homes", "battery_homes"):
        if v[members] > v["homes"]:
            raise reader.fail(
                f"{path}.{members}", f"{v[members]} is more than homes ({v['homes']})"
            )
    if v["pv_homes"] and not v["pv_peak_w"]:
        raise reader.fail(f"{path}.pv_peak_w", "must be > 0 when pv_homes > 0")
    if v["battery_homes"]:
        for key in ("battery_capacity_kwh", "battery_max_power_w"):
            if not v[key]:
                raise reader.fail(f"{path}.{key}", "must be > 0 when battery_homes > 0")
        _check_power_per_interval(
            reader, f"{path}.battery_max_power_w", v["battery_max_power_w"], sim.interval_seconds
        )
    return VppSpec(
        name=v["name"],
        count=v["count"],
        collateral_base_units=v["collateral"],
        homes=v["homes"],
        pv_homes=v["pv_homes"],
        battery_homes=v["battery_homes"],
        pv_peak_w=v["pv_peak_w"],
        battery_capacity_wh=v["battery_capacity_kwh"],
        battery_max_power_w=v["battery_max_power_w"],
        round_trip_efficiency=v["round_trip_efficiency"],
        array=_array(v, v["_site"], "pv_"),
        load=_load(v),
        forecast_error=v["forecast_error"],
        member_spread=v["member_spread"],
        floor_price_per_wh=v["floor_price_per_kwh"],
        cap_price_per_wh=v["cap_price_per_kwh"],
        strategy=_strategy(v, path, reader),
    )


def _agents(
    raw: Mapping[str, Any], reader: _Reader, sim: SimulationSpec, site: LocationSpec
) -> AgentsSpec:
    reader.check_known(raw, "agents", tuple(AGENT_KINDS))
    groups: dict[str, list[Any]] = {}
    names: dict[str, str] = {}  # agent name -> key path of the group that made it
    for kind, keys in AGENT_KINDS.items():
        groups[kind] = []
        for g, table in enumerate(reader.tables(raw, kind, "agents")):
            path = f"agents.{kind}[{g}]"
            v = reader.values(table, path, keys, ("jobs",) if kind == "data_center" else ())
            if v["name"] is None:
                v["name"] = kind.replace("_", "-") + ("" if g == 0 else str(g + 1))
            v["_site"] = site
            spec: Any
            if kind == "data_center":
                spec = _data_center(v, path, reader, sim, table)
            else:
                build = {"pv": _pv, "battery": _battery, "household": _household, "vpp": _vpp}
                spec = build[kind](v, path, reader, sim)
            for agent_name in agent_names(spec.name, spec.count):
                if agent_name in names:
                    raise reader.fail(
                        f"{path}.name",
                        f"agent name {agent_name!r} is already used by {names[agent_name]}",
                        hint="Give each group its own name.",
                    )
                names[agent_name] = path
            groups[kind].append(spec)
    if not names:
        raise reader.fail("agents", "the scenario has no agents; add at least one [[agents.KIND]]")
    return AgentsSpec(**{kind: tuple(specs) for kind, specs in groups.items()})


def _grid(raw: Mapping[str, Any], reader: _Reader, agents: AgentsSpec) -> GridSpec:
    """``[grid]`` and its ``[grid.buses]``: each named agent must exist, each bus be one of
    the network's."""
    table = reader.table(raw, "grid", "")
    v = reader.values(table, "grid", GRID_KEYS, ("buses",))
    buses = reader.table(table, "buses", "grid")
    names = {n for group in _groups(agents) for n in agent_names(group.name, group.count)}
    placed: dict[str, int] = {}
    known: set[int] | None = None
    for name, bus in buses.items():
        where = f"grid.buses.{name}"
        if name not in names:
            close = difflib.get_close_matches(name, sorted(names), n=1)
            raise reader.fail(
                where,
                "no agent of that name",
                hint=f"Did you mean {close[0]!r}?" if close else None,
            )
        if isinstance(bus, bool) or not isinstance(bus, int):
            raise reader.fail(where, f"expected a bus index (integer), got {type_name(bus)}")
        if known is None:
            from simulation.feeder import load_network

            known = {int(b) for b in load_network(v["network"]).bus.index}
        if bus not in known:
            raise reader.fail(
                where,
                f"bus {bus} is not a bus of {v['network']} (buses {min(known)}..{max(known)})",
            )
        placed[name] = bus
    return GridSpec(
        v["network"],
        v["margin"],
        v["transformer_fee_per_kwh"],
        v["line_fee_per_kwh"],
        v["transformer_kva"],
        v["curtail_unsold"],
        placed,
    )


def _groups(agents: AgentsSpec) -> tuple[Any, ...]:
    return agents.pv + agents.battery + agents.household + agents.data_center + agents.vpp


def parse_scenario(
    text: str, *, source: str = "<scenario>", intervals: int | None = None
) -> Scenario:
    """Parse and validate scenario TOML ``text``; ``intervals`` overrides the run length."""
    return scenario_from_table(read_toml(text, source=source), source=source, intervals=intervals)


def read_toml(text: str, *, source: str = "<scenario>") -> dict[str, Any]:
    """Scenario TOML ``text`` as nested tables, floats as exact :class:`Decimal` values
    (nothing checked beyond TOML syntax: :func:`scenario_from_table` checks the keys)."""
    try:
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"not valid TOML: {error}", source=source) from None


def scenario_from_table(
    raw: Mapping[str, Any], *, source: str = "<scenario>", intervals: int | None = None
) -> Scenario:
    """Check the tables :func:`read_toml` gives (or a changed copy of them: a sweep sets
    keys in them) and build the scenario; ``intervals`` overrides the run length."""
    reader = _Reader(source)
    reader.check_known(raw, "", TOP_LEVEL_KEYS)
    default_name = Path(source).stem if source and not source.startswith("<") else "scenario"
    meta = reader.values(
        {k: raw[k] for k in ("name", "description") if k in raw},
        "",
        meta_keys(default_name),
    )
    s = reader.values(reader.table(raw, "simulation", ""), "simulation", SIMULATION_KEYS)
    sim = SimulationSpec(s["seed"], s["intervals"], s["interval_seconds"], s["mechanism"], s["k"])
    m = reader.values(reader.table(raw, "market", ""), "market", MARKET_KEYS)
    market = MarketSpec(m["penalty_price_per_kwh"], m["tolerance_bps"])
    c = reader.values(reader.table(raw, "calendar", ""), "calendar", CALENDAR_KEYS)
    country, days = c["holidays"]
    calendar = CalendarSpec(c["start_date"], c["time_zone"], country, days)
    here = reader.values(reader.table(raw, "location", ""), "location", LOCATION_KEYS)
    site = LocationSpec(here["latitude"], here["longitude"], here["altitude_m"])
    w = reader.values(reader.table(raw, "weather", ""), "weather", WEATHER_KEYS)
    weather = WeatherSpec(
        w["mean_clearness"],
        w["persistence"],
        w["volatility"],
        w["temperature_c"],
        w["temperature_swing_c"],
    )
    agents = _agents(reader.table(raw, "agents", ""), reader, sim, site)
    grid = _grid(raw, reader, agents) if "grid" in raw else None
    scenario = Scenario(
        meta["name"],
        meta["description"],
        sim,
        market,
        weather,
        agents,
        calendar=calendar,
        location=site,
        source=source,
        grid=grid,
    )
    return scenario if intervals is None else scenario.with_intervals(intervals)


def load_scenario(path: str | Path, *, intervals: int | None = None) -> Scenario:
    """Read and validate the scenario file at ``path``; ``intervals`` overrides the length.

    Raises :class:`ScenarioError` when the file is missing, is not TOML, or holds an unknown
    key, a value of the wrong type or an impossible value; the error names the key.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError("no such scenario file", source=source) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"cannot read the scenario file: {error}", source=source) from None
    return parse_scenario(text, source=source, intervals=intervals)
