"""What the agent tests share: contexts, specs of each kind, and a driver of one agent."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from simulation.agents import (
    Agent,
    AgentContext,
    MarketView,
    MeterSample,
    OrderIntent,
    Sky,
)
from simulation.scenario import (
    ArraySpec,
    BatterySpec,
    DataCenterSpec,
    JobSpec,
    LoadSpec,
    PvSpec,
    StrategySpec,
)

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
C = 10**15  # base units per Wh in one currency unit per kWh
CTX = AgentContext(seed=11, intervals=96, interval_seconds=900, penalty_price_per_wh=C // 2)
NO_CLOUDS = Sky.uniform(10_000, CTX)
"""A clear sky over CTX's run (a day from midnight, 1 June 2026, Europe/Berlin)."""
HOME_LOAD = LoadSpec(annual_wh=3_285_000, profile="h0", noise=0.1)

STRATEGY = StrategySpec(
    charge_price_per_wh=12 * C // 100,
    discharge_price_per_wh=20 * C // 100,
    price_window=96,
    low_percentile=25,
    high_percentile=75,
)


def pv_spec(**overrides: object) -> PvSpec:
    spec = PvSpec(
        name="pv",
        count=1,
        collateral_base_units=None,
        peak_w=6000,
        array=ArraySpec(),
        load=HOME_LOAD,
        forecast_error=0.15,
        floor_price_per_wh=6 * C // 100,
        cap_price_per_wh=30 * C // 100,
    )
    return replace(spec, **overrides)  # type: ignore[arg-type]


def battery_spec(**overrides: object) -> BatterySpec:
    spec = BatterySpec(
        name="battery",
        count=1,
        collateral_base_units=None,
        capacity_wh=10_000,
        max_power_w=5000,
        round_trip_efficiency=0.9,
        initial_soc=0.5,
        min_soc=0.1,
        max_soc=0.95,
        pv_peak_w=0,
        array=ArraySpec(),
        load=LoadSpec(annual_wh=0),
        forecast_error=0.1,
        floor_price_per_wh=6 * C // 100,
        cap_price_per_wh=30 * C // 100,
        strategy=STRATEGY,
    )
    return replace(spec, **overrides)  # type: ignore[arg-type]


def dc_spec(jobs: Sequence[JobSpec], **overrides: object) -> DataCenterSpec:
    spec = DataCenterSpec(
        name="dc",
        count=1,
        collateral_base_units=None,
        base_load_w=40_000,
        base_load_noise=0.03,
        max_price_per_wh=40 * C // 100,
        flex_prices_per_wh=(6 * C // 100, 9 * C // 100, 12 * C // 100, 16 * C // 100),
        jobs=tuple(jobs),
    )
    return replace(spec, **overrides)  # type: ignore[arg-type]


def fills_at(price: int, intents: Sequence[OrderIntent], fraction: float = 1.0) -> tuple[int, int]:
    """A price-taking market: bids at or above ``price`` and asks at or below it fill."""
    bought = sum(i.quantity_wh for i in intents if i.side == "buy" and i.price_per_wh >= price)
    sold = sum(i.quantity_wh for i in intents if i.side == "sell" and i.price_per_wh <= price)
    return math.floor(bought * fraction), math.floor(sold * fraction)


def drive(
    agent: Agent,
    prices: Sequence[int],
    fraction: Callable[[int], float] = lambda t: 1.0,
) -> list[tuple[list[OrderIntent], tuple[int, int], MeterSample]]:
    """Run ``agent`` through ``len(prices)`` intervals of a price-taking market."""
    out = []
    history: list[int | None] = []
    for t, price in enumerate(prices):
        intents = agent.orders(t, MarketView(900, tuple(history)))
        bought, sold = fills_at(price, intents, fraction(t))
        agent.on_fills(t, bought, sold, price if bought or sold else None)
        out.append((intents, (bought, sold), agent.meter(t)))
        history.append(price)
    return out


def day_prices(cheap: int = 6, dear: int = 30) -> list[int]:
    """Dear at night and in the evening, cheap around midday (currency cents per kWh)."""
    return [(cheap if 36 <= t < 68 else dear) * C // 100 for t in range(96)]
