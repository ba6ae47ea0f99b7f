"""What the operator of a settlement service chooses; the chain fixes everything else.

One frozen value read by every part of the service: intake takes the meters' physical limits,
the request size and the deadline margin from it; batching and settle chunks the share of a
block's gas one transaction may use, their caps and the gas per item assumed before any
receipt was measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from market.lookup_budget import DEFAULT_LOOKUP_BURST, DEFAULT_LOOKUPS_PER_SECOND

DEFAULT_MAX_READING_WH = 10_000_000
"""Default physical maximum of one meter's import or export in one interval: 10 MWh (a large
commercial connection over 15 minutes is a few MWh; anything above is a broken meter)."""


DEFAULT_BLOCK_SECONDS = 12
"""Block time assumed unless the operator declares the chain's own: Ethereum's 12 s slot,
the slowest chain the service targets (anvil and eth-tester mine on demand, rollups every
0.25-2 s), so the default margin errs on the side of refusing early, not of a missed
reading and its penalty."""
MIN_READING_MARGIN_SECONDS = 10
"""The reading margin is never below this, however fast the chain: the settlement loop
polls every 2 s, and a node answers a receipt query with its own delays."""
READING_MARGIN_BLOCKS = 3
"""Blocks of margin before a reading deadline: the block the next tick's batch misses, the
block it is mined in, and one more for a fee-bumped replacement."""


def default_reading_margin_seconds(block_seconds: int) -> int:
    """The reading margin for a chain of ``block_seconds`` blocks: :data:`READING_MARGIN_BLOCKS`
    block times, at least :data:`MIN_READING_MARGIN_SECONDS`."""
    return max(MIN_READING_MARGIN_SECONDS, READING_MARGIN_BLOCKS * block_seconds)


@dataclass(frozen=True)
class SettlementConfig:
    """Choices of the settlement service (the chain fixes the rest).

    ``max_reading_wh``: physical maximum of import or export per interval for any meter;
    ``meter_limits_wh``: per-participant maxima (lower-case address → Wh) that override it.
    ``gas_fraction``: share of the block gas limit one transaction may use (numerator,
    denominator). ``max_batch_readings`` and ``max_settle_trades`` cap batches and chunks
    further. ``max_intake_readings``: most readings one ``POST /meter-readings:batch`` takes.
    ``reading_gas`` and ``settle_trade_gas``: gas per reading and per settled trade assumed
    before any has been measured (measured: about 20k and 10-20k).
    ``lookups_per_second`` and ``lookup_burst``: the budget of chain reads of participants
    intake has never seen registered (:mod:`market.lookup_budget`).
    ``block_seconds``: the chain's block time, as the operator declares it (default
    :data:`DEFAULT_BLOCK_SECONDS`). ``deadline_margin_seconds``: intake refuses a reading
    this close to its interval's reading deadline, or closer (``reading_deadline_too_close``),
    because a reading accepted then cannot be relied on to be mined before the deadline,
    and a missed reading costs the seller its penalty; ``None`` (the default) is
    :func:`default_reading_margin_seconds` of ``block_seconds`` (36 s for 12 s blocks).

    The default reading window (``DEFAULT_MARKET_TERMS``, 3,600 s after an interval ends) is
    ample beside it: the loop sends an interval's queued readings on its next tick (every
    2 s by default), in batches of up to ``max_batch_readings`` (1,000; about 20k gas each,
    so a 30M-gas block takes several hundred readings at half its gas), so even thousands
    of meters are on-chain within a few blocks, and readings are taken for the window's
    first 3,564 s.
    """

    max_reading_wh: int = DEFAULT_MAX_READING_WH
    meter_limits_wh: Mapping[str, int] = field(default_factory=dict)
    gas_fraction: tuple[int, int] = (1, 2)
    max_batch_readings: int = 1_000
    max_intake_readings: int = 1_000
    max_settle_trades: int = 5_000
    reading_gas: int = 25_000
    settle_trade_gas: int = 25_000
    block_seconds: int = DEFAULT_BLOCK_SECONDS
    deadline_margin_seconds: int | None = None
    lookups_per_second: float = DEFAULT_LOOKUPS_PER_SECOND
    lookup_burst: int = DEFAULT_LOOKUP_BURST

    def __post_init__(self) -> None:
        if self.block_seconds < 1:
            raise ValueError("block_seconds must be at least 1")
        if self.deadline_margin_seconds is not None and self.deadline_margin_seconds < 0:
            raise ValueError("deadline_margin_seconds must not be negative")

    @property
    def reading_margin_seconds(self) -> int:
        """Seconds before a reading deadline from which intake refuses readings."""
        if self.deadline_margin_seconds is not None:
            return self.deadline_margin_seconds
        return default_reading_margin_seconds(self.block_seconds)

    def limit_for(self, participant: str) -> int:
        """The physical maximum (Wh per interval) of ``participant``'s meter."""
        return self.meter_limits_wh.get(participant.lower(), self.max_reading_wh)


__all__ = [
    "DEFAULT_BLOCK_SECONDS",
    "DEFAULT_MAX_READING_WH",
    "MIN_READING_MARGIN_SECONDS",
    "READING_MARGIN_BLOCKS",
    "SettlementConfig",
    "default_reading_margin_seconds",
]
