"""Scenario files: what a simulation runs, read from TOML and checked before anything runs.

:func:`load_scenario` reads a TOML file with :mod:`tomllib` and returns a frozen
:class:`Scenario`, or raises :class:`ScenarioError` naming the offending key by its full path
(``agents.data_center[0].jobs[2].deadline_interval``). Unknown keys, wrong types and
impossible values (negative capacity, efficiency above 1, a deadline before its release, a
job that cannot finish at its power limit) are all refused; nothing is guessed or clipped.

Numbers: TOML floats are read as exact :class:`~decimal.Decimal` values (never binary
floats), so ``floor_price_per_kwh = 0.08`` and ``floor_price_per_kwh = "0.08"`` mean exactly
8 cents. Prices are in currency per kWh and become integer token base units per Wh
(``0.25`` -> ``250_000_000_000_000``); energies are in kWh and become integer Wh; money is
in currency (tokens) and becomes integer base units (18 decimals). A value finer than the
base unit (``0.0005`` kWh, ``1e-16`` currency/kWh) is an error, never rounded. The exact
conversions are those of :mod:`ledger.units` (DESIGN §3).

Schema
------
Top level: ``name`` (string, default the file name), ``description`` (string, default
empty), and the tables below. Every key not marked "required" has the default shown.

``[simulation]``
    ``seed`` (required, int >= 0): seeds every random stream; the same seed gives the same
    run. ``intervals`` (required, int 1..100000): delivery intervals to simulate.
    ``interval_seconds`` (900): interval length; must divide a day. ``mechanism``
    (``"uniform"``): ``"uniform"`` or ``"pay-as-bid"``. ``k`` (``"1/2"``): the k of the
    k-double auction as ``"NUM/DEN"``, ``0 <= NUM <= DEN``.
``[market]``
    ``penalty_price_per_kwh`` ("0.50"): what a seller pays per kWh of shortfall beyond the
    tolerance. ``tolerance_bps`` (500): shortfall tolerance in basis points of a trade's
    quantity (0..10000).
``[weather]``
    ``sunrise_hour`` (6), ``sunset_hour`` (20): daylight window in hours after midnight.
    ``mean_clearness`` (0.75): long-run clear-sky index (0..1). ``persistence`` (0.9): AR(1)
    coefficient of cloudiness per interval (0 <= x < 1). ``volatility`` (0.08): standard
    deviation of the AR(1) shock (0..1). One weather process is shared by all PV.

Every ``[[agents.KIND]]`` table describes a group of ``count`` (1, int 1..10000) identical
agents named ``name`` (the kind, or kind plus group number for later groups), ``name-1`` ..
``name-N`` when ``count > 1``; ``collateral`` (computed): currency each agent deposits at the
start (by default enough to lock every order it could place in every interval of the run).

``[[agents.pv]]``: rooftop PV prosumer
    ``peak_w`` (required, int > 0), ``load_kwh_per_day`` ("8"), ``load_profile``
    (``"residential"``, ``"commercial"`` or ``"flat"``), ``load_noise`` (0.1, relative
    standard deviation of the actual load, 0..1), ``forecast_error`` (0.15, relative standard
    deviation of the PV forecast error, 0..1), ``floor_price_per_kwh`` ("0.06", lowest price
    it sells its surplus at), ``cap_price_per_kwh`` ("0.30", highest price it pays for its
    deficit).
``[[agents.battery]]``: battery, alone or behind a PV roof
    ``capacity_kwh`` (required, > 0), ``max_power_w`` (required, int > 0),
    ``round_trip_efficiency`` (0.9, 0 < x <= 1), ``initial_soc`` (0.5), ``min_soc`` (0.1),
    ``max_soc`` (0.95) as fractions of capacity with ``min <= initial <= max``,
    ``pv_peak_w`` (0 = no PV), ``load_kwh_per_day`` ("0"), ``load_profile``, ``load_noise``,
    ``forecast_error``, ``floor_price_per_kwh``, ``cap_price_per_kwh`` as for PV, and the
    strategy: ``charge_price_per_kwh`` ("0.12", most it pays to charge),
    ``discharge_price_per_kwh`` ("0.20", least it sells stored energy for; above the charge
    price), ``price_window`` (96, past intervals it looks at), ``low_percentile`` (25) and
    ``high_percentile`` (75) of those prices (``0 <= low < high <= 100``).
``[[agents.household]]``: household consumer
    ``load_kwh_per_day`` (required, > 0), ``load_profile``, ``load_noise``,
    ``cap_price_per_kwh`` ("0.30", its retail price cap).
``[[agents.data_center]]``: data center with deferrable batch work
    ``base_load_w`` (required, int >= 0), ``base_load_noise`` (0.03),
    ``max_price_per_kwh`` ("0.40", bid for base load and must-run work),
    ``flex_prices_per_kwh`` (["0.06", "0.09", "0.12", "0.16"], ascending, below the max
    price: the steps of its price-sensitive bid for deferrable work), and
    ``[[agents.data_center.jobs]]`` each with ``name`` (``job-N``), ``energy_kwh``
    (required, > 0), ``release_interval`` (required, >= 0), ``deadline_interval`` (required,
    ``release <= deadline < simulation.intervals``, inclusive), ``max_power_w`` (required,
    int > 0); the energy must fit between release and deadline at ``max_power_w``.
``[[agents.vpp]]``: virtual power plant aggregating small homes
    ``homes`` (required, int >= 1), ``pv_homes`` (0..homes), ``battery_homes`` (0..homes),
    ``pv_peak_w`` (required if ``pv_homes > 0``), ``battery_capacity_kwh`` and
    ``battery_max_power_w`` (required if ``battery_homes > 0``), ``round_trip_efficiency``,
    ``load_kwh_per_day`` ("6", per home), ``load_profile``, ``load_noise``,
    ``forecast_error`` (per member), ``member_spread`` (0.2, relative spread of members'
    sizes, 0..0.9), and the price and strategy keys of a battery.

Errors
------
::

    InputError                       ledger.errors
    └── ScenarioError                simulation.scenario   a scenario file is unreadable or invalid
"""

