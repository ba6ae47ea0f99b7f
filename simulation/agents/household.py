"""Household consumer: a daily load profile with noise, bought at a retail price cap.

The expected profile (``load_kwh_per_day`` over the ``load_profile`` shape, exactly that
many Wh per day) is the forecast it bids; the actual load adds ``load_noise`` (relative
standard deviation, per interval). It bids the forecast at ``cap_price_per_wh``, the price of
its retail tariff: it buys from neighbours whenever they are cheaper than the grid. Whatever
the market does not supply comes from the grid (the meter shows it as import).
"""

from __future__ import annotations

from simulation.agents.base import AgentContext
from simulation.agents.site import SiteAgent
from simulation.profiles import daily_load_wh, with_noise
from simulation.scenario import HouseholdSpec


class Household(SiteAgent):
    """A household built from a ``[[agents.household]]`` group."""

    kind = "household"

    def __init__(self, name: str, context: AgentContext, spec: HouseholdSpec) -> None:
        super().__init__(
            name,
            context,
            floor_price_per_wh=spec.cap_price_per_wh,  # never sells: it has no generation
            cap_price_per_wh=spec.cap_price_per_wh,
            collateral_base_units=spec.collateral_base_units,
        )
        self.spec = spec
        expected = daily_load_wh(
            spec.load_wh_per_day,
            context.interval_seconds,
            context.intervals,
            profile=spec.load_profile,
        )
        self.set_profiles(
            load_wh=with_noise(expected, self.stream("load"), spec.load_noise),
            load_forecast_wh=expected,
        )
