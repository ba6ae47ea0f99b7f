"""PV prosumer: a rooftop array and a home's load behind one meter, no storage.

Generation is the clear-sky curve of ``peak_w`` scaled by the scenario's shared cloudiness
(:class:`~simulation.agents.site.Sky`). The prosumer bids from a *forecast* of it: the
actual value times ``1 + forecast_error * e`` (``e`` standard normal, per interval, from the
agent's own stream; clipped at zero). Its load forecast is the expected daily profile; the
actual load adds ``load_noise``. It asks a forecast surplus at ``floor_price_per_wh`` and
bids a forecast deficit at ``cap_price_per_wh``; when the sun or the load disappoint, the
meter shows less export than it sold and the contract settles a shortfall.
"""

from __future__ import annotations

from simulation.agents.base import AgentContext
from simulation.agents.site import SiteAgent, Sky
from simulation.profiles import with_noise
from simulation.scenario import PvSpec


class PvProsumer(SiteAgent):
    """A rooftop PV prosumer built from a ``[[agents.pv]]`` group."""

    kind = "pv"

    def __init__(self, name: str, context: AgentContext, spec: PvSpec, sky: Sky) -> None:
        super().__init__(
            name,
            context,
            floor_price_per_wh=spec.floor_price_per_wh,
            cap_price_per_wh=spec.cap_price_per_wh,
            collateral_base_units=spec.collateral_base_units,
        )
        self.spec = spec
        generation = sky.generation_wh(spec.array, spec.peak_w)
        load_forecast, load = self.site_load(spec.load)
        self.set_profiles(
            generation_wh=generation,
            generation_forecast_wh=with_noise(
                generation, self.stream("forecast"), spec.forecast_error
            ),
            load_wh=load,
            load_forecast_wh=load_forecast,
        )
