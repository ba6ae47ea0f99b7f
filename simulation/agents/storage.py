"""Battery physics (state of charge, power and energy limits, losses) and its price strategy.

Efficiency
    The round-trip efficiency ``eta`` is split evenly: charging stores ``sqrt(eta)`` of the
    energy taken from the grid, discharging delivers ``sqrt(eta)`` of the energy drawn from
    the cells. A full cycle therefore returns ``eta`` of what went in, and the loss shows up
    on both legs as it does in a real inverter plus cells.

Integers
    State of charge is whole Wh. Storing ``e`` grid Wh adds ``floor(e * sqrt(eta))``;
    delivering ``e`` grid Wh removes ``ceil(e / sqrt(eta))``. Both round against the battery
    (a fraction of a Wh is lost, never created), and both are clamped to the SoC bounds, so
    ``min_wh <= soc_wh <= max_wh`` holds after every call whatever the float arithmetic does.

Power limit
    ``power_wh`` is the energy the inverter moves in one interval at ``max_power_w`` (rounded
    down), on the grid side, for charging and discharging alike.
"""

from __future__ import annotations

import math

from simulation.agents.base import MarketView, percentile_price
from simulation.profiles import energy_wh_at_power
from simulation.scenario import StrategySpec

_EPS = 1e-9


class Storage:
    """One battery (or a fleet dispatched as one) with whole-Wh state of charge."""

    def __init__(
        self,
        *,
        capacity_wh: int,
        max_power_w: int,
        interval_seconds: int,
        round_trip_efficiency: float,
        initial_soc: float,
        min_soc: float,
        max_soc: float,
    ) -> None:
        if capacity_wh <= 0 or max_power_w <= 0:
            raise ValueError("capacity and power must be positive")
        if not 0.0 < round_trip_efficiency <= 1.0:
            raise ValueError("round-trip efficiency must be in (0, 1]")
        if not 0.0 <= min_soc <= initial_soc <= max_soc <= 1.0 or min_soc >= max_soc:
            raise ValueError("need 0 <= min_soc <= initial_soc <= max_soc <= 1, min < max")
        self.capacity_wh = capacity_wh
        self.min_wh = min(capacity_wh, math.ceil(min_soc * capacity_wh - _EPS))
        self.max_wh = max(self.min_wh, math.floor(max_soc * capacity_wh + _EPS))
        self.soc_wh = min(self.max_wh, max(self.min_wh, round(initial_soc * capacity_wh)))
        self.power_wh = energy_wh_at_power(max_power_w, interval_seconds)
        self.round_trip_efficiency = round_trip_efficiency
        self.leg_efficiency = math.sqrt(round_trip_efficiency)
        self.charged_wh = 0
        """Grid-side energy taken in so far."""
        self.discharged_wh = 0
        """Grid-side energy delivered so far."""

    @property
    def soc_fraction(self) -> float:
        """State of charge as a fraction of capacity."""
        return self.soc_wh / self.capacity_wh

    def chargeable_wh(self) -> int:
        """Grid-side Wh it can take this interval without passing ``max_wh`` or the power."""
        room = self.max_wh - self.soc_wh
        return max(0, min(self.power_wh, math.floor(room / self.leg_efficiency + _EPS)))

    def deliverable_wh(self) -> int:
        """Grid-side Wh it can deliver this interval without passing ``min_wh`` or the power."""
        available = self.soc_wh - self.min_wh
        return max(0, min(self.power_wh, math.floor(available * self.leg_efficiency + _EPS)))

    def charge(self, grid_wh: int) -> int:
        """Take up to ``grid_wh`` from the grid; return what was taken (grid side)."""
        taken = min(max(0, grid_wh), self.chargeable_wh())
        stored = math.floor(taken * self.leg_efficiency + _EPS)
        self.soc_wh = min(self.max_wh, self.soc_wh + stored)
        self.charged_wh += taken
        return taken

    def discharge(self, grid_wh: int) -> int:
        """Deliver up to ``grid_wh`` to the grid; return what was delivered (grid side)."""
        delivered = min(max(0, grid_wh), self.deliverable_wh())
        drawn = math.ceil(delivered / self.leg_efficiency - _EPS)
        self.soc_wh = max(self.min_wh, self.soc_wh - drawn)
        self.discharged_wh += delivered
        return delivered


class StorageStrategy:
    """Charge when cheap, sell when expensive, judged against recent clearing prices.

    Limits: over the last ``price_window`` intervals with a trade, the charge limit is
    ``min(charge_price, low_percentile of those prices)`` and the sell limit
    ``max(discharge_price, high_percentile)``; with fewer than :attr:`MIN_HISTORY` prices,
    just the configured ``charge_price`` and ``discharge_price``. The sell limit is then
    raised to at least ``ceil(charge_limit / eta)``, so stored energy is never sold for less
    than it cost including losses.

    Side: the storage offers (asks at the sell limit) when the last clearing price is in the
    upper half of ``[charge limit, sell limit]``, and bids to charge at the charge limit
    otherwise. Before any trade it looks at its state of charge instead: at least half full
    it offers, else it bids. One side per interval, so its bid and ask never meet.
    """

    MIN_HISTORY = 4
    """Prices needed before the percentiles replace the configured limits."""

    def __init__(self, spec: StrategySpec, round_trip_efficiency: float) -> None:
        self.spec = spec
        self.round_trip_efficiency = round_trip_efficiency

    def limits(self, view: MarketView) -> tuple[int, int]:
        """``(charge limit, sell limit)`` in base units per Wh for the next interval."""
        spec = self.spec
        prices = view.known_prices(spec.price_window)
        low, high = spec.charge_price_per_wh, spec.discharge_price_per_wh
        if len(prices) >= self.MIN_HISTORY:
            low = min(low, percentile_price(prices, spec.low_percentile))
            high = max(high, percentile_price(prices, spec.high_percentile))
        low = max(1, low)
        # ceil(low / eta) with eta a float: exact enough for a limit, and never below low.
        high = max(high, low, math.ceil(low / self.round_trip_efficiency))
        return low, high

    def wants_to_sell(self, view: MarketView, low: int, high: int, soc_fraction: float) -> bool:
        """True to offer stored energy this interval, False to bid for charging."""
        last = view.last_price()
        if last is None:
            return soc_fraction >= 0.5
        return 2 * last >= low + high
