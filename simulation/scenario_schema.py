"""The scenario file's schema: every key, its converter, its default and its meaning.

A scenario is a TOML file; :mod:`simulation.scenario_file` reads it with these tables and
builds the :class:`~simulation.scenario.Scenario` it describes. Each key of each table is a
:class:`Key` whose converter turns one TOML value into the exact value the specs hold, or
raises :class:`InvalidValue`, which the reader turns into a
:class:`~simulation.scenario.ScenarioError` naming the key by its full path. Checks that
involve several keys (a deadline before its release, a job that cannot finish at its power
limit) are the reader's.

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
``[calendar]``
    ``start_date`` ("2026-06-01", a TOML date or an ISO string): interval 0 starts at local
    midnight of that day. ``time_zone`` ("Europe/Berlin", an IANA name): the run's clock;
    the intervals follow each other in real time across daylight-saving changes.
    ``holidays`` ("DE"): a country code of the ``holidays`` package, optionally with a
    subdivision ("DE-BY"), or an array of dates (``[]`` for none); the standard load profiles
    count them as Sundays.
``[location]``
    The default site of every PV array: ``latitude`` (51, degrees north, -90..90),
    ``longitude`` (10, degrees east, -180..180), ``altitude_m`` (200, metres, -500..9000).
    A group overrides any of them with the same keys.
``[weather]``
    ``mean_clearness`` (0.75): long-run clear-sky index (0..1). ``persistence`` (0.9): AR(1)
    coefficient of cloudiness per interval (0 <= x < 1). ``volatility`` (0.08): standard
    deviation of the AR(1) shock (0..1). One weather process is shared by all PV.
    ``temperature_c`` (10, -50..50) and ``temperature_swing_c`` (8, 0..40): the annual mean
    air temperature and its seasonal amplitude (warmest in mid-July north of the equator),
    for the modules' temperature.

PV (``[[agents.pv]]``, and the ``pv_`` keys of batteries and VPPs) comes from pvlib: clear-sky
irradiance at the site, on the array's plane, through a PVWatts model, times the shared
clouds (:mod:`simulation.solar`). Loads follow a BDEW standard load profile of demandlib
scaled to the annual energy, with each site's own time shift and persistent noise
(:mod:`simulation.load`). Load keys: ``load_profile`` ("h0"; "h0_dyn", "g0".."g6",
"l0".."l2" or "flat"), ``load_noise`` (0.1, relative standard deviation of the actual load
around the site's profile, 0..1), ``load_persistence`` (0.8, AR(1) coefficient of that noise
per interval, 0 <= x < 1), ``load_shift_minutes`` (30, the site's habits run up to that much
earlier or later than the standard profile, 0..180).

``[grid]`` (optional; :mod:`simulation.feeder`, runs with ``--ledger memory`` only)
    ``network`` (required): a low-voltage network pandapower bundles (``kerber_dorfnetz``,
    ``kerber_landnetz_kabel_1``, ..., ``dickert_lv_network``, ``cigre_network_lv``); its
    buses are the market's nodes, rooted at the external grid. ``margin`` (0.1, 0 <= x <
    1): fraction of every line and transformer rating withheld from the market's caps.
    ``transformer_fee_per_kwh`` and ``line_fee_per_kwh`` ("0"): fees per kWh of net flow
    across an edge of that grid level. ``transformer_kva`` (the network's): replaces the
    transformers' rating, in the caps and the power flow. ``curtail_unsold`` (true): a site
    exports at most what it sold net of what it bought; the rest of its generation is
    curtailed. ``[grid.buses]``: agent name = bus index of the network; the other agents
    are spread over its load buses in a seeded order.

Keys of earlier files are refused with a hint: ``load_kwh_per_day`` (write
``load_kwh_per_year``, the hint gives 365 times the old value), ``load_profile =
"residential"`` (``"h0"``) or ``"commercial"`` (``"g1"`` or ``"g0"``), ``[weather]``
``sunrise_hour`` and ``sunset_hour`` (the sun comes from ``[location]``).

Every ``[[agents.KIND]]`` table describes a group of ``count`` (1, int 1..10000) identical
agents named ``name`` (the kind, or kind plus group number for later groups), ``name-1`` ..
``name-N`` when ``count > 1``; ``collateral`` (computed): currency each agent deposits at the
start (by default enough to lock every order it could place in every interval of the run).

``[[agents.pv]]``: rooftop PV prosumer
    ``peak_w`` (required, int > 0, the array's nameplate DC power in Wp), ``tilt`` (30,
    degrees from horizontal, 0..90), ``azimuth`` (180, degrees clockwise from north, 0 <= x
    < 360), ``latitude``, ``longitude``, ``altitude_m`` (those of ``[location]``),
    ``load_kwh_per_year`` ("3000"), ``load_profile``, ``load_noise``, ``load_persistence``,
    ``load_shift_minutes`` (see above), ``forecast_error`` (0.15, relative standard
    deviation of the PV forecast error, 0..1), ``floor_price_per_kwh`` ("0.06", lowest price
    it sells its surplus at), ``cap_price_per_kwh`` ("0.30", highest price it pays for its
    deficit).
``[[agents.battery]]``: battery, alone or behind a PV roof
    ``capacity_kwh`` (required, > 0), ``max_power_w`` (required, int > 0),
    ``round_trip_efficiency`` (0.9, 0 < x <= 1), ``initial_soc`` (0.5), ``min_soc`` (0.1),
    ``max_soc`` (0.95) as fractions of capacity with ``min <= initial <= max``,
    ``pv_peak_w`` (0 = no PV), ``pv_tilt`` (30), ``pv_azimuth`` (180), ``latitude``,
    ``longitude``, ``altitude_m``, ``load_kwh_per_year`` ("0"), the load keys,
    ``forecast_error``, ``floor_price_per_kwh``, ``cap_price_per_kwh`` as for PV, and the
    strategy: ``charge_price_per_kwh`` ("0.12", most it pays to charge),
    ``discharge_price_per_kwh`` ("0.20", least it sells stored energy for; above the charge
    price), ``price_window`` (96, past intervals it looks at), ``low_percentile`` (25) and
    ``high_percentile`` (75) of those prices (``0 <= low < high <= 100``).
``[[agents.household]]``: household consumer
    ``load_kwh_per_year`` (required, > 0), the load keys, ``cap_price_per_kwh`` ("0.30",
    its retail price cap). Shops, offices and bakeries are households on a business profile.
``[[agents.data_center]]``: data center with deferrable batch work
    ``base_load_w`` (required, int >= 0; a flat load of its own model, no standard load
    profile), ``base_load_noise`` (0.03),
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
    ``pv_tilt``, ``pv_azimuth``, ``latitude``, ``longitude``, ``altitude_m`` as for a battery,
    ``load_kwh_per_year`` ("2200", per home), the load keys,
    ``forecast_error`` (per member), ``member_spread`` (0.2, relative spread of members'
    sizes, 0..0.9), and the price and strategy keys of a battery.
"""

