"""The agent interface: what a simulated participant tells the market, and when.

A driver runs every agent through the same cycle for each delivery interval ``t`` of the run
(``t`` counts from 0 at the run's first interval; mapping it to an on-chain interval id is
the driver's business)::

    intents = agent.orders(t, view)        # before gate closure of t
    ...clear t...
    agent.on_fills(t, bought_wh, sold_wh, price_per_wh)   # always, with 0 when unfilled
    reading = agent.meter(t)               # after delivery of t
    ...sign reading with agent.meter_private_key, submit, settle...

The three calls must come in this order, for ``t = 0, 1, 2, ...`` without gaps; anything
else raises :class:`AgentProtocolError`, because an agent that skipped a delivery would
silently carry a wrong state of charge or a wrong amount of unfinished work.

What an agent may know before gate closure is in :class:`MarketView`: the interval length,
the past clearing prices and the market's minimum order size. Its own fills it learns
through ``on_fills`` and keeps itself (:attr:`Agent.fills`), so there is one source of truth
for them.

Everything an agent hands out is an exact ``int``: order quantities in Wh, limit prices in
token base units per Wh, meter readings in Wh, collateral in base units. Floats stay inside
the physics.

Keys: each agent has a participant key (signs orders) and a meter key (signs readings),
both derived from the scenario seed and the agent name by :func:`derive_private_key`. That
makes a run reproducible, and it also means anyone who knows the seed knows the keys:
they are for local testnets only.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from market.orders import MAX_PRICE_PER_WH, MAX_QUANTITY_WH, MIN_PRICE_PER_WH, MIN_QUANTITY_WH
from market.service import DEFAULT_MIN_ORDER_WH
from simulation.profiles import seeded_rng
from simulation.scenario import CalendarSpec

Side = Literal["buy", "sell"]
"""Order side: a bid (``buy``) or an ask (``sell``)."""

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""Order of the secp256k1 group; a private key is an integer in ``[1, n - 1]``."""


HISTORY_INTERVALS = 192
"""How many past intervals of fills, meter samples and plans an agent keeps (two days of
15-minute intervals): a year-long run must not hold 35,040 of each per agent."""


class AgentProtocolError(RuntimeError):
    """Raised when a driver calls ``orders``/``on_fills``/``meter`` out of order or with fills
    the agent never asked for. It is a bug in the driver, not bad user input."""


