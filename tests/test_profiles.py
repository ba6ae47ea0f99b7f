"""Profiles: clear-sky shape, weather process, load profiles and exact apportionment."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulation.profiles import (
    BPS,
    LOAD_SHAPES,
    apportion,
    clear_sky_wh,
    daily_load_wh,
    energy_wh_at_power,
    intervals_per_day,
    scale_bps,
    seeded_rng,
    weather_clearness_bps,
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


def test_clear_sky_is_zero_at_night_symmetric_and_below_peak() -> None:
    energy = clear_sky_wh(6000, 900, 96, sunrise_hour=6, sunset_hour=20)
    assert energy.dtype == np.int64
    assert np.all(energy[:24] == 0) and np.all(energy[80:] == 0)
    assert np.all(energy[24:80] > 0)
    # symmetric about 13:00 (interval 52 starts at solar noon)
    assert energy[24:52].tolist() == energy[52:80][::-1].tolist()
    assert int(energy.max()) <= energy_wh_at_power(6000, 900)
    # The half-sine integral over the day is peak * 2 * day / pi Wh (minus <1 Wh per interval).
    expected = 6000 * 2 * 14 / np.pi
    assert expected - 56 <= int(energy.sum()) <= expected


def test_clear_sky_repeats_every_day() -> None:
    energy = clear_sky_wh(1000, 3600, 72)
    assert energy[:24].tolist() == energy[24:48].tolist() == energy[48:].tolist()


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


@pytest.mark.parametrize("profile", sorted(LOAD_SHAPES))
@pytest.mark.parametrize("interval_seconds", [900, 1800, 3600])
def test_daily_load_sums_to_exactly_the_daily_energy(profile: str, interval_seconds: int) -> None:
    per_day = intervals_per_day(interval_seconds)
    load = daily_load_wh(9_123, interval_seconds, 3 * per_day, profile=profile)
    for day in range(3):
        assert int(load[day * per_day : (day + 1) * per_day].sum()) == 9_123


def test_residential_load_peaks_in_the_evening_and_dips_at_night() -> None:
    load = daily_load_wh(10_000, 900, 96)
    assert 72 <= int(np.argmax(load)) <= 84  # 18:00 - 21:00
    assert int(load[12:20].mean()) < int(load[72:84].mean()) / 2


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
