"""Battery: storage alone, or behind a PV roof and a load, trading price spreads.

State of charge, power limit and round-trip efficiency are modelled by
:class:`~simulation.agents.storage.Storage` (efficiency ``sqrt(eta)`` on each leg, whole-Wh
SoC that never leaves ``[min_soc, max_soc]``). The price strategy is
:class:`~simulation.agents.storage.StorageStrategy`: it bids to charge at a low limit (the
``low_percentile`` of recent clearing prices, at most ``charge_price_per_wh``) and offers
at a high limit (the ``high_percentile``, at least ``discharge_price_per_wh``), choosing the
side from the last clearing price. With ``pv_peak_w > 0`` or a load, the site logic of
:mod:`simulation.agents.site` applies: the battery serves the home first and absorbs the
difference between what was contracted and what generation and load turned out to be.
"""

from __future__ import annotations

from simulation.agents.base import AgentContext
from simulation.agents.site import SiteAgent, Sky
from simulation.agents.storage import Storage, StorageStrategy
from simulation.profiles import with_noise
from simulation.scenario import BatterySpec


class BatteryAgent(SiteAgent):
    """A battery (with optional PV and load) built from a ``[[agents.battery]]`` group."""

    kind = "battery"

    def __init__(self, name: str, context: AgentContext, spec: BatterySpec, sky: Sky) -> None:
        super().__init__(
            name,
            context,
            floor_price_per_wh=spec.floor_price_per_wh,
            cap_price_per_wh=spec.cap_price_per_wh,
            collateral_base_units=spec.collateral_base_units,
        )
        self.spec = spec
        seconds = context.interval_seconds
        generation = sky.generation_wh(spec.array, spec.pv_peak_w)
        generation_forecast = with_noise(generation, self.stream("forecast"), spec.forecast_error)
        load_forecast, load = self.site_load(spec.load)
        self.set_profiles(
            generation_wh=generation,
            generation_forecast_wh=generation_forecast,
            load_wh=load,
            load_forecast_wh=load_forecast,
        )
        self.set_storage(
            Storage(
                capacity_wh=spec.capacity_wh,
                max_power_w=spec.max_power_w,
                interval_seconds=seconds,
                round_trip_efficiency=spec.round_trip_efficiency,
                initial_soc=spec.initial_soc,
                min_soc=spec.min_soc,
                max_soc=spec.max_soc,
            ),
            StorageStrategy(spec.strategy, spec.round_trip_efficiency),
        )
