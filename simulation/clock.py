"""The run's clock: when each interval starts in real time and local time, and the holidays.

Interval ``t`` starts ``t * interval_seconds`` after local midnight of the calendar's start
date in its time zone (:class:`~simulation.scenario.CalendarSpec`). The intervals follow each
other in real time, so on the day daylight saving starts the local clock jumps an hour ahead
of the interval count, and on the day it ends it falls back.

Holidays come from the PyPI ``holidays`` package for a country code (``"DE"``, or with a
subdivision ``"DE-BY"``), plus any dates the scenario lists.
"""

from __future__ import annotations

from datetime import date, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holiday_calendars
import numpy as np
import pandas as pd

from simulation.profiles import F64
from simulation.scenario import CalendarSpec


def start_instant(calendar: CalendarSpec) -> pd.Timestamp:
    """The start of interval 0: local midnight of the start date, as an aware timestamp."""
    midnight = datetime.combine(calendar.start_date, time(0), tzinfo=ZoneInfo(calendar.time_zone))
    return pd.Timestamp(midnight)


def sample_times(
    calendar: CalendarSpec, intervals: int, interval_seconds: int, per_interval: int = 1
) -> pd.DatetimeIndex:
    """``per_interval`` evenly spaced instants in each interval (the midpoints of its equal
    parts), in interval order, as an aware index in the calendar's time zone."""
    step = interval_seconds / per_interval
    offsets = (np.arange(intervals * per_interval, dtype=np.float64) + 0.5) * step
    utc = start_instant(calendar).tz_convert("UTC")
    times = utc + pd.to_timedelta(offsets, unit="s")
    return pd.DatetimeIndex(times).tz_convert(calendar.time_zone)


def local_start_minutes(
    calendar: CalendarSpec, intervals: int, interval_seconds: int, origin_year: int
) -> F64:
    """Each interval's start on the local wall clock, in minutes after 1 January
    ``origin_year`` 00:00 (the time axis of the standard load profiles)."""
    utc = start_instant(calendar).tz_convert("UTC")
    offsets = np.arange(intervals, dtype=np.int64) * interval_seconds
    starts = pd.DatetimeIndex(utc + pd.to_timedelta(offsets, unit="s"))
    wall = starts.tz_convert(calendar.time_zone).tz_localize(None)
    origin = pd.Timestamp(datetime(origin_year, 1, 1))
    return np.asarray((wall - origin).total_seconds(), dtype=np.float64) / 60.0


def run_years(calendar: CalendarSpec, intervals: int, interval_seconds: int) -> tuple[int, int]:
    """The first and last calendar year the run's intervals touch (local time)."""
    first = start_instant(calendar)
    last = first + pd.Timedelta(seconds=intervals * interval_seconds)
    return first.year, last.tz_convert(calendar.time_zone).year


def country_holidays(code: str, year: int) -> tuple[date, ...]:
    """The public holidays of ``code`` (``"DE"`` or ``"DE-BY"``) in ``year``, sorted."""
    return _country_holidays(code, year)


@lru_cache(maxsize=64)
def _country_holidays(code: str, year: int) -> tuple[date, ...]:
    country, _, subdivision = code.partition("-")
    found = holiday_calendars.country_holidays(country, subdiv=subdivision or None, years=year)
    return tuple(sorted(found))


def holidays_in(calendar: CalendarSpec, year: int) -> tuple[date, ...]:
    """Every holiday of ``year`` for the calendar: the country's and the listed ones."""
    days = set(d for d in calendar.holiday_dates if d.year == year)
    if calendar.holiday_country:
        days.update(country_holidays(calendar.holiday_country, year))
    return tuple(sorted(days))
