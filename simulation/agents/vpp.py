"""VPP aggregator: many small homes (PV, batteries, loads) trading as one participant.

Choice: the VPP is **one participant** with one key, one deposit and one meter reading per
interval (the sum of its members' meters, as an aggregator's settlement meter would report).
Its members are modelled inside it:

* ``homes`` homes each have a load of ``load_kwh_per_year`` on the ``load_profile`` standard
  profile, scaled by a member size factor ``1 + member_spread * u`` (``u`` uniform in
  ``[-1, 1]``, drawn per member), with their own time shift and noise;
* the first ``pv_homes`` have a PV array of ``pv_peak_w`` times their size factor, each with
  its own forecast error (which partly cancels across members: the aggregate forecast is
  better than any member's);
* the first ``battery_homes`` have a battery of ``battery_capacity_kwh`` and
  ``battery_max_power_w`` times their size factor. The aggregator dispatches them pro rata
  to capacity, so the fleet behaves as one battery with the summed capacity and power.
  Member batteries start half full and are kept between 10 % and 95 % of capacity.

Netting members against each other first is the aggregator's value: only the net position
goes to the market. It is quoted as a small stepped curve (the PV tranche at the floor
price, the storage tranche at the strategy's limit, or on the buy side the demand tranche at
the cap and the charging tranche at the charge limit), and :attr:`batch` tells the driver to
submit those orders together through ``/orders:batch``.
"""

from __future__ import annotations

import numpy as np

from simulation.agents.base import AgentContext
from simulation.agents.site import SiteAgent, Sky
from simulation.agents.storage import Storage, StorageStrategy
from simulation.profiles import I64, with_noise
from simulation.scenario import VppSpec


class VppAggregator(SiteAgent):
    """A VPP built from a ``[[agents.vpp]]`` group (see the module docstring)."""

    kind = "vpp"
    batch = True

    def __init__(self, name: str, context: AgentContext, spec: VppSpec, sky: Sky) -> None:
        super().__init__(
            name,
            context,
            floor_price_per_wh=spec.floor_price_per_wh,
            cap_price_per_wh=spec.cap_price_per_wh,
            collateral_base_units=spec.collateral_base_units,
        )
        self.spec = spec
        n, seconds = context.intervals, context.interval_seconds
        sizes = 1.0 + spec.member_spread * self.stream("members").uniform(-1.0, 1.0, spec.homes)
        self.member_sizes: tuple[float, ...] = tuple(float(s) for s in sizes)
        generation: I64 = np.zeros(n, dtype=np.int64)
        generation_forecast: I64 = np.zeros(n, dtype=np.int64)
        load: I64 = np.zeros(n, dtype=np.int64)
        load_forecast: I64 = np.zeros(n, dtype=np.int64)
        for home, size in enumerate(self.member_sizes):
            expected, actual = self.site_load(
                spec.load, f"load-{home}", annual_wh=int(spec.load.annual_wh * size)
            )
            load_forecast += expected
            load += actual
            if home < spec.pv_homes:
                member_generation = sky.generation_wh(spec.array, int(spec.pv_peak_w * size))
                generation += member_generation
                forecast_stream = self.stream(f"forecast-{home}")
                generation_forecast += with_noise(
                    member_generation, forecast_stream, spec.forecast_error
                )
        self.set_profiles(
            generation_wh=generation,
            generation_forecast_wh=generation_forecast,
            load_wh=load,
            load_forecast_wh=load_forecast,
        )
        fleet = self.member_sizes[: spec.battery_homes]
        if fleet:
            self.set_storage(
                Storage(
                    capacity_wh=sum(max(1, int(spec.battery_capacity_wh * s)) for s in fleet),
                    max_power_w=sum(max(1, int(spec.battery_max_power_w * s)) for s in fleet),
                    interval_seconds=seconds,
                    round_trip_efficiency=spec.round_trip_efficiency,
                    initial_soc=0.5,
                    min_soc=0.1,
                    max_soc=0.95,
                ),
                StorageStrategy(spec.strategy, spec.round_trip_efficiency),
            )
