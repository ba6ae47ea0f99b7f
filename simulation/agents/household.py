"""Household consumer: a standard load profile, individualised, bought at a retail price cap.

Its profile is the BDEW standard load profile ``load_profile`` scaled to
``load_kwh_per_year`` over the scenario's calendar and shifted by the home's own habits;
that is the forecast it bids. The actual load adds persistent noise (see
:mod:`simulation.load`). It bids the forecast at ``cap_price_per_wh``, the price of its retail
tariff: it buys from neighbours whenever they are cheaper than the grid. Whatever the market
does not supply comes from the grid (the meter shows it as import). A shop, an office or a
bakery without generation is a household on a business profile (``g0`` .. ``g6``).
"""

from __future__ import annotations

from simulation.agents.base import AgentContext
from simulation.agents.site import SiteAgent
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
        forecast, actual = self.site_load(spec.load)
        self.set_profiles(load_wh=actual, load_forecast_wh=forecast)