from __future__ import annotations

import difflib
import itertools
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from ledger.errors import InputError
from ledger.units import (
    PRICE_PER_WH_PER_CURRENCY_PER_KWH,
    base_units_from_currency,
    price_per_wh_from_currency_per_kwh,
    wh_from_kwh,
)
from market.orders import MAX_PRICE_PER_WH, MIN_PRICE_PER_WH
from simulation.profiles import LOAD_SHAPES, SECONDS_PER_DAY, energy_wh_at_power

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


class _Invalid(Exception):
    """A converter's complaint about one value; the reader adds the key path and source."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


# --------------------------------------------------------------------------- exact units

_DECIMAL_TEXT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?")


def _exact(value: object) -> Fraction:
    """``value`` (int, Decimal, or decimal string) as an exact fraction."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise _Invalid(f"expected a number, got {_type_name(value)} {value!r}")
    if isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value.strip()):
            raise _Invalid(f"{value!r} is not a decimal number")
        value = Decimal(value.strip())
    if isinstance(value, Decimal) and not value.is_finite():
        raise _Invalid(f"{value} is not a finite number")
    return Fraction(value)


def _units(convert: Callable[[Any], int], what: str, value: object) -> int:
    """Run a :mod:`ledger.units` conversion, turning its InputError into a key complaint."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise _Invalid(f"expected a number, got {_type_name(value)} {value!r}")
    try:
        return int(convert(value))
    except InputError as error:
        raise _Invalid(error.message.removeprefix(f"{what}: "), error.hint) from None


# --------------------------------------------------------------------------- the parsed scenario

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
class WeatherSpec:
    """``[weather]``: daylight window and the shared AR(1) cloudiness process."""

    sunrise_hour: float
    sunset_hour: float
    mean_clearness: float
    persistence: float
    volatility: float


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
    load_wh_per_day: int
    load_profile: str
    load_noise: float
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
    load_wh_per_day: int
    load_profile: str
    load_noise: float
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
    load_wh_per_day: int
    load_profile: str
    load_noise: float
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
    load_wh_per_day: int
    load_profile: str
    load_noise: float
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
class Scenario:
    """A validated scenario. Build it with :func:`load_scenario` or :func:`parse_scenario`."""

    name: str
    description: str
    simulation: SimulationSpec
    market: MarketSpec
    weather: WeatherSpec
    agents: AgentsSpec
    source: str = field(default="", compare=False)

    def with_intervals(self, intervals: int) -> Scenario:
        """The same scenario run for ``intervals`` intervals (the ``--intervals`` override).

        A shorter run observes only part of the scenario: jobs whose deadline falls after the
        run stay open at its end and are reported so; jobs released after it never start.
        """
        try:
            checked = _int(1, MAX_INTERVALS)(intervals)
        except _Invalid as problem:
            raise ScenarioError(
                problem.message, key="simulation.intervals", source=self.source
            ) from None
        return replace(self, simulation=replace(self.simulation, intervals=checked))


# --------------------------------------------------------------------------- converters

MAX_INTERVALS = 100_000
"""Longest run in intervals (about 2.8 years of 15-minute intervals)."""
MAX_COUNT = 10_000
"""Most agents in one group."""
MAX_POWER_W = 10**12
"""Largest power in W (1 TW) any agent may have."""
MAX_ENERGY_WH = 10**13
"""Largest energy in Wh (10 TWh) any key may hold."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
_REQUIRED: Any = object()


