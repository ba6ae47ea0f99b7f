"""Consumption from standard load profiles: demandlib's BDEW profiles, individualised.

The standard profile
    ``h0`` (households), ``h0_dyn`` (h0 with the BDEW dynamisation over the year), ``g0`` ..
    ``g6`` (business: general, weekdays 8-18 h, evenings, shops, bakeries, weekends, and
    continuous), ``l0`` .. ``l2`` (farms) come from ``demandlib.bdew.ElecSlp`` for each calendar
    year the run touches, with that year's weekdays, Saturdays, Sundays and the calendar's
    holidays (which BDEW counts as Sundays), and are scaled so that each calendar year sums to
    the site's annual energy. ``flat`` is a constant power (the annual energy over 365 days).
    The BDEW profiles are given per quarter-hour of the local wall clock; an interval of any
    length takes the exact integral of that step function over its local start and length.

The individual site
    A standard profile is the average of many homes and far smoother than one. A site's own
    profile is the standard one shifted by a random time (uniform within ``shift_minutes``
    either way, drawn once per site from its ``load-shift`` stream): its habits. That is the
    forecast it bids. Its actual load is the forecast times ``max(0, 1 + noise * x[t])`` with
    ``x`` a unit-variance AR(1) process of ``persistence`` per interval (from its ``load``
    stream), so a busy hour stays busy for a while. The noise has mean one, so a year's energy
    stays within a fraction of a percent of the configured one.

Energies become whole Wh with :func:`~simulation.profiles.whole_wh`, which keeps the running
total exact.
"""

from __future__ import annotations

import warnings
from datetime import date
from functools import lru_cache

import numpy as np

from simulation.clock import holidays_in, local_start_minutes, run_years
from simulation.profiles import F64, I64, SECONDS_PER_HOUR, ar1_unit, whole_wh
from simulation.scenario import CalendarSpec, LoadSpec
from simulation.scenario_schema import STANDARD_PROFILES

_QUARTER_MINUTES = 15.0
_DAYS_PER_YEAR = 365


@lru_cache(maxsize=16)
def _year_shares(year: int, holidays: tuple[date, ...]) -> dict[str, F64]:
    """Each standard profile's share of ``year`` per local quarter-hour (each sums to 1)."""
    from demandlib import bdew  # imported on first use: it takes a third of a second

    # demandlib 0.2.2 turns every warning into an error process-wide while it builds the
    # profiles; keep that inside this block.
    with warnings.catch_warnings():
        frame = bdew.ElecSlp(year, holidays=list(holidays) or None).get_profiles()
    shares: dict[str, F64] = {}
    for name in STANDARD_PROFILES:
        values = np.asarray(frame[name].to_numpy(), dtype=np.float64)
        shares[name] = values / float(values.sum())
    return shares


def standard_load_wh(
    load: LoadSpec,
    calendar: CalendarSpec,
    intervals: int,
    interval_seconds: int,
    *,
    shift_minutes: float = 0.0,
    annual_wh: float | None = None,
) -> F64:
    """Expected energy per interval in Wh (floats) of ``load``'s profile scaled to its annual
    energy (or ``annual_wh``), the local clock shifted by ``shift_minutes`` (positive: later).
    """
    energy = float(load.annual_wh if annual_wh is None else annual_wh)
    if load.profile == "flat" or energy == 0.0:
        per_interval = energy * interval_seconds / (_DAYS_PER_YEAR * 24 * SECONDS_PER_HOUR)
        return np.full(intervals, per_interval, dtype=np.float64)
    if load.profile not in STANDARD_PROFILES:
        raise ValueError(f"unknown load profile {load.profile!r}")
    first, last = run_years(calendar, intervals, interval_seconds)
    # One year of margin either side covers any shift of the local clock.
    years = range(first - 1, last + 2)
    quarters = np.concatenate(
        [_year_shares(y, holidays_in(calendar, y))[load.profile] * energy for y in years]
    )
    running = np.concatenate(([0.0], np.cumsum(quarters)))
    start = local_start_minutes(calendar, intervals, interval_seconds, years[0]) - shift_minutes
    end = start + interval_seconds / 60.0
    axis = np.arange(running.size, dtype=np.float64)
    at_start = np.interp(start / _QUARTER_MINUTES, axis, running)
    at_end = np.interp(end / _QUARTER_MINUTES, axis, running)
    return np.asarray(np.maximum(at_end - at_start, 0.0), dtype=np.float64)


def site_load_wh(
    load: LoadSpec,
    calendar: CalendarSpec,
    intervals: int,
    interval_seconds: int,
    *,
    shift_rng: np.random.Generator,
    noise_rng: np.random.Generator,
    annual_wh: int | None = None,
) -> tuple[I64, I64]:
    """One site's load per interval in whole Wh: ``(forecast, actual)``.

    ``annual_wh`` overrides the spec's annual energy (a VPP member's size). The forecast is the
    standard profile shifted by the site's own time shift; the actual load adds the persistent
    noise (see the module docstring). Each stream is drawn from whether or not its parameter
    is zero, so the streams' positions do not depend on the parameters.
    """
    shift = float(shift_rng.uniform(-1.0, 1.0)) * load.shift_minutes
    expected = standard_load_wh(
        load, calendar, intervals, interval_seconds, shift_minutes=shift, annual_wh=annual_wh
    )
    factor = np.maximum(0.0, 1.0 + load.noise * ar1_unit(noise_rng, intervals, load.persistence))
    return whole_wh(expected), whole_wh(expected * factor)
