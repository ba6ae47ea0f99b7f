"""Physical profiles for the simulation: sun, weather and load, with integer Wh outputs.

Every function here is pure: given its arguments (and, where it draws random numbers, a
:class:`numpy.random.Generator` it is handed), it returns the same array every time. Energies
come back as ``int64`` arrays of Wh per interval, clearness as ``int64`` basis points, so an
agent never has to round a float on its way to the market. Floats are used inside, for the
physics only.

Conventions
-----------
* Interval ``t`` of a run covers seconds ``[t * interval_seconds, (t + 1) * interval_seconds)``
  after local midnight of day 0; ``t % intervals_per_day`` is the interval of the day.
* ``interval_seconds`` divides a day (86,400 s); 900 s (15 min, 96 intervals a day) is the
  default everywhere.
* Power is in W, energy in Wh. Energy at a power limit over one interval rounds *down*
  (:func:`energy_wh_at_power`): a limit must never be exceeded.
* Randomness comes only from generators made by :func:`seeded_rng`, one independent stream per
  (seed, label...) pair. Nothing touches numpy's or Python's global random state.
* Each random quantity draws one number per interval, in interval order, from its own stream,
  so a run of ``n`` intervals sees exactly the first ``n`` values of a longer run.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

SECONDS_PER_DAY = 86_400
"""Seconds in a simulated day."""
SECONDS_PER_HOUR = 3_600
"""Seconds in an hour (Wh = W * s / 3600)."""
BPS = 10_000
"""Basis points in one: clearness 10,000 bps is a perfectly clear sky."""


def seeded_rng(seed: int, *labels: str) -> np.random.Generator:
    """An independent, reproducible random stream for ``seed`` and ``labels``.

    The labels (e.g. ``("agent", "pv-3")``) are hashed with SHA-256 into the entropy of a
    :class:`numpy.random.SeedSequence`, so every (seed, labels) pair gets its own stream that
    does not depend on how many other streams exist or in which order they were made.
    """
    words = [seed & 0xFFFF_FFFF_FFFF_FFFF]
    for label in labels:
        digest = hashlib.sha256(label.encode("utf-8")).digest()
        words.append(int.from_bytes(digest[:8], "big"))
    return np.random.default_rng(np.random.SeedSequence(words))


def intervals_per_day(interval_seconds: int) -> int:
    """How many intervals of ``interval_seconds`` make a day; the length must divide a day."""
    if interval_seconds <= 0 or SECONDS_PER_DAY % interval_seconds:
        raise ValueError(f"interval_seconds={interval_seconds} does not divide a day (86400 s)")
    return SECONDS_PER_DAY // interval_seconds


def energy_wh_at_power(power_w: int, interval_seconds: int) -> int:
    """Energy in Wh of ``power_w`` held for one interval, rounded down.

    Rounds towards zero on purpose: the result is used as a power limit (of a battery, a
    job), and a limit rounded up could be exceeded by up to 1 Wh.
    """
    return (power_w * interval_seconds) // SECONDS_PER_HOUR


def apportion(total: int, weights: Sequence[float] | F64) -> I64:
    """Split ``total`` Wh into non-negative integers proportional to ``weights``, exactly.

    Largest-remainder (Hamilton) method: each part gets the floor of its exact share, then
    the Wh left over go one each to the parts with the largest fractional remainders; ties
    go to the earlier index. The parts always sum to ``total``. Weights must be
    non-negative with a positive sum (or ``total`` must be 0).
    """
    w = np.asarray(weights, dtype=np.float64)
    if total < 0:
        raise ValueError("total must be non-negative")
    if w.size == 0:
        if total:
            raise ValueError("cannot apportion a positive total over no parts")
        return np.zeros(0, dtype=np.int64)
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite and non-negative")
    if float(w.max()) <= 0:
        if total:
            raise ValueError("cannot apportion a positive total over zero weights")
        return np.zeros(w.size, dtype=np.int64)
    # Scale to [0, 1] first, so tiny weights cannot overflow the ratio.
    scaled = np.asarray(w / w.max(), dtype=np.float64)
    shares = scaled * (total / float(scaled.sum()))
    parts: I64 = np.floor(shares).astype(np.int64)
    # Float shares can overshoot by an ulp; pull back so the floor never exceeds the total.
    while int(parts.sum()) > total:
        parts[int(np.argmax(parts))] -= 1
    left = total - int(parts.sum())
    if left:
        remainders = shares - parts
        # Stable sort on -remainder keeps the earlier index first among equal remainders.
        order = np.argsort(-remainders, kind="stable")
        parts[order[:left]] += 1
    return parts


def _hour_edges(intervals: int, interval_seconds: int, start_interval: int) -> tuple[F64, F64]:
    """Start and end hour-of-day of each interval (end may be 24.0)."""
    per_day = intervals_per_day(interval_seconds)
    of_day = (np.arange(intervals, dtype=np.int64) + start_interval) % per_day
    start = (of_day * (interval_seconds / SECONDS_PER_HOUR)).astype(np.float64)
    return start, (start + interval_seconds / SECONDS_PER_HOUR).astype(np.float64)


def clear_sky_wh(
    peak_w: int,
    interval_seconds: int,
    intervals: int,
    *,
    sunrise_hour: float = 6.0,
    sunset_hour: float = 20.0,
    start_interval: int = 0,
) -> I64:
    """Clear-sky PV energy per interval in Wh for an array of ``peak_w`` peak power.

    The power shape is a half sine over daylight, ``peak_w * sin(pi * (h - sunrise) /
    (sunset - sunrise))``, zero at night. Each interval gets the exact integral of that
    curve over its daylight part (``-D/pi * cos(...)`` with ``D`` the day length), rounded
    down to whole Wh. It is symmetric around solar noon and never exceeds
    ``energy_wh_at_power(peak_w, interval_seconds)``.
    """
    if not 0.0 <= sunrise_hour < sunset_hour <= 24.0:
        raise ValueError("need 0 <= sunrise_hour < sunset_hour <= 24")
    if peak_w < 0:
        raise ValueError("peak_w must be non-negative")
    start, end = _hour_edges(intervals, interval_seconds, start_interval)
    a = np.clip(start, sunrise_hour, sunset_hour)
    b = np.clip(end, sunrise_hour, sunset_hour)
    day = sunset_hour - sunrise_hour
    integral_h = (day / math.pi) * (
        np.cos(math.pi * (a - sunrise_hour) / day) - np.cos(math.pi * (b - sunrise_hour) / day)
    )
    energy = np.floor(peak_w * np.maximum(integral_h, 0.0) + 1e-9).astype(np.int64)
    return np.minimum(energy, energy_wh_at_power(peak_w, interval_seconds))


def weather_clearness_bps(
    rng: np.random.Generator,
    intervals: int,
    *,
    mean: float = 0.75,
    persistence: float = 0.9,
    volatility: float = 0.08,
) -> I64:
    """A seeded cloudiness process: the clear-sky index per interval, in basis points.

    AR(1) around ``mean``: ``x[t] = mean + persistence * (x[t-1] - mean) + volatility * e[t]``
    with ``e`` standard normal, started from its stationary distribution, then clipped to
    ``[0, 1]`` and expressed in bps (10,000 = clear sky). ``persistence`` in ``[0, 1)`` sets
    how long a cloudy spell lasts (0.9 per 15 min is a correlation time of about 2.4 h).
    """
    if not 0.0 <= persistence < 1.0:
        raise ValueError("persistence must be in [0, 1)")
    if volatility < 0.0 or not 0.0 <= mean <= 1.0:
        raise ValueError("need volatility >= 0 and 0 <= mean <= 1")
    # The start first, then one shock per interval: a shorter run draws a prefix of a longer
    # run's numbers, so its weather is the beginning of the longer run's weather.
    level = mean + volatility / math.sqrt(1.0 - persistence**2) * float(rng.standard_normal())
    shocks = rng.standard_normal(intervals)
    x = np.empty(intervals, dtype=np.float64)
    for t in range(intervals):
        x[t] = level
        level = mean + persistence * (level - mean) + volatility * shocks[t]
    return np.rint(np.clip(x, 0.0, 1.0) * BPS).astype(np.int64)


def scale_bps(energy_wh: I64, factor_bps: I64) -> I64:
    """``energy_wh * factor_bps / 10,000`` element-wise, rounded down (integers only)."""
    return (np.asarray(energy_wh, dtype=np.int64) * np.asarray(factor_bps, dtype=np.int64)) // BPS


# fmt: off
LOAD_SHAPES: dict[str, tuple[float, ...]] = {
    # Relative hourly demand of a home: low at night, a morning peak around 7-8 h and the
    # evening peak around 19 h (typical of European residential standard load profiles).
    "residential": (
        0.55, 0.45, 0.40, 0.38, 0.38, 0.45, 0.70, 1.00, 1.05, 0.85, 0.75, 0.72,
        0.75, 0.72, 0.70, 0.75, 0.90, 1.20, 1.50, 1.60, 1.45, 1.20, 0.95, 0.70,
    ),
    # Business hours: a plateau from 8 h to 18 h.
    "commercial": (
        0.30, 0.30, 0.30, 0.30, 0.30, 0.35, 0.50, 0.80, 1.20, 1.40, 1.45, 1.45,
        1.40, 1.45, 1.45, 1.40, 1.30, 1.10, 0.80, 0.55, 0.45, 0.40, 0.35, 0.30,
    ),
    "flat": (1.0,) * 24,
}
# fmt: on
"""Hourly load shapes (24 relative weights each), interpolated to the interval length."""


def load_shape_weights(profile: str, interval_seconds: int) -> F64:
    """Relative load weights of each interval of one day for a named :data:`LOAD_SHAPES`.

    The hourly values are taken at each hour's midpoint and interpolated linearly (and
    cyclically, so 23:45 blends into 00:00) at each interval's midpoint.
    """
    try:
        hourly = np.asarray(LOAD_SHAPES[profile], dtype=np.float64)
    except KeyError:
        raise ValueError(f"unknown load profile {profile!r}") from None
    per_day = intervals_per_day(interval_seconds)
    mid_hours = (np.arange(per_day) + 0.5) * (interval_seconds / SECONDS_PER_HOUR)
    xs = np.arange(-1, 25) + 0.5
    ys = np.concatenate([hourly[-1:], hourly, hourly[:1]])
    return np.asarray(np.interp(mid_hours, xs, ys), dtype=np.float64)


def daily_load_wh(
    energy_wh_per_day: int,
    interval_seconds: int,
    intervals: int,
    *,
    profile: str = "residential",
    start_interval: int = 0,
) -> I64:
    """Expected load per interval in Wh: ``energy_wh_per_day`` spread over a day's shape.

    Each calendar day of the profile sums to exactly ``energy_wh_per_day`` (split with
    :func:`apportion`); a run that starts or ends mid-day gets the matching part of it.
    """
    per_day = intervals_per_day(interval_seconds)
    day = apportion(energy_wh_per_day, load_shape_weights(profile, interval_seconds))
    index = (np.arange(intervals, dtype=np.int64) + start_interval) % per_day
    return day[index]


def with_noise(expected_wh: I64, rng: np.random.Generator, relative_sd: float) -> I64:
    """``expected_wh`` with multiplicative Gaussian noise, as non-negative whole Wh.

    Each value becomes ``floor(expected * max(0, 1 + relative_sd * e))`` with ``e`` standard
    normal, one draw per interval (drawn even when ``relative_sd`` is 0, so the stream's
    position does not depend on the parameter).
    """
    if relative_sd < 0:
        raise ValueError("relative_sd must be non-negative")
    expected = np.asarray(expected_wh, dtype=np.int64)
    factor = np.maximum(0.0, 1.0 + relative_sd * rng.standard_normal(expected.size))
    return np.floor(expected * factor).astype(np.int64)