def _type_name(value: object) -> str:
    names = {bool: "boolean", int: "integer", str: "string", Decimal: "number", list: "array"}
    if isinstance(value, dict):
        return "table"
    return names.get(type(value), type(value).__name__)


def _int(low: int, high: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected an integer, got {_type_name(value)} {value!r}")
        if not low <= value <= high:
            raise _Invalid(f"{value} is out of range; it must be between {low} and {high}")
        return value

    return convert


def _real(
    low: int | str, high: int | str, *, low_open: bool = False, high_open: bool = False
) -> Callable[[object], float]:
    """A plain number (int or TOML float) in a range; becomes a float for the physics."""
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    bottom, top = Fraction(low), Fraction(high)

    def convert(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise _Invalid(f"expected a number, got {_type_name(value)} {value!r}")
        exact = _exact(value)
        too_low = exact <= bottom if low_open else exact < bottom
        too_high = exact >= top if high_open else exact > top
        if too_low or too_high:
            raise _Invalid(f"{value} is out of range; it must be in {lo}{low}, {high}{hi}")
        return float(exact)

    return convert


def _price(value: object) -> int:
    price = _units(price_per_wh_from_currency_per_kwh, "price", value)
    if not MIN_PRICE_PER_WH <= price <= MAX_PRICE_PER_WH:
        raise _Invalid(
            f"{value} currency/kWh is out of range; a price must be positive and at most "
            f"{Fraction(MAX_PRICE_PER_WH, PRICE_PER_WH_PER_CURRENCY_PER_KWH)} currency/kWh"
        )
    return price


def _energy(*, positive: bool) -> Callable[[object], int]:
    def convert(value: object) -> int:
        wh = _units(wh_from_kwh, "energy", value)
        if wh < 0 or (positive and wh == 0):
            raise _Invalid(f"{value} kWh is impossible; it must be {'>' if positive else '>='} 0")
        if wh > MAX_ENERGY_WH:
            raise _Invalid(f"{value} kWh is out of range (at most {MAX_ENERGY_WH // 1000} kWh)")
        return wh

    return convert


def _money(value: object) -> int:
    amount = _units(base_units_from_currency, "amount", value)
    if amount < 0:
        raise _Invalid(f"{value} is impossible; a deposit cannot be negative")
    return amount


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_type_name(value)} {value!r}")
    return value


def _name(value: object) -> str:
    text = _string(value)
    if not _NAME.fullmatch(text):
        raise _Invalid(
            f"{text!r} is not a valid name; use 1 to 40 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return text


def _choice(*options: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        text = _string(value)
        if text not in options:
            raise _Invalid(f"{text!r} is not one of {', '.join(map(repr, options))}")
        return text

    return convert


def _interval_seconds(value: object) -> int:
    seconds = _int(60, SECONDS_PER_DAY)(value)
    if SECONDS_PER_DAY % seconds:
        raise _Invalid(f"{seconds} s does not divide a day (86400 s); try 900, 1800 or 3600")
    return seconds


def _k(value: object) -> tuple[int, int]:
    text = _string(value)
    match = re.fullmatch(r"\s*([0-9]{1,6})\s*/\s*([0-9]{1,6})\s*", text)
    if not match:
        raise _Invalid(f'{text!r} is not a fraction; write it as "NUM/DEN" such as "1/2"')
    num, den = int(match.group(1)), int(match.group(2))
    if den == 0 or num > den:
        raise _Invalid(f"{text!r} is impossible; k needs 0 <= NUM <= DEN and DEN > 0")
    return num, den


def _price_steps(value: object) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"expected an array of prices, got {_type_name(value)} {value!r}")
    if not value:
        raise _Invalid("needs at least one price step")
    steps: list[int] = []
    for i, item in enumerate(value):
        try:
            steps.append(_price(item))
        except _Invalid as problem:
            raise _Invalid(f"step {i}: {problem.message}") from None
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise _Invalid("price steps must be strictly ascending")
    return tuple(steps)


# --------------------------------------------------------------------------- the reader


@dataclass(frozen=True)
class Key:
    """One documented key of a scenario table: its converter, default and meaning."""

    name: str
    convert: Callable[[object], Any]
    default: Any
    doc: str


def _key(name: str, convert: Callable[[object], Any], default: Any, doc: str) -> Key:
    return Key(name, convert, default, doc)


_PROFILE = _choice(*LOAD_SHAPES)
_FRACTION = _real(0, 1)

SIMULATION_KEYS = (
    _key("seed", _int(0, 2**64 - 1), _REQUIRED, "seed of every random stream"),
    _key("intervals", _int(1, MAX_INTERVALS), _REQUIRED, "delivery intervals to simulate"),
    _key("interval_seconds", _interval_seconds, 900, "interval length in s; divides a day"),
    _key("mechanism", _choice("uniform", "pay-as-bid"), "uniform", "clearing mechanism"),
    _key("k", _k, "1/2", "k of the k-double auction as NUM/DEN"),
)
MARKET_KEYS = (
    _key("penalty_price_per_kwh", _price, "0.50", "shortfall penalty, currency/kWh"),
    _key("tolerance_bps", _int(0, 10_000), 500, "shortfall tolerance, bps of quantity"),
)
WEATHER_KEYS = (
    _key("sunrise_hour", _real(0, 24), 6, "sunrise, hours after midnight"),
    _key("sunset_hour", _real(0, 24), 20, "sunset, hours after midnight"),
    _key("mean_clearness", _FRACTION, Decimal("0.75"), "long-run clear-sky index"),
    _key("persistence", _real(0, 1, high_open=True), Decimal("0.9"), "AR(1) coefficient"),
    _key("volatility", _FRACTION, Decimal("0.08"), "AR(1) shock standard deviation"),
)
_GROUP_KEYS = (
    _key("name", _name, None, "agent name (prefix when count > 1)"),
    _key("count", _int(1, MAX_COUNT), 1, "identical agents in the group"),
    _key("collateral", _money, None, "deposit per agent in currency"),
)
_LOAD_KEYS = (
    _key("load_profile", _PROFILE, "residential", "daily load shape"),
    _key("load_noise", _FRACTION, Decimal("0.1"), "relative s.d. of actual load"),
)
_PV_PRICE_KEYS = (
    _key("floor_price_per_kwh", _price, "0.06", "lowest price for surplus, currency/kWh"),
    _key("cap_price_per_kwh", _price, "0.30", "highest price for deficit, currency/kWh"),
)
_STRATEGY_KEYS = (
    _key("charge_price_per_kwh", _price, "0.12", "most it pays to charge, currency/kWh"),
    _key("discharge_price_per_kwh", _price, "0.20", "least it sells for, currency/kWh"),
    _key("price_window", _int(1, MAX_INTERVALS), 96, "past intervals it looks at"),
    _key("low_percentile", _int(0, 100), 25, "percentile below which it charges"),
    _key("high_percentile", _int(0, 100), 75, "percentile above which it sells"),
)
PV_KEYS = (
    *_GROUP_KEYS,
    _key("peak_w", _int(1, MAX_POWER_W), _REQUIRED, "PV peak power in W"),
    _key("load_kwh_per_day", _energy(positive=False), "8", "own load per day, kWh"),
    *_LOAD_KEYS,
    _key("forecast_error", _FRACTION, Decimal("0.15"), "relative s.d. of PV forecast error"),
    *_PV_PRICE_KEYS,
)
BATTERY_KEYS = (
    *_GROUP_KEYS,
    _key("capacity_kwh", _energy(positive=True), _REQUIRED, "usable capacity, kWh"),
    _key("max_power_w", _int(1, MAX_POWER_W), _REQUIRED, "charge/discharge power limit, W"),
    _key("round_trip_efficiency", _real(0, 1, low_open=True), Decimal("0.9"), "0 < x <= 1"),
    _key("initial_soc", _FRACTION, Decimal("0.5"), "state of charge at start, fraction"),
    _key("min_soc", _FRACTION, Decimal("0.1"), "lowest state of charge, fraction"),
    _key("max_soc", _FRACTION, Decimal("0.95"), "highest state of charge, fraction"),
    _key("pv_peak_w", _int(0, MAX_POWER_W), 0, "PV peak power behind the meter, W"),
    _key("load_kwh_per_day", _energy(positive=False), "0", "own load per day, kWh"),
    *_LOAD_KEYS,
    _key("forecast_error", _FRACTION, Decimal("0.15"), "relative s.d. of PV forecast error"),
    *_PV_PRICE_KEYS,
    *_STRATEGY_KEYS,
)
HOUSEHOLD_KEYS = (
    *_GROUP_KEYS,
    _key("load_kwh_per_day", _energy(positive=True), _REQUIRED, "load per day, kWh"),
    *_LOAD_KEYS,
    _key("cap_price_per_kwh", _price, "0.30", "retail price cap, currency/kWh"),
)
JOB_KEYS = (
    _key("name", _name, None, "job name"),
    _key("energy_kwh", _energy(positive=True), _REQUIRED, "energy the job needs, kWh"),
    _key("release_interval", _int(0, MAX_INTERVALS), _REQUIRED, "first interval it may run"),
    _key("deadline_interval", _int(0, MAX_INTERVALS), _REQUIRED, "last interval it may run"),
    _key("max_power_w", _int(1, MAX_POWER_W), _REQUIRED, "power limit of the job, W"),
)
DATA_CENTER_KEYS = (
    *_GROUP_KEYS,
    _key("base_load_w", _int(0, MAX_POWER_W), _REQUIRED, "non-deferrable load, W"),
    _key("base_load_noise", _FRACTION, Decimal("0.03"), "relative s.d. of base load"),
    _key("max_price_per_kwh", _price, "0.40", "bid for base and must-run load"),
    _key(
        "flex_prices_per_kwh",
        _price_steps,
        ["0.06", "0.09", "0.12", "0.16"],
        "price steps of the bid for deferrable work",
    ),
)
VPP_KEYS = (
    *_GROUP_KEYS,
    _key("homes", _int(1, MAX_COUNT), _REQUIRED, "member homes"),
    _key("pv_homes", _int(0, MAX_COUNT), 0, "members with PV"),
    _key("battery_homes", _int(0, MAX_COUNT), 0, "members with a battery"),
    _key("pv_peak_w", _int(0, MAX_POWER_W), 0, "PV peak power per member, W"),
    _key("battery_capacity_kwh", _energy(positive=False), "0", "battery per member, kWh"),
    _key("battery_max_power_w", _int(0, MAX_POWER_W), 0, "battery power per member, W"),
    _key("round_trip_efficiency", _real(0, 1, low_open=True), Decimal("0.9"), "0 < x <= 1"),
    _key("load_kwh_per_day", _energy(positive=False), "6", "load per member per day, kWh"),
    *_LOAD_KEYS,
    _key("forecast_error", _FRACTION, Decimal("0.15"), "relative s.d. of member PV forecast"),
    _key("member_spread", _real(0, "0.9"), Decimal("0.2"), "spread of member sizes"),
    *_PV_PRICE_KEYS,
    *_STRATEGY_KEYS,
)
AGENT_KINDS: dict[str, tuple[Key, ...]] = {
    "pv": PV_KEYS,
    "battery": BATTERY_KEYS,
    "household": HOUSEHOLD_KEYS,
    "data_center": DATA_CENTER_KEYS,
    "vpp": VPP_KEYS,
}
"""The kinds of ``[[agents.KIND]]`` tables and their keys."""
TOP_LEVEL_KEYS = ("name", "description", "simulation", "market", "weather", "agents")
"""Keys allowed at the top of a scenario file."""


class _Reader:
    """Reads a TOML document, tracking the key path for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str, hint: str | None = None) -> ScenarioError:
        return ScenarioError(message, key=path, source=self.source, hint=hint)

    def check_known(self, raw: Mapping[str, Any], path: str, allowed: tuple[str, ...]) -> None:
        for name in raw:
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
            raise self.fail(where, f"expected a table, got {_type_name(value)}")
        return value

    def tables(self, raw: Mapping[str, Any], name: str, path: str) -> list[dict[str, Any]]:
        value = raw.get(name, [])
        where = f"{path}.{name}"
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(
                where,
                f"expected an array of tables ([[{where}]]), got {_type_name(value)}",
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
                if key.default is _REQUIRED:
                    raise self.fail(where, "is required but missing")
                default = key.default
                out[key.name] = None if default is None else key.convert(default)
                continue
            try:
                out[key.name] = key.convert(raw[key.name])
            except _Invalid as problem:
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


def _pv(v: dict[str, Any], path: str, reader: _Reader, sim: SimulationSpec) -> PvSpec:
    return PvSpec(
        name=v["name"],
        count=v["count"],
        collateral_base_units=v["collateral"],
        peak_w=v["peak_w"],
        load_wh_per_day=v["load_kwh_per_day"],
        load_profile=v["load_profile"],
        load_noise=v["load_noise"],
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
        load_wh_per_day=v["load_kwh_per_day"],
        load_profile=v["load_profile"],
        load_noise=v["load_noise"],
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
        load_wh_per_day=v["load_kwh_per_day"],
        load_profile=v["load_profile"],
        load_noise=v["load_noise"],
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
        load_wh_per_day=v["load_kwh_per_day"],
        load_profile=v["load_profile"],
        load_noise=v["load_noise"],
        forecast_error=v["forecast_error"],
        member_spread=v["member_spread"],
        floor_price_per_wh=v["floor_price_per_kwh"],
        cap_price_per_wh=v["cap_price_per_kwh"],
        strategy=_strategy(v, path, reader),
    )


def _agents(raw: Mapping[str, Any], reader: _Reader, sim: SimulationSpec) -> AgentsSpec:
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


def agent_names(name: str, count: int) -> list[str]:
    """Names of a group's agents: ``name`` alone, or ``name-01`` .. ``name-NN``."""
    if count == 1:
        return [name]
    width = len(str(count))
    return [f"{name}-{i + 1:0{width}d}" for i in range(count)]


def parse_scenario(
    text: str, *, source: str = "<scenario>", intervals: int | None = None
) -> Scenario:
    """Parse and validate scenario TOML ``text``; ``intervals`` overrides the run length."""
    reader = _Reader(source)
    try:
        raw = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"not valid TOML: {error}", source=source) from None
    reader.check_known(raw, "", TOP_LEVEL_KEYS)
    default_name = Path(source).stem if source and not source.startswith("<") else "scenario"
    meta = reader.values(
        {k: raw[k] for k in ("name", "description") if k in raw},
        "",
        (_key("name", _string, default_name, ""), _key("description", _string, "", "")),
    )
    s = reader.values(reader.table(raw, "simulation", ""), "simulation", SIMULATION_KEYS)
    sim = SimulationSpec(s["seed"], s["intervals"], s["interval_seconds"], s["mechanism"], s["k"])
    m = reader.values(reader.table(raw, "market", ""), "market", MARKET_KEYS)
    market = MarketSpec(m["penalty_price_per_kwh"], m["tolerance_bps"])
    w = reader.values(reader.table(raw, "weather", ""), "weather", WEATHER_KEYS)
    if w["sunrise_hour"] >= w["sunset_hour"]:
        raise reader.fail("weather.sunset_hour", f"{w['sunset_hour']} is not after sunrise_hour")
    weather = WeatherSpec(
        w["sunrise_hour"], w["sunset_hour"], w["mean_clearness"], w["persistence"], w["volatility"]
    )
    agents = _agents(reader.table(raw, "agents", ""), reader, sim)
    scenario = Scenario(meta["name"], meta["description"], sim, market, weather, agents, source)
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
