"""A metered site: own generation, own load and optional storage behind one net meter.

PV prosumers, batteries, households and VPP aggregators are all sites; they differ in which
parts they have and how those are sized. The bidding and the physics are shared here.

Bidding for interval ``t`` (from forecasts; the actual values differ):

* Forecast surplus ``s = generation - load``.
* With storage, the battery first serves the site itself: when the strategy wants to sell
  (prices are high), it covers the site's deficit as far as it can; when the strategy wants
  to charge (prices are low), it soaks up the site's surplus.
* What remains is traded: a surplus is asked at the site's floor price, a deficit bid at its
  cap price. When the strategy wants to sell, the battery's remaining deliverable energy is
  asked at the strategy's sell limit; when it wants to charge, its remaining room is bid at
  the charge limit.
* The site never quotes a bid and an ask that could match each other: a storage that wants
  to sell only asks (unless it is empty and the site short), one that wants to charge only
  bids (unless it is full and the site long).

Delivery (the meter): the site aims at its contracted net export ``sold - bought``. Without
storage, the meter simply shows ``generation - load``, so a forecast error turns into a
shortfall (or a spill). With storage, the battery makes up the difference between the
contracted position and what generation minus load turned out to be, within its limits:
it discharges to cover a shortfall or extra load, and charges from an unexpected surplus.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from simulation.agents.base import (
    HISTORY_INTERVALS,
    Agent,
    AgentContext,
    MarketView,
    MeterSample,
    OrderIntent,
)
from simulation.agents.storage import Storage, StorageStrategy
from simulation.load import site_load_wh
from simulation.profiles import I64, seeded_rng, weather_clearness_bps
from simulation.scenario import ArraySpec, CalendarSpec, LoadSpec, WeatherSpec
from simulation.solar import clear_sky_wh, pv_wh


@dataclass(frozen=True)
class Sky:
    """The weather every PV in a scenario shares, and the run it covers.

    ``clearness_bps`` is the cloud process per interval; the clear-sky envelope of each array
    comes from :mod:`simulation.solar` (pvlib), computed once per distinct array for the run.
    """

    clearness_bps: I64
    calendar: CalendarSpec
    interval_seconds: int
    weather: WeatherSpec = field(default_factory=WeatherSpec)

    @classmethod
    def from_spec(cls, weather: WeatherSpec, context: AgentContext) -> Sky:
        """Draw the scenario's cloudiness from its own stream (``seed``, ``"weather"``)."""
        clearness = weather_clearness_bps(
            seeded_rng(context.seed, "weather"),
            context.intervals,
            mean=weather.mean_clearness,
            persistence=weather.persistence,
            volatility=weather.volatility,
        )
        return cls(clearness, context.calendar, context.interval_seconds, weather)

    @classmethod
    def uniform(cls, clearness_bps: int, context: AgentContext) -> Sky:
        """The same clearness in every interval of ``context``'s run (10,000: no clouds)."""
        clearness = np.full(context.intervals, clearness_bps, dtype=np.int64)
        return cls(clearness, context.calendar, context.interval_seconds)

    def clear_sky_wh(self, array: ArraySpec, peak_w: int) -> I64:
        """The array's clear-sky energy per interval for ``peak_w`` of nameplate (its envelope)."""
        return clear_sky_wh(
            array,
            peak_w,
            self.calendar,
            len(self.clearness_bps),
            self.interval_seconds,
            self.weather,
        )

    def generation_wh(self, array: ArraySpec, peak_w: int) -> I64:
        """Actual PV energy per interval: the clear-sky envelope times the clearness."""
        return pv_wh(self.clear_sky_wh(array, peak_w), self.clearness_bps)


def _ints(values: I64, intervals: int, what: str) -> I64:
    array = np.asarray(values, dtype=np.int64)
    if array.shape != (intervals,) or np.any(array < 0):
        raise ValueError(f"{what} must be {intervals} non-negative values")
    return array


@dataclass(frozen=True, slots=True)
class SitePlan:
    """What the site planned for one interval (kept for tests and the report)."""

    generation_forecast_wh: int
    load_forecast_wh: int
    storage_sells: bool | None
    """True: storage offered; False: storage bid to charge; None: no storage."""


