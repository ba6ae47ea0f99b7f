"""Pure helpers of the simulation's physics: seeded streams, integer energy, noise processes.

The sun comes from pvlib (:mod:`simulation.solar`) and the standard loads from demandlib
(:mod:`simulation.load`); what is left here is what both, and the agents, share. Every
function is pure: given its arguments (and, where it draws random numbers, a
:class:`numpy.random.Generator` it is handed), it returns the same array every time.
Energies come back as ``int64`` arrays of Wh per interval, clearness as ``int64`` basis
points, so an agent never has to round a float on its way to the market. Floats are used
inside, for the physics only.

Conventions
-----------
* Interval ``t`` of a run covers seconds ``[t * interval_seconds, (t + 1) * interval_seconds)``
  after local midnight of the scenario's start date (:mod:`simulation.clock`).
* ``interval_seconds`` divides a day (86,400 s); 900 s (15 min, 96 intervals a day) is the
  default everywhere.
* Power is in W, energy in Wh. Energy at a power limit over one interval rounds *down*
  (:func:`energy_wh_at_power`): a limit must never be exceeded. An energy that is not a
  limit (a load) becomes whole Wh by :func:`whole_wh`, which keeps the running total exact.
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
from scipy.signal import lfilter

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


def ar1_unit(rng: np.random.Generator, intervals: int, persistence: float) -> F64:
    """A stationary AR(1) series of unit variance: ``x[t] = p * x[t-1] + sqrt(1 - p^2) * e[t]``.

    ``x[0]`` is drawn from the stationary distribution (one standard normal), then one shock
    per interval (the last one is drawn but unused), so a run of ``n`` intervals sees the first
    ``n`` values of a longer run. Vectorised (a linear filter), so a year of 15-minute
    intervals costs a millisecond.
    """
    if not 0.0 <= persistence < 1.0:
        raise ValueError("persistence must be in [0, 1)")
    start = float(rng.standard_normal())
    shocks = rng.standard_normal(intervals)
    if intervals == 0:
        return np.zeros(0, dtype=np.float64)
    drive = np.empty(intervals, dtype=np.float64)
    drive[0] = start
    drive[1:] = math.sqrt(1.0 - persistence**2) * shocks[:-1]
    return np.asarray(lfilter([1.0], [1.0, -persistence], drive), dtype=np.float64)


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
    with ``e`` standard normal, started from its stationary distribution (standard deviation
    ``volatility / sqrt(1 - persistence^2)``), then clipped to ``[0, 1]`` and expressed in bps
    (10,000 = clear sky). ``persistence`` in ``[0, 1)`` sets how long a cloudy spell lasts
    (0.9 per 15 min is a correlation time of about 2.4 h).
    """
    if not 0.0 <= persistence < 1.0:
        raise ValueError("persistence must be in [0, 1)")
    if volatility < 0.0 or not 0.0 <= mean <= 1.0:
        raise ValueError("need volatility >= 0 and 0 <= mean <= 1")
    spread = volatility / math.sqrt(1.0 - persistence**2)
    x = mean + spread * ar1_unit(rng, intervals, persistence)
    return np.rint(np.clip(x, 0.0, 1.0) * BPS).astype(np.int64)


def whole_wh(energy_wh: F64) -> I64:
    """Float energies per interval as whole Wh whose running total stays exact.

    Interval ``t`` gets ``floor(C[t + 1]) - floor(C[t])`` with ``C`` the running sum of the
    float energies, so the whole-Wh total never drifts more than 1 Wh from the float total
    (flooring each interval alone would lose half a Wh per interval, about 0.6 % of a home's
    year). Values must be finite and non-negative; a prefix of a longer series gives the
    prefix of its result.
    """
    energy = np.asarray(energy_wh, dtype=np.float64)
    if energy.size and (not np.all(np.isfinite(energy)) or float(energy.min()) < 0.0):
        raise ValueError("energies must be finite and non-negative")
    running = np.floor(np.concatenate(([0.0], np.cumsum(energy))) + 1e-9)
    return np.maximum(np.diff(running), 0.0).astype(np.int64)


def scale_bps(energy_wh: I64, factor_bps: I64) -> I64:
    """``energy_wh * factor_bps / 10,000`` element-wise, rounded down (integers only)."""
    return (np.asarray(energy_wh, dtype=np.int64) * np.asarray(factor_bps, dtype=np.int64)) // BPS


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
