"""What the operator of a settlement service chooses; the chain fixes everything else.

One frozen value read by every part of the service: intake takes the meters' physical limits,
the request size and the deadline margin from it; batching and settle chunks the share of a
block's gas one transaction may use, their caps and the gas per item assumed before any
receipt was measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_MAX_READING_WH = 10_000_000
"""Default physical maximum of one meter's import or export in one interval: 10 MWh (a large
commercial connection over 15 minutes is a few MWh; anything above is a broken meter)."""


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
    ``deadline_margin_seconds``: refuse readings this close to the deadline (time to get
    them mined).
    """

    max_reading_wh: int = DEFAULT_MAX_READING_WH
    meter_limits_wh: Mapping[str, int] = field(default_factory=dict)
    gas_fraction: tuple[int, int] = (1, 2)
    max_batch_readings: int = 1_000
    max_intake_readings: int = 1_000
    max_settle_trades: int = 5_000
    reading_gas: int = 25_000
    settle_trade_gas: int = 25_000
    deadline_margin_seconds: int = 0

    def limit_for(self, participant: str) -> int:
        """The physical maximum (Wh per interval) of ``participant``'s meter."""
        return self.meter_limits_wh.get(participant.lower(), self.max_reading_wh)


__all__ = ["DEFAULT_MAX_READING_WH", "SettlementConfig"]