from __future__ import annotations

import difflib
import itertools
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ledger.errors import InputError
from ledger.units import (
    PRICE_PER_WH_PER_CURRENCY_PER_KWH,
    base_units_from_currency,
    price_per_wh_from_currency_per_kwh,
    wh_from_kwh,
)
from market.orders import MAX_PRICE_PER_WH, MIN_PRICE_PER_WH
from simulation.profiles import SECONDS_PER_DAY


class InvalidValue(Exception):
    """A converter's complaint about one value; the reader adds the key path and source."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


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
REQUIRED: Any = object()
"""The default of a key the file must set."""


def type_name(value: object) -> str:
    """How a TOML value's type is named in messages: ``table``, ``array``, ``integer``..."""
    names = {bool: "boolean", int: "integer", str: "string", Decimal: "number", list: "array"}
    if isinstance(value, dict):
        return "table"
    if isinstance(value, datetime):
        return "date-time"
    if isinstance(value, date):
        return "date"
    return names.get(type(value), type(value).__name__)


def _int(low: int, high: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValue(f"expected an integer, got {type_name(value)} {value!r}")
        if not low <= value <= high:
            raise InvalidValue(f"{value} is out of range; it must be between {low} and {high}")
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
            raise InvalidValue(f"expected a number, got {type_name(value)} {value!r}")
        if isinstance(value, Decimal) and not value.is_finite():
            raise InvalidValue(f"{value} is not a finite number")
        exact = Fraction(value)
        too_low = exact <= bottom if low_open else exact < bottom
        too_high = exact >= top if high_open else exact > top
        if too_low or too_high:
            raise InvalidValue(f"{value} is out of range; it must be in {lo}{low}, {high}{hi}")
        return float(exact)

    return convert


def _units(convert: Callable[[Any], int], what: str, value: object) -> int:
    """Run a :mod:`ledger.units` conversion, turning its InputError into a key complaint."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise InvalidValue(f"expected a number, got {type_name(value)} {value!r}")
    try:
        return int(convert(value))
    except InputError as error:
        raise InvalidValue(error.message.removeprefix(f"{what}: "), error.hint) from None


def _price(value: object) -> int:
    price = _units(price_per_wh_from_currency_per_kwh, "price", value)
    if not MIN_PRICE_PER_WH <= price <= MAX_PRICE_PER_WH:
        raise InvalidValue(
            f"{value} currency/kWh is out of range; a price must be positive and at most "
            f"{Fraction(MAX_PRICE_PER_WH, PRICE_PER_WH_PER_CURRENCY_PER_KWH)} currency/kWh"
        )
    return price


def _energy(*, positive: bool) -> Callable[[object], int]:
    def convert(value: object) -> int:
        wh = _units(wh_from_kwh, "energy", value)
        if wh < 0 or (positive and wh == 0):
            raise InvalidValue(
                f"{value} kWh is impossible; it must be {'>' if positive else '>='} 0"
            )
        if wh > MAX_ENERGY_WH:
            raise InvalidValue(f"{value} kWh is out of range (at most {MAX_ENERGY_WH // 1000} kWh)")
        return wh

    return convert


def _money(value: object) -> int:
    amount = _units(base_units_from_currency, "amount", value)
    if amount < 0:
        raise InvalidValue(f"{value} is impossible; a deposit cannot be negative")
    return amount


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"expected a string, got {type_name(value)} {value!r}")
    return value


def _name(value: object) -> str:
    text = _string(value)
    if not _NAME.fullmatch(text):
        raise InvalidValue(
            f"{text!r} is not a valid name; use 1 to 40 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return text


def _choice(*options: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        text = _string(value)
        if text not in options:
            raise InvalidValue(f"{text!r} is not one of {', '.join(map(repr, options))}")
        return text

    return convert


def _interval_seconds(value: object) -> int:
    seconds = _int(60, SECONDS_PER_DAY)(value)
    if SECONDS_PER_DAY % seconds:
        raise InvalidValue(f"{seconds} s does not divide a day (86400 s); try 900, 1800 or 3600")
    return seconds


def _k(value: object) -> tuple[int, int]:
    text = _string(value)
    match = re.fullmatch(r"\s*([0-9]{1,6})\s*/\s*([0-9]{1,6})\s*", text)
    if not match:
        raise InvalidValue(f'{text!r} is not a fraction; write it as "NUM/DEN" such as "1/2"')
    num, den = int(match.group(1)), int(match.group(2))
    if den == 0 or num > den:
        raise InvalidValue(f"{text!r} is impossible; k needs 0 <= NUM <= DEN and DEN > 0")
    return num, den


def _price_steps(value: object) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise InvalidValue(f"expected an array of prices, got {type_name(value)} {value!r}")
    if not value:
        raise InvalidValue("needs at least one price step")
    steps: list[int] = []
    for i, item in enumerate(value):
        try:
            steps.append(_price(item))
        except InvalidValue as problem:
            raise InvalidValue(f"step {i}: {problem.message}") from None
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise InvalidValue("price steps must be strictly ascending")
    return tuple(steps)


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
FIRST_YEAR, LAST_YEAR = 1950, 2200
"""Years a calendar date may fall in."""


def _date(value: object) -> date:
    """A TOML local date (``2026-06-01``) or an ISO string (``"2026-06-01"``)."""
    if isinstance(value, datetime):
        raise InvalidValue(
            f"expected a date, got a date-time {value.isoformat()}",
            hint="Write the day alone, as 2026-06-01.",
        )
    if isinstance(value, date):
        day = value
    elif isinstance(value, str):
        if not _ISO_DATE.fullmatch(value):
            raise InvalidValue(
                f"{value!r} is not a date; write it as YYYY-MM-DD", hint='Such as "2026-06-01".'
            )
        try:
            day = date.fromisoformat(value)
        except ValueError as error:
            raise InvalidValue(f"{value!r} is not a date: {error}") from None
    else:
        raise InvalidValue(f"expected a date, got {type_name(value)} {value!r}")
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise InvalidValue(f"{day.isoformat()} is out of range (years {FIRST_YEAR}..{LAST_YEAR})")
    return day


def _time_zone(value: object) -> str:
    text = _string(value)
    if text not in zoneinfo.available_timezones():
        close = difflib.get_close_matches(text, sorted(zoneinfo.available_timezones()), n=1)
        raise InvalidValue(
            f"{text!r} is not a known IANA time zone",
            hint=f"Did you mean {close[0]!r}?" if close else 'Such as "Europe/Berlin".',
        )
    return text


def _country_code(text: str) -> str:
    import holidays as holiday_calendars  # imported here: only a file that names one needs it

    supported: dict[str, list[str]] = holiday_calendars.list_supported_countries()
    country, dash, subdivision = text.partition("-")
    if country not in supported:
        raise InvalidValue(
            f"{text!r} is not a country the holidays package knows",
            hint='Use an ISO 3166 code such as "DE" or "DE-BY", or list the dates.',
        )
    if dash and subdivision not in supported[country]:
        raise InvalidValue(
            f"{subdivision!r} is not a subdivision of {country}",
            hint=f"Known: {', '.join(supported[country]) or 'none'}.",
        )
    return text


def _holidays(value: object) -> tuple[str | None, tuple[date, ...]]:
    """A country code (``"DE"``, ``"DE-BY"``) or an array of dates (``[]`` for none)."""
    if isinstance(value, str):
        return _country_code(value), ()
    if isinstance(value, list):
        days: list[date] = []
        for i, item in enumerate(value):
            try:
                days.append(_date(item))
            except InvalidValue as problem:
                raise InvalidValue(f"item {i}: {problem.message}", problem.hint) from None
        return None, tuple(sorted(set(days)))
    raise InvalidValue(
        f"expected a country code or an array of dates, got {type_name(value)} {value!r}"
    )


RENAMED_PROFILES = {
    "residential": 'use "h0", the BDEW household profile',
    "commercial": 'use "g1" (business on weekdays 8-18 h) or "g0" (business in general)',
}
"""Load profile names of earlier scenario files and what to write instead."""


def _profile(value: object) -> str:
    text = _string(value)
    if text in RENAMED_PROFILES:
        raise InvalidValue(
            f"{text!r} is no longer a load profile; loads follow the BDEW standard load profiles",
            hint=RENAMED_PROFILES[text][0].upper() + RENAMED_PROFILES[text][1:] + ".",
        )
    if text not in LOAD_PROFILES:
        raise InvalidValue(
            f"{text!r} is not one of {', '.join(map(repr, LOAD_PROFILES))}",
            hint="h0 is households, g0..g6 businesses, l0..l2 farms (BDEW).",
        )
    return text


def _kwh_per_year_hint(value: object) -> str:
    try:
        daily = _energy(positive=False)(value)
    except InvalidValue:
        return "Write load_kwh_per_year, the annual energy in kWh."
    return (
        f"Write load_kwh_per_year = {Fraction(daily * 365, 1000)} (the old daily energy times "
        "365); the day's energy now follows the profile's season, weekday and holidays."
    )


RETIRED_KEYS: dict[str, tuple[str, Callable[[object], str]]] = {
    "load_kwh_per_day": (
        "was replaced by load_kwh_per_year",
        _kwh_per_year_hint,
    ),
    "sunrise_hour": (
        "was removed: the sun now comes from pvlib for the scenario's [location] and [calendar]",
        lambda value: "Delete it; set [location] latitude and longitude instead.",
    ),
    "sunset_hour": (
        "was removed: the sun now comes from pvlib for the scenario's [location] and [calendar]",
        lambda value: "Delete it; set [location] latitude and longitude instead.",
    ),
}
"""Keys of earlier scenario files: why each is refused, and a hint made from its value."""


# --------------------------------------------------------------------------- the keys


@dataclass(frozen=True)
class Key:
    """One documented key of a scenario table: its converter, default and meaning."""

    name: str
    convert: Callable[[object], Any]
    default: Any
    doc: str


def _key(name: str, convert: Callable[[object], Any], default: Any, doc: str) -> Key:
    return Key(name, convert, default, doc)


def meta_keys(default_name: str) -> tuple[Key, ...]:
    """The top-level ``name`` (``default_name`` when the file has none) and ``description``."""
    return (_key("name", _string, default_name, ""), _key("description", _string, "", ""))


intervals_value = _int(1, MAX_INTERVALS)
"""The converter of ``simulation.intervals``, which also checks an ``--intervals`` override
(:meth:`~simulation.scenario.Scenario.with_intervals`)."""

STANDARD_PROFILES = (
    "h0",
    "h0_dyn",
    "g0",
    "g1",
    "g2",
    "g3",
    "g4",
    "g5",
    "g6",
    "l0",
    "l1",
    "l2",
)
"""The BDEW standard load profiles of demandlib, by their names (:mod:`simulation.load`)."""
LOAD_PROFILES = (*STANDARD_PROFILES, "flat")
"""Every ``load_profile`` a scenario may name."""
_FRACTION = _real(0, 1)

SIMULATION_KEYS = (
    _key("seed", _int(0, 2**64 - 1), REQUIRED, "seed of every random stream"),
    _key("intervals", intervals_value, REQUIRED, "delivery intervals to simulate"),
    _key("interval_seconds", _interval_seconds, 900, "interval length in s; divides a day"),
    _key("mechanism", _choice("uniform", "pay-as-bid"), "uniform", "clearing mechanism"),
    _key("k", _k, "1/2", "k of the k-double auction as NUM/DEN"),
)
MARKET_KEYS = (
    _key("penalty_price_per_kwh", _price, "0.50", "shortfall penalty, currency/kWh"),
    _key("tolerance_bps", _int(0, 10_000), 500, "shortfall tolerance, bps of quantity"),
)
CALENDAR_KEYS = (
    _key("start_date", _date, "2026-06-01", "local date of the first interval"),
    _key("time_zone", _time_zone, "Europe/Berlin", "IANA time zone of the run's clock"),
    _key("holidays", _holidays, "DE", "country code or array of dates"),
)
LOCATION_KEYS = (
    _key("latitude", _real(-90, 90), 51, "degrees north"),
    _key("longitude", _real(-180, 180), 10, "degrees east"),
    _key("altitude_m", _real(-500, 9000), 200, "metres above sea level"),
)
WEATHER_KEYS = (
    _key("mean_clearness", _FRACTION, Decimal("0.75"), "long-run clear-sky index"),
    _key("persistence", _real(0, 1, high_open=True), Decimal("0.9"), "AR(1) coefficient"),
    _key("volatility", _FRACTION, Decimal("0.08"), "AR(1) shock standard deviation"),
    _key("temperature_c", _real(-50, 50), 10, "annual mean air temperature, C"),
    _key("temperature_swing_c", _real(0, 40), 8, "seasonal amplitude of air temperature, C"),
)
_GROUP_KEYS = (
    _key("name", _name, None, "agent name (prefix when count > 1)"),
    _key("count", _int(1, MAX_COUNT), 1, "identical agents in the group"),
    _key("collateral", _money, None, "deposit per agent in currency"),
)
_LOAD_KEYS = (
    _key("load_profile", _profile, "h0", "BDEW standard load profile"),
    _key("load_noise", _FRACTION, Decimal("0.1"), "relative s.d. of actual load"),
    _key("load_persistence", _real(0, 1, high_open=True), Decimal("0.8"), "AR(1) of the noise"),
    _key("load_shift_minutes", _real(0, 180), 30, "largest random shift of the habits"),
)
_SITE_KEYS = (
    _key("latitude", _real(-90, 90), None, "degrees north (default: [location])"),
    _key("longitude", _real(-180, 180), None, "degrees east (default: [location])"),
    _key("altitude_m", _real(-500, 9000), None, "metres above sea level (default: [location])"),
)
_TILT = _real(0, 90)
_AZIMUTH = _real(0, 360, high_open=True)
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
    _key("peak_w", _int(1, MAX_POWER_W), REQUIRED, "PV nameplate (DC peak) power in W"),
    _key("tilt", _TILT, 30, "array tilt from horizontal, degrees"),
    _key("azimuth", _AZIMUTH, 180, "array azimuth clockwise from north, degrees"),
    *_SITE_KEYS,
    _key("load_kwh_per_year", _energy(positive=False), "3000", "own load per year, kWh"),
    *_LOAD_KEYS,
    _key("forecast_error", _FRACTION, Decimal("0.15"), "relative s.d. of PV forecast error"),
    *_PV_PRICE_KEYS,
)
BATTERY_KEYS = (
    *_GROUP_KEYS,
    _key("capacity_kwh", _energy(positive=True), REQUIRED, "usable capacity, kWh"),
    _key("max_power_w", _int(1, MAX_POWER_W), REQUIRED, "charge/discharge power limit, W"),
    _key("round_trip_efficiency", _real(0, 1, low_open=True), Decimal("0.9"), "0 < x <= 1"),
    _key("initial_soc", _FRACTION, Decimal("0.5"), "state of charge at start, fraction"),
    _key("min_soc", _FRACTION, Decimal("0.1"), "lowest state of charge, fraction"),
    _key("max_soc", _FRACTION, Decimal("0.95"), "highest state of charge, fraction"),
    _key("pv_peak_w", _int(0, MAX_POWER_W), 0, "PV nameplate behind the meter, W"),
    _key("pv_tilt", _TILT, 30, "array tilt from horizontal, degrees"),
    _key("pv_azimuth", _AZIMUTH, 180, "array azimuth clockwise from north, degrees"),
    *_SITE_KEYS,
    _key("load_kwh_per_year", _energy(positive=False), "0", "own load per year, kWh"),
    *_LOAD_KEYS,
    _key("forecast_error", _FRACTION, Decimal("0.15"), "relative s.d. of PV forecast error"),
    *_PV_PRICE_KEYS,
    *_STRATEGY_KEYS,
)
HOUSEHOLD_KEYS = (
    *_GROUP_KEYS,
    _key("load_kwh_per_year", _energy(positive=True), REQUIRED, "load per year, kWh"),
    *_LOAD_KEYS,
    _key("cap_price_per_kwh", _price, "0.30", "retail price cap, currency/kWh"),
)
JOB_KEYS = (
    _key("name", _name, None, "job name"),
    _key("energy_kwh", _energy(positive=True), REQUIRED, "energy the job needs, kWh"),
    _key("release_interval", _int(0, MAX_INTERVALS), REQUIRED, "first interval it may run"),
    _key("deadline_interval", _int(0, MAX_INTERVALS), REQUIRED, "last interval it may run"),
    _key("max_power_w", _int(1, MAX_POWER_W), REQUIRED, "power limit of the job, W"),
)
DATA_CENTER_KEYS = (
    *_GROUP_KEYS,
    _key("base_load_w", _int(0, MAX_POWER_W), REQUIRED, "non-deferrable load, W"),
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
    _key("homes", _int(1, MAX_COUNT), REQUIRED, "member homes"),
    _key("pv_homes", _int(0, MAX_COUNT), 0, "members with PV"),
    _key("battery_homes", _int(0, MAX_COUNT), 0, "members with a battery"),
    _key("pv_peak_w", _int(0, MAX_POWER_W), 0, "PV nameplate per member, W"),
    _key("pv_tilt", _TILT, 30, "members' array tilt, degrees"),
    _key("pv_azimuth", _AZIMUTH, 180, "members' array azimuth, degrees"),
    *_SITE_KEYS,
    _key("battery_capacity_kwh", _energy(positive=False), "0", "battery per member, kWh"),
    _key("battery_max_power_w", _int(0, MAX_POWER_W), 0, "battery power per member, W"),
    _key("round_trip_efficiency", _real(0, 1, low_open=True), Decimal("0.9"), "0 < x <= 1"),
    _key("load_kwh_per_year", _energy(positive=False), "2200", "load per member per year, kWh"),
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


def _fee(value: object) -> int:
    fee = _units(price_per_wh_from_currency_per_kwh, "price", value)
    if not 0 <= fee <= MAX_PRICE_PER_WH:
        raise InvalidValue(f"{value} currency/kWh is out of range; a fee is 0 or more")
    return fee


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(f"expected true or false, got {type_name(value)} {value!r}")
    return value


NETWORKS: dict[str, str] = {
    "kerber_landnetz_freileitung_1": "create_kerber_landnetz_freileitung_1",
    "kerber_landnetz_freileitung_2": "create_kerber_landnetz_freileitung_2",
    "kerber_landnetz_kabel_1": "create_kerber_landnetz_kabel_1",
    "kerber_landnetz_kabel_2": "create_kerber_landnetz_kabel_2",
    "kerber_dorfnetz": "create_kerber_dorfnetz",
    "kerber_vorstadtnetz_kabel_1": "create_kerber_vorstadtnetz_kabel_1",
    "kerber_vorstadtnetz_kabel_2": "create_kerber_vorstadtnetz_kabel_2",
    "dickert_lv_network": "create_dickert_lv_network",
    "cigre_network_lv": "create_cigre_network_lv",
}
"""The networks a scenario may name, and the :mod:`pandapower.networks` function of each."""


def _network(value: object) -> str:
    text = _string(value)
    if text not in NETWORKS:
        raise InvalidValue(
            f"{text!r} is not a network pandapower bundles; one of {', '.join(NETWORKS)}"
        )
    return text


GRID_KEYS = (
    _key("network", _network, REQUIRED, "pandapower network the agents sit on"),
    _key("margin", _real(0, 1, high_open=True), Decimal("0.1"), "fraction of ratings withheld"),
    _key("transformer_fee_per_kwh", _fee, "0", "fee per kWh across a transformer"),
    _key("line_fee_per_kwh", _fee, "0", "fee per kWh across a line"),
    _key("transformer_kva", _int(1, MAX_POWER_W // 1000), None, "transformer rating override"),
    _key("curtail_unsold", _boolean, True, "curtail a site's export beyond what it sold"),
)
"""``[grid]``: the feeder (:mod:`simulation.feeder`); ``[grid.buses]`` maps agent names to
bus indices of the network (the rest are spread over its load buses)."""

TOP_LEVEL_KEYS = (
    "name",
    "description",
    "simulation",
    "calendar",
    "location",
    "market",
    "weather",
    "agents",
    "grid",
)
"""Keys allowed at the top of a scenario file."""
