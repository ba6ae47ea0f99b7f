"""What a simulation runs: a validated scenario, as frozen specs in exact units.

A :class:`Scenario` holds the run's seed, length and clearing mechanism
(:class:`SimulationSpec`), its calendar (:class:`CalendarSpec`: start date, time zone,
holidays), the contract terms every committed interval snapshots (:class:`MarketSpec`), the
shared weather (:class:`WeatherSpec`), the default site (:class:`LocationSpec`) and the groups
of agents by kind (:class:`AgentsSpec`). A PV array is an :class:`ArraySpec` (its location,
tilt and azimuth); a site's consumption is a :class:`LoadSpec` (annual energy, standard load
profile and individual variation). Energies, powers, prices and money are exact integers in their
base units (Wh, W, token base units per Wh, token base units); only the physics' hours,
fractions and noise levels are floats.

Scenarios come from TOML files: :func:`simulation.scenario_file.load_scenario` reads one,
converting every key as :mod:`simulation.scenario_schema` documents it (with its default),
and raises :class:`ScenarioError` naming the offending key by its full path
(``agents.data_center[0].jobs[2].deadline_interval``). Unknown keys, wrong types and
impossible values (negative capacity, efficiency above 1, a deadline before its release, a
job that cannot finish at its power limit) are all refused; nothing is guessed or clipped.

Errors
------
::

    InputError                       ledger.errors
    └── ScenarioError                simulation.scenario   a scenario file is unreadable or invalid
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Literal

from ledger.errors import InputError
from simulation.profiles import SECONDS_PER_DAY
from simulation.scenario_schema import InvalidValue, intervals_value

# --------------------------------------------------------------------------- errors


class ScenarioError(InputError):
    """Raised when a scenario file cannot be read or holds an invalid value.

    ``key`` is the full path of the offending key (``agents.pv[1].peak_w``), or ``None``
    when the file as a whole is at fault (missing, not TOML). The message starts with the
    file and the key, so it is clear on its own.
    """

    code = "invalid_scenario"

    def __init__(
        self, message: str, *, key: str | None = None, source: str = "", hint: str | None = None
    ) -> None:
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.key = key
        self.source = source


# --------------------------------------------------------------------------- the specs

Mechanism = Literal["uniform", "pay-as-bid"]


@dataclass(frozen=True)
class SimulationSpec:
    """``[simulation]``: seed, length and market mechanism of the run."""

    seed: int
    intervals: int
    interval_seconds: int = 900
    mechanism: Mechanism = "uniform"
    k: tuple[int, int] = (1, 2)

    @property
    def intervals_per_day(self) -> int:
        """Intervals in one simulated day."""
        return SECONDS_PER_DAY // self.interval_seconds


@dataclass(frozen=True)
class MarketSpec:
    """``[market]``: the contract terms every committed interval snapshots."""

    penalty_price_per_wh: int
    tolerance_bps: int


@dataclass(frozen=True)
class CalendarSpec:
    """``[calendar]``: when the run starts, on which clock, and which days are holidays.

    Interval 0 starts at local midnight of ``start_date`` in ``time_zone`` (an IANA name);
    the intervals then follow each other in real time, across daylight-saving changes.
    Holidays (for the standard load profiles, which treat them as Sundays) are those of
    ``holiday_country`` (an ISO 3166 code, optionally with a subdivision: ``"DE"``,
    ``"DE-BY"``; ``None`` for none) plus the explicit ``holiday_dates``.
    """

    start_date: date = date(2026, 6, 1)
    time_zone: str = "Europe/Berlin"
    holiday_country: str | None = "DE"
    holiday_dates: tuple[date, ...] = ()


@dataclass(frozen=True)
class LocationSpec:
    """Where a site is: degrees north and east (WGS84) and metres above sea level."""

    latitude: float = 51.0
    longitude: float = 10.0
    altitude_m: float = 200.0


@dataclass(frozen=True)
class ArraySpec:
    """A PV array's place and orientation: ``tilt`` from horizontal and ``azimuth`` clockwise
    from north (180 = facing south), both in degrees. Its size is the agent's ``peak_w``."""

    location: LocationSpec = LocationSpec()
    tilt: float = 30.0
    azimuth: float = 180.0


@dataclass(frozen=True)
class LoadSpec:
    """A site's consumption: a standard load profile scaled to ``annual_wh``, individualised.

    ``profile`` is a BDEW standard load profile of demandlib (``h0``, ``h0_dyn``, ``g0`` ..
    ``g6``, ``l0`` .. ``l2``) or ``flat``. The site's habits are that profile shifted by a
    random time of at most ``shift_minutes`` either way (drawn once per site); its actual
    load is that times a persistent multiplicative noise (AR(1) with ``persistence`` per
    interval and relative standard deviation ``noise``). See :mod:`simulation.load`.
    """

    annual_wh: int = 0
    profile: str = "h0"
    noise: float = 0.1
    persistence: float = 0.8
    shift_minutes: float = 30.0


@dataclass(frozen=True)
class WeatherSpec:
    """``[weather]``: the shared AR(1) cloudiness process and the seasonal air temperature."""

    mean_clearness: float = 0.75
    persistence: float = 0.9
    volatility: float = 0.08
    temperature_c: float = 10.0
    temperature_swing_c: float = 8.0