class SiteAgent(Agent):
    """A site with generation, load and optional storage (see the module docstring)."""

    kind = "site"

    def __init__(
        self,
        name: str,
        context: AgentContext,
        *,
        floor_price_per_wh: int,
        cap_price_per_wh: int,
        collateral_base_units: int | None = None,
    ) -> None:
        super().__init__(name, context, collateral_base_units=collateral_base_units)
        n = context.intervals
        self.floor_price_per_wh = floor_price_per_wh
        self.cap_price_per_wh = cap_price_per_wh
        self.generation_wh: I64 = np.zeros(n, dtype=np.int64)
        self.generation_forecast_wh: I64 = np.zeros(n, dtype=np.int64)
        self.load_wh: I64 = np.zeros(n, dtype=np.int64)
        self.load_forecast_wh: I64 = np.zeros(n, dtype=np.int64)
        self.storage: Storage | None = None
        self.strategy: StorageStrategy | None = None
        self.plans: deque[SitePlan] = deque(maxlen=HISTORY_INTERVALS)
        """The plans of the last :data:`~simulation.agents.base.HISTORY_INTERVALS` intervals."""
        self.soc_wh_log: list[int] = []
        """State of charge after each delivered interval (empty without storage)."""

    def set_profiles(
        self,
        *,
        generation_wh: I64 | None = None,
        generation_forecast_wh: I64 | None = None,
        load_wh: I64 | None = None,
        load_forecast_wh: I64 | None = None,
    ) -> None:
        """Install actual and forecast generation and load (Wh per interval of the run)."""
        n = self.context.intervals
        if generation_wh is not None:
            self.generation_wh = _ints(generation_wh, n, "generation_wh")
            forecast = generation_wh if generation_forecast_wh is None else generation_forecast_wh
            self.generation_forecast_wh = _ints(forecast, n, "generation_forecast_wh")
        if load_wh is not None:
            self.load_wh = _ints(load_wh, n, "load_wh")
            forecast = load_wh if load_forecast_wh is None else load_forecast_wh
            self.load_forecast_wh = _ints(forecast, n, "load_forecast_wh")

    def site_load(
        self, load: LoadSpec, label: str = "load", annual_wh: int | None = None
    ) -> tuple[I64, I64]:
        """``(forecast, actual)`` load in whole Wh of one site of this agent (see
        :mod:`simulation.load`), from the agent's streams ``label-shift`` and ``label``."""
        context = self.context
        return site_load_wh(
            load,
            context.calendar,
            context.intervals,
            context.interval_seconds,
            shift_rng=self.stream(f"{label}-shift"),
            noise_rng=self.stream(label),
            annual_wh=annual_wh,
        )

    def set_storage(self, storage: Storage, strategy: StorageStrategy) -> None:
        """Put a battery behind the meter, run by ``strategy``."""
        self.storage, self.strategy = storage, strategy

    # ------------------------------------------------------------------ bidding

    def _plan(self, t: int, view: MarketView) -> list[OrderIntent]:
        gen_f = int(self.generation_forecast_wh[t])
        load_f = int(self.load_forecast_wh[t])
        surplus = gen_f - load_f
        storage, strategy = self.storage, self.strategy
        if storage is None or strategy is None:
            self.plans.append(SitePlan(gen_f, load_f, None))
            if surplus > 0:
                return [OrderIntent("sell", surplus, self.floor_price_per_wh)]
            if surplus < 0:
                return [OrderIntent("buy", -surplus, self.cap_price_per_wh)]
            return []

        low, high = strategy.limits(view)
        sells = strategy.wants_to_sell(view, low, high, storage.soc_fraction)
        self.plans.append(SitePlan(gen_f, load_f, sells))
        can_discharge = storage.deliverable_wh()
        can_charge = storage.chargeable_wh()
        if sells:  # expensive: the battery covers the site's own deficit before selling
            can_charge = 0
            if surplus < 0:
                cover = min(-surplus, can_discharge)
                surplus += cover
                can_discharge -= cover
        else:  # cheap: it soaks up the site's own surplus, and buys for the rest
            can_discharge = 0
            if surplus > 0:
                absorb = min(surplus, can_charge)
                surplus -= absorb
                can_charge -= absorb

        intents: list[OrderIntent] = []
        if surplus > 0:
            intents.append(OrderIntent("sell", surplus, self.floor_price_per_wh))
        elif surplus < 0:
            intents.append(OrderIntent("buy", -surplus, self.cap_price_per_wh))
        if sells and can_discharge > 0 and surplus >= 0:
            intents.append(OrderIntent("sell", can_discharge, high))
        elif not sells and can_charge > 0 and surplus <= 0:
            intents.append(OrderIntent("buy", can_charge, low))
        return intents

    # ------------------------------------------------------------------ delivery

    def _deliver(self, t: int, bought_wh: int, sold_wh: int) -> MeterSample:
        generation = int(self.generation_wh[t])
        load = int(self.load_wh[t])
        net = generation - load  # net export before the battery acts
        storage = self.storage
        if storage is not None:
            gap = (sold_wh - bought_wh) - net  # > 0: the contract wants more export
            if gap > 0:
                net += storage.discharge(gap)
            elif gap < 0:
                net -= storage.charge(-gap)
            self.soc_wh_log.append(storage.soc_wh)
        return MeterSample(
            imported_wh=max(0, -net),
            exported_wh=max(0, net),
            load_wh=load,
            generation_wh=generation,
        )

    def _max_exposure(self) -> tuple[int, int, int]:
        power = self.storage.power_wh if self.storage is not None else 0
        buy_wh = int(self.load_forecast_wh.max(initial=0)) + power
        sell_wh = int(self.generation_forecast_wh.max(initial=0)) + power
        price = self.cap_price_per_wh
        if self.strategy is not None:
            price = max(price, self.strategy.spec.charge_price_per_wh)
        return buy_wh, price, sell_wh
