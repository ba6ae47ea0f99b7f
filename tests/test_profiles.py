"""Profiles: the weather process, noise, whole Wh and exact apportionment."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulation.profiles import (
    BPS,
    apportion,
    ar1_unit,
    energy_wh_at_power,
    intervals_per_day,
    scale_bps,
    seeded_rng,
    weather_clearness_bps,
    whole_wh,
    with_noise,
)


@given(
    total=st.integers(0, 10**12),
    weights=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50).filter(
        lambda w: sum(w) > 0
    ),
)
def test_apportion_sums_exactly_and_stays_within_one_wh_of_the_share(
    total: int, weights: list[float]
) -> None:
    parts = apportion(total, weights)
    assert int(parts.sum()) == total
    assert np.all(parts >= 0)
    exact = [Fraction(w) for w in weights]
    for part, weight in zip(parts.tolist(), exact, strict=True):
        assert abs(part - weight * total / sum(exact)) <= 1


def test_apportion_gives_leftover_wh_to_the_earlier_part_on_ties() -> None:
    assert apportion(2, [1.0, 1.0, 1.0]).tolist() == [1, 1, 0]
    assert apportion(10, [1.0, 0.0, 3.0]).tolist() == [3, 0, 7]  # 2.5 and 7.5 tie


def test_apportion_refuses_a_positive_total_over_zero_weights() -> None:
    with pytest.raises(ValueError):
        apportion(5, [0.0, 0.0])
    assert apportion(0, [0.0, 0.0]).tolist() == [0, 0]


def test_energy_at_power_rounds_down() -> None:
    assert energy_wh_at_power(5000, 900) == 1250
    assert energy_wh_at_power(7, 900) == 1  # 1.75 Wh -> 1 Wh, never 2
    assert energy_wh_at_power(3, 900) == 0


def test_intervals_per_day_refuses_a_length_that_does_not_divide_a_day() -> None:
    assert intervals_per_day(900) == 96
    with pytest.raises(ValueError):
        intervals_per_day(7 * 60)


def test_weather_is_reproducible_bounded_and_persistent() -> None:
    a = weather_clearness_bps(seeded_rng(1, "weather"), 960, mean=0.7, persistence=0.95)
    b = weather_clearness_bps(seeded_rng(1, "weather"), 960, mean=0.7, persistence=0.95)
    c = weather_clearness_bps(seeded_rng(2, "weather"), 960, mean=0.7, persistence=0.95)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()
    assert a.min() >= 0 and a.max() <= BPS
    assert abs(float(a.mean()) - 7000) < 1500
    lag1 = np.corrcoef(a[:-1], a[1:])[0, 1]
    assert lag1 > 0.8  # AR(1) with persistence 0.95 is strongly autocorrelated


def test_weather_without_volatility_is_constant_at_the_mean() -> None:
    clear = weather_clearness_bps(seeded_rng(3), 50, mean=0.6, volatility=0.0)
    assert set(clear.tolist()) == {6000}


def test_scale_bps_is_integer_and_rounds_down() -> None:
    assert scale_bps(np.array([999, 1000]), np.array([5000, 10000])).tolist() == [499, 1000]


def test_a_shorter_weather_run_is_the_start_of_a_longer_one() -> None:
    long = weather_clearness_bps(seeded_rng(4, "weather"), 500, persistence=0.9)
    short = weather_clearness_bps(seeded_rng(4, "weather"), 120, persistence=0.9)
    assert short.tolist() == long[:120].tolist()


def test_ar1_has_unit_variance_and_the_asked_persistence() -> None:
    x = ar1_unit(seeded_rng(8, "ar"), 200_000, 0.8)
    assert abs(float(x.std()) - 1.0) < 0.02
    assert abs(float(np.corrcoef(x[:-1], x[1:])[0, 1]) - 0.8) < 0.01
    assert ar1_unit(seeded_rng(8, "ar"), 0, 0.5).size == 0


@given(st.lists(st.floats(0, 1e6, allow_nan=False), max_size=200))
def test_whole_wh_keeps_the_running_total_within_one_wh(energies: list[float]) -> None:
    parts = whole_wh(np.asarray(energies, dtype=np.float64))
    assert parts.dtype == np.int64 and np.all(parts >= 0)
    running = np.cumsum(parts)
    exact = np.cumsum(np.asarray(energies, dtype=np.float64))
    assert np.all(np.abs(running - exact) <= 1.0 + 1e-6 * exact)
    assert whole_wh(np.asarray(energies[:50], dtype=np.float64)).tolist() == parts[:50].tolist()


def test_whole_wh_refuses_negative_or_infinite_energy() -> None:
    with pytest.raises(ValueError):
        whole_wh(np.array([1.0, -0.5]))
    with pytest.raises(ValueError):
        whole_wh(np.array([np.inf]))


def test_noise_is_seeded_non_negative_and_zero_noise_keeps_values() -> None:
    expected = np.full(100, 1000, dtype=np.int64)
    a = with_noise(expected, seeded_rng(5, "x"), 0.5)
    b = with_noise(expected, seeded_rng(5, "x"), 0.5)
    assert a.tolist() == b.tolist()
    assert a.min() >= 0 and len(set(a.tolist())) > 10
    assert with_noise(expected, seeded_rng(5, "x"), 0.0).tolist() == expected.tolist()


def test_seeded_streams_differ_by_label_and_do_not_touch_global_state() -> None:
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    first = seeded_rng(9, "agent", "pv-1").random(3).tolist()
    assert seeded_rng(9, "agent", "pv-1").random(3).tolist() == first
    assert seeded_rng(9, "agent", "pv-2").random(3).tolist() != first
    assert np.random.random() == before