def _check_int(value: object, what: str, low: int, high: int) -> int:
    if type(value) is not int:
        raise TypeError(f"{what} must be an int, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{what}={value} is outside [{low}, {high}]")
    return value


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order an agent wants placed for one interval: side, Wh and limit price.

    Both are plain ``int`` within the order bounds of :mod:`market.orders` (a numpy integer
    is refused, so nothing downstream sees a fixed-width type).
    """

    side: Side
    quantity_wh: int
    price_per_wh: int

    def __post_init__(self) -> None:
        if self.side not in ("buy", "sell"):
            raise ValueError(f"side must be 'buy' or 'sell', got {self.side!r}")
        _check_int(self.quantity_wh, "quantity_wh", MIN_QUANTITY_WH, MAX_QUANTITY_WH)
        _check_int(self.price_per_wh, "price_per_wh", MIN_PRICE_PER_WH, MAX_PRICE_PER_WH)


@dataclass(frozen=True, slots=True)
class MarketView:
    """What an agent may know when it places orders for an interval.

    ``recent_prices`` are the clearing prices of past intervals, oldest first, one entry
    per interval; ``None`` where nothing traded (for pay-as-bid, the driver passes the
    volume-weighted average price, rounded down). A driver may pass only the last few
    hundred intervals; agents look back at most their configured window.
    """

    interval_seconds: int
    recent_prices: tuple[int | None, ...] = ()
    min_order_wh: int = DEFAULT_MIN_ORDER_WH
    """The market's minimum order size (``GET /market`` ``bounds.minQuantityWh``): an agent
    does not place a smaller order, which intake would refuse; it stays unfilled."""

    def known_prices(self, window: int) -> list[int]:
        """The non-empty prices among the last ``window`` intervals, oldest first."""
        return [p for p in self.recent_prices[-window:] if p is not None]

    def last_price(self) -> int | None:
        """The most recent clearing price, or ``None`` if nothing has traded yet."""
        for price in reversed(self.recent_prices):
            if price is not None:
                return price
        return None


@dataclass(frozen=True, slots=True)
class MeterSample:
    """What a site's meter saw in one interval, plus what stayed behind it, in Wh.

    ``imported_wh`` and ``exported_wh`` are the signed meter reading (a net meter: at most
    one of them is non-zero). ``load_wh`` is the site's own consumption (without charging
    a battery) and ``generation_wh`` its own generation; they feed the report's energy mix.
    """

    imported_wh: int
    exported_wh: int
    load_wh: int
    generation_wh: int

    def __post_init__(self) -> None:
        values = (self.imported_wh, self.exported_wh, self.load_wh, self.generation_wh)
        if all(type(v) is int and 0 <= v < 2**63 for v in values):
            return  # the common case, checked in one pass
        for name in ("imported_wh", "exported_wh", "load_wh", "generation_wh"):
            _check_int(getattr(self, name), name, 0, 2**63 - 1)

    @property
    def self_supplied_wh(self) -> int:
        """Own consumption met on site (by own generation or storage): ``load - imported``."""
        return max(0, self.load_wh - self.imported_wh)


@dataclass(frozen=True, slots=True)
class Fill:
    """What the market gave an agent in one interval (``price_per_wh`` None: no trade)."""

    interval: int
    bought_wh: int
    sold_wh: int
    price_per_wh: int | None


@dataclass(frozen=True)
class AgentContext:
    """What every agent learns from the scenario at construction."""

    seed: int
    intervals: int
    interval_seconds: int
    penalty_price_per_wh: int
    calendar: CalendarSpec = field(default_factory=CalendarSpec)
    """When interval 0 starts, on which clock, and the holidays (for the load profiles)."""


def derive_private_key(seed: int, name: str, role: str) -> bytes:
    """A reproducible secp256k1 private key for ``role`` (``participant``/``meter``) of ``name``.

    SHA-256 of a domain tag, the seed, the name, the role and a counter, taken as an integer;
    the counter moves on in the (astronomically unlikely) case it is 0 or not below the
    group order. Testnet only: the seed reveals the key.
    """
    counter = 0
    while True:
        material = f"wattledger-sim-key\x00{seed}\x00{name}\x00{role}\x00{counter}".encode()
        key = int.from_bytes(hashlib.sha256(material).digest(), "big")
        if 0 < key < SECP256K1_ORDER:
            return key.to_bytes(32, "big")
        counter += 1


def address_of(private_key: bytes) -> str:
    """The checksummed Ethereum address of a 32-byte secp256k1 private key."""
    from eth_keys.datatypes import PrivateKey  # imported here: only drivers that sign need it

    return str(PrivateKey(private_key).public_key.to_checksum_address())


_Phase = Literal["orders", "fills", "meter"]


@dataclass
class _Cycle:
    """Where the agent is in its orders -> fills -> meter cycle."""

    interval: int = 0
    expect: _Phase = "orders"
    intents: tuple[OrderIntent, ...] = ()
    bought_wh: int = 0
    sold_wh: int = 0


class Agent(ABC):
    """A simulated market participant with its own keys, deposit and bidding strategy.

    Subclasses implement :meth:`_plan`, :meth:`_deliver` and :meth:`_max_exposure`, and may
    override :meth:`_on_fills`; the public methods enforce the call order and the types.
    """

    kind: ClassVar[str]
    """Agent kind as in the scenario file (``pv``, ``battery``, ...)."""
    batch: ClassVar[bool] = False
    """True when the driver should submit this agent's orders in one ``/orders:batch``."""

    def __init__(
        self, name: str, context: AgentContext, *, collateral_base_units: int | None = None
    ) -> None:
        self.name = name
        self.context = context
        self.rng: np.random.Generator = self.stream("main")
        """This agent's own general random stream (never the global one)."""
        self.participant_private_key = derive_private_key(context.seed, name, "participant")
        self.meter_private_key = derive_private_key(context.seed, name, "meter")
        self.fills: deque[Fill] = deque(maxlen=HISTORY_INTERVALS)
        """The fills of the last :data:`HISTORY_INTERVALS` intervals, in interval order."""
        self.readings: deque[MeterSample] = deque(maxlen=HISTORY_INTERVALS)
        """The meter samples of the last :data:`HISTORY_INTERVALS` intervals, in order."""
        self._collateral = collateral_base_units
        self._cycle = _Cycle()

    def stream(self, quantity: str) -> np.random.Generator:
        """A random stream of this agent for one ``quantity`` (``"load"``, ``"forecast"``...).

        One stream per quantity keeps quantities independent of each other's draws: adding
        PV to a battery does not reshuffle its load noise, and a shorter run sees the first
        values of a longer one.
        """
        return seeded_rng(self.context.seed, "agent", self.kind, self.name, quantity)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # ------------------------------------------------------------------ public cycle

    def orders(self, t: int, view: MarketView) -> list[OrderIntent]:
        """The orders this agent places for interval ``t`` (possibly none).

        All orders of one interval are on one side, or priced so that no bid of the agent
        is at or above one of its asks: an agent never trades with itself.
        """
        self._expect(t, "orders")
        # An order below the market's minimum would be refused: it is not placed, and the
        # agent's plan for it meets an unfilled order, as when a price does not clear.
        intents = tuple(i for i in self._plan(t, view) if i.quantity_wh >= view.min_order_wh)
        self._cycle.intents = intents
        self._cycle.expect = "fills"
        return list(intents)

    def on_fills(self, t: int, bought_wh: int, sold_wh: int, price_per_wh: int | None) -> None:
        """Tell the agent what it bought and sold in ``t`` (0 if unfilled) and at what price.

        ``price_per_wh`` is the interval's clearing price (``None`` when nothing traded or
        under pay-as-bid without one price). Fills above what the agent offered are refused.
        """
        self._expect(t, "fills")
        _check_int(bought_wh, "bought_wh", 0, 2**63 - 1)
        _check_int(sold_wh, "sold_wh", 0, 2**63 - 1)
        if price_per_wh is not None:
            _check_int(price_per_wh, "price_per_wh", MIN_PRICE_PER_WH, MAX_PRICE_PER_WH)
        offered = {"buy": 0, "sell": 0}
        for intent in self._cycle.intents:
            offered[intent.side] += intent.quantity_wh
        if bought_wh > offered["buy"] or sold_wh > offered["sell"]:
            raise AgentProtocolError(
                f"{self.name}: interval {t} filled {bought_wh} Wh bought / {sold_wh} Wh sold, "
                f"but it bid {offered['buy']} Wh and asked {offered['sell']} Wh"
            )
        self._cycle.bought_wh, self._cycle.sold_wh = bought_wh, sold_wh
        self.fills.append(Fill(t, bought_wh, sold_wh, price_per_wh))
        self._on_fills(t, bought_wh, sold_wh, price_per_wh)
        self._cycle.expect = "meter"

    def meter(self, t: int) -> MeterSample:
        """What this agent's meter measured in ``t`` once delivery is over."""
        self._expect(t, "meter")
        sample = self._deliver(t, self._cycle.bought_wh, self._cycle.sold_wh)
        if sample.imported_wh and sample.exported_wh:
            raise AssertionError(f"{self.name}: a net meter cannot import and export at once")
        self.readings.append(sample)
        self._cycle = _Cycle(interval=t + 1)
        return sample

    def collateral_base_units(self) -> int:
        """Tokens (base units) this agent wants deposited before its first order.

        The scenario's ``collateral`` if given; otherwise enough to lock, in every interval
        of the run at once, the most it could bid (quantity times limit price) plus the
        penalty bond of the most it could ask (quantity times the penalty price).
        """
        if self._collateral is not None:
            return self._collateral
        buy_wh, buy_price, sell_wh = self._max_exposure()
        per_interval = buy_wh * buy_price + sell_wh * self.context.penalty_price_per_wh
        return int(per_interval) * self.context.intervals

    @property
    def participant_address(self) -> str:
        """Checksummed address of the participant key."""
        return address_of(self.participant_private_key)

    @property
    def meter_address(self) -> str:
        """Checksummed address of the meter key."""
        return address_of(self.meter_private_key)

    # ------------------------------------------------------------------ for subclasses

    @abstractmethod
    def _plan(self, t: int, view: MarketView) -> list[OrderIntent]:
        """Orders for ``t``."""

    def _on_fills(self, t: int, bought_wh: int, sold_wh: int, price_per_wh: int | None) -> None:  # noqa: B027
        """Update plans after the fill of ``t`` (default: nothing beyond :attr:`fills`)."""

    @abstractmethod
    def _deliver(self, t: int, bought_wh: int, sold_wh: int) -> MeterSample:
        """Run the physics of ``t`` given the contracted position; return the meter sample."""

    @abstractmethod
    def _max_exposure(self) -> tuple[int, int, int]:
        """``(most Wh bid in one interval, highest bid price, most Wh asked in one interval)``."""

    def _expect(self, t: int, phase: _Phase) -> None:
        cycle = self._cycle
        if t != cycle.interval or phase != cycle.expect:
            raise AgentProtocolError(
                f"{self.name}: called {phase}({t}) but expected {cycle.expect}({cycle.interval}); "
                "call orders, on_fills and meter for each interval in turn"
            )
        if t >= self.context.intervals:
            raise AgentProtocolError(
                f"{self.name}: interval {t} is past the run ({self.context.intervals} intervals)"
            )


def percentile_price(prices: list[int], percentile: int) -> int:
    """The ``percentile``-th price of ``prices`` by the nearest-rank method (an exact int).

    Nearest rank: sort, take the element at rank ``ceil(p/100 * n)`` (rank 1 for p = 0).
    No interpolation, so the result is always one of the prices.
    """
    if not prices:
        raise ValueError("no prices")
    ordered = sorted(prices)
    rank = max(1, -(-percentile * len(ordered) // 100))
    return ordered[rank - 1]