@dataclass(frozen=True)
class StrategySpec:
    """Price strategy of storage: absolute limits and the rolling percentile window."""

    charge_price_per_wh: int
    discharge_price_per_wh: int
    price_window: int
    low_percentile: int
    high_percentile: int


@dataclass(frozen=True)
class PvSpec:
    """``[[agents.pv]]``: a group of PV prosumers."""

    name: str
    count: int
    collateral_base_units: int | None
    peak_w: int
    array: ArraySpec
    load: LoadSpec
    forecast_error: float
    floor_price_per_wh: int
    cap_price_per_wh: int


@dataclass(frozen=True)
class BatterySpec:
    """``[[agents.battery]]``: a group of batteries, optionally with PV and load."""

    name: str
    count: int
    collateral_base_units: int | None
    capacity_wh: int
    max_power_w: int
    round_trip_efficiency: float
    initial_soc: float
    min_soc: float
    max_soc: float
    pv_peak_w: int
    array: ArraySpec
    load: LoadSpec
    forecast_error: float
    floor_price_per_wh: int
    cap_price_per_wh: int
    strategy: StrategySpec


@dataclass(frozen=True)
class HouseholdSpec:
    """``[[agents.household]]``: a group of household consumers."""

    name: str
    count: int
    collateral_base_units: int | None
    load: LoadSpec
    cap_price_per_wh: int


@dataclass(frozen=True)
class JobSpec:
    """One deferrable batch job; ``deadline_interval`` is inclusive."""

    name: str
    energy_wh: int
    release_interval: int
    deadline_interval: int
    max_power_w: int


@dataclass(frozen=True)
class DataCenterSpec:
    """``[[agents.data_center]]``: a group of data centers sharing one job list each."""

    name: str
    count: int
    collateral_base_units: int | None
    base_load_w: int
    base_load_noise: float
    max_price_per_wh: int
    flex_prices_per_wh: tuple[int, ...]
    jobs: tuple[JobSpec, ...]


@dataclass(frozen=True)
class VppSpec:
    """``[[agents.vpp]]``: a group of VPP aggregators, each bundling ``homes`` members."""

    name: str
    count: int
    collateral_base_units: int | None
    homes: int
    pv_homes: int
    battery_homes: int
    pv_peak_w: int
    battery_capacity_wh: int
    battery_max_power_w: int
    round_trip_efficiency: float
    array: ArraySpec
    load: LoadSpec
    forecast_error: float
    member_spread: float
    floor_price_per_wh: int
    cap_price_per_wh: int
    strategy: StrategySpec


@dataclass(frozen=True)
class AgentsSpec:
    """``[agents]``: every group, by kind, in file order."""

    pv: tuple[PvSpec, ...] = ()
    battery: tuple[BatterySpec, ...] = ()
    household: tuple[HouseholdSpec, ...] = ()
    data_center: tuple[DataCenterSpec, ...] = ()
    vpp: tuple[VppSpec, ...] = ()

    @property
    def count(self) -> int:
        """Number of agents over all groups."""
        groups: tuple[Any, ...] = self.pv + self.battery + self.household + self.data_center
        return sum(g.count for g in groups + self.vpp)


@dataclass(frozen=True)
class GridSpec:
    """``[grid]``: the pandapower network the agents sit on, and what the market sees of it
    (:mod:`simulation.feeder`). Fees in base units per Wh; ``margin`` is the fraction of
    every rating withheld from the market."""

    network: str
    margin: float = 0.1
    transformer_fee_per_wh: int = 0
    line_fee_per_wh: int = 0
    transformer_kva: int | None = None
    """Replaces the bundled transformers' rating (to study a tighter one)."""
    curtail_unsold: bool = True
    """A site's export beyond what it sold is curtailed (the operator's export limit)."""
    buses: Mapping[str, int] = field(default_factory=dict)
    """Agents placed explicitly (name -> bus index); the rest are spread over load buses."""


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. Build it with :func:`~simulation.scenario_file.load_scenario` or
    :func:`~simulation.scenario_file.parse_scenario`."""

    name: str
    description: str
    simulation: SimulationSpec
    market: MarketSpec
    weather: WeatherSpec
    agents: AgentsSpec
    calendar: CalendarSpec = CalendarSpec()
    location: LocationSpec = LocationSpec()
    source: str = field(default="", compare=False)
    grid: GridSpec | None = None
    """``[grid]``: the feeder the agents sit on; None for one node without fees."""

    def with_intervals(self, intervals: int) -> Scenario:
        """The same scenario run for ``intervals`` intervals (the ``--intervals`` override).

        A shorter run observes only part of the scenario: jobs whose deadline falls after the
        run stay open at its end and are reported so; jobs released after it never start.
        """
        try:
            checked = intervals_value(intervals)
        except InvalidValue as problem:
            raise ScenarioError(
                problem.message, key="simulation.intervals", source=self.source
            ) from None
        return replace(self, simulation=replace(self.simulation, intervals=checked))


def agent_names(name: str, count: int) -> list[str]:
    """Names of a group's agents: ``name`` alone, or ``name-01`` .. ``name-NN``."""
    if count == 1:
        return [name]
    width = len(str(count))
    return [f"{name}-{i + 1:0{width}d}" for i in range(count)]
