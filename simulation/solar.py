"""PV output from pvlib: clear-sky irradiance on the array, a PVWatts model, and the clouds.

For each distinct array (location, tilt, azimuth) the whole run is computed once, vectorised,
per W of nameplate (the series scale linearly with the array's size):

1. the sun's position (``Location.get_solarposition``, NREL SPA) at the midpoints of the
   run's sampling steps (one per interval, or one per 15 minutes of a longer interval);
2. clear-sky irradiance by Ineichen-Perez with the monthly Linke turbidity pvlib ships
   (``Location.get_clearsky``: nothing is downloaded);
3. transposition to the plane of the array (Hay-Davies, ground albedo 0.25) and the
   incidence-angle loss of the glass (``iam.physical``) on the direct part;
4. the cell temperature (SAPM, roof-mounted glass/glass modules, 1 m/s wind) from a seasonal
   air temperature (:func:`air_temperature_c`);
5. DC power by PVWatts (``pvwatts_dc``, -0.37 %/K), PVWatts' default system losses (14 %),
   and the PVWatts inverter with an AC rating equal to the nameplate (so AC power never
   exceeds ``peak_w``).

The clear-sky energy of an interval is the mean of its samples times its length, rounded down
to whole Wh and never above ``energy_wh_at_power(peak_w)``: the array's clear-sky envelope.
The actual output is that envelope times the shared cloud process (clearness in basis
points, rounded down), so it never exceeds the envelope.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd

from simulation.clock import sample_times
from simulation.profiles import F64, I64, SECONDS_PER_HOUR, energy_wh_at_power, scale_bps
from simulation.scenario import ArraySpec, CalendarSpec, WeatherSpec

SAMPLE_SECONDS = 900
"""Longest spacing of the samples inside an interval."""
WIND_SPEED_M_S = 1.0
"""Wind speed for the cell temperature (no wind data: a calm, warm-module assumption)."""
GAMMA_PDC = -0.0037
"""Temperature coefficient of the modules' power, per kelvin (crystalline silicon)."""
INVERTER_EFFICIENCY = 0.96
"""Nominal inverter efficiency of the PVWatts inverter model."""
WARMEST_DAY = 200
"""Day of the year of the warmest air in the northern hemisphere (mid-July)."""


def air_temperature_c(times: pd.DatetimeIndex, latitude: float, weather: WeatherSpec) -> F64:
    """Air temperature at ``times``: ``temperature_c`` plus a yearly cosine of amplitude
    ``temperature_swing_c`` peaking in mid-July north of the equator, mid-January south."""
    day = np.asarray(times.dayofyear, dtype=np.float64)
    sign = 1.0 if latitude >= 0 else -1.0
    season = np.cos(2.0 * math.pi * (day - WARMEST_DAY) / 365.25)
    return np.asarray(weather.temperature_c + sign * weather.temperature_swing_c * season)


@lru_cache(maxsize=64)
def clear_sky_wh_per_wp(
    array: ArraySpec,
    calendar: CalendarSpec,
    intervals: int,
    interval_seconds: int,
    weather: WeatherSpec,
) -> F64:
    """Clear-sky AC energy per interval in Wh per W of nameplate, for the whole run.

    Cached: every agent with the same array, calendar and run shares one computation.
    """
    import pvlib  # imported on first use: it takes half a second

    per_interval = max(1, -(-interval_seconds // SAMPLE_SECONDS))
    times = sample_times(calendar, intervals, interval_seconds, per_interval)
    where = array.location
    site = pvlib.location.Location(
        where.latitude, where.longitude, tz=calendar.time_zone, altitude=where.altitude_m
    )
    sun = site.get_solarposition(times)
    sky = site.get_clearsky(times, model="ineichen", solar_position=sun)
    poa = pvlib.irradiance.get_total_irradiance(
        array.tilt,
        array.azimuth,
        sun["apparent_zenith"],
        sun["azimuth"],
        sky["dni"],
        sky["ghi"],
        sky["dhi"],
        dni_extra=pvlib.irradiance.get_extra_radiation(times),
        model="haydavies",
    )
    incidence = pvlib.irradiance.aoi(
        array.tilt, array.azimuth, sun["apparent_zenith"], sun["azimuth"]
    )
    effective = poa["poa_direct"] * pvlib.iam.physical(incidence) + poa["poa_diffuse"]
    mount = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["close_mount_glass_glass"]
    cell = pvlib.temperature.sapm_cell(
        poa["poa_global"],
        air_temperature_c(times, where.latitude, weather),
        WIND_SPEED_M_S,
        **mount,
    )
    dc = pvlib.pvsystem.pvwatts_dc(effective, cell, 1.0, GAMMA_PDC)
    dc = dc * (1.0 - pvlib.pvsystem.pvwatts_losses() / 100.0)
    ac = pvlib.inverter.pvwatts(dc, 1.0 / INVERTER_EFFICIENCY, INVERTER_EFFICIENCY)
    watts = np.clip(np.nan_to_num(np.asarray(ac, dtype=np.float64)), 0.0, 1.0)
    mean_w = watts.reshape(intervals, per_interval).mean(axis=1)
    return np.asarray(mean_w * (interval_seconds / SECONDS_PER_HOUR), dtype=np.float64)


def clear_sky_wh(
    array: ArraySpec,
    peak_w: int,
    calendar: CalendarSpec,
    intervals: int,
    interval_seconds: int,
    weather: WeatherSpec,
) -> I64:
    """The array's clear-sky envelope: whole Wh per interval for ``peak_w`` of nameplate,
    rounded down and never above the nameplate's energy in one interval."""
    if peak_w <= 0:
        return np.zeros(intervals, dtype=np.int64)
    per_wp = clear_sky_wh_per_wp(array, calendar, intervals, interval_seconds, weather)
    energy = np.floor(per_wp * peak_w).astype(np.int64)
    return np.minimum(energy, energy_wh_at_power(peak_w, interval_seconds))


def pv_wh(clear_wh: I64, clearness_bps: I64) -> I64:
    """Actual output: the clear-sky envelope times the clearness, rounded down."""
    return scale_bps(clear_wh, clearness_bps)
