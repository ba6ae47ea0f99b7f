"""Gas of the settlement service's transactions: how many items fit one, and its gas limit.

Both kinds of transaction carry items: readings (``submitReadings``) and settled trades (a
``settle`` chunk). Each is sized to a share of the block gas limit
(:attr:`~settlement.config.SettlementConfig.gas_fraction`), so any interval fits however many
participants and trades it has, with the gas per item first assumed, then measured from
receipts (:class:`ItemGas`).
"""

from __future__ import annotations

from dataclasses import dataclass

TX_OVERHEAD_GAS = 30_000
"""Fixed gas of a transaction (21,000 intrinsic plus the call's set-up), not per item."""
READING_GAS_CEILING = 60_000
"""Most one reading can cost: a new flag word and a new exported-energy word (2 x 22.1k),
signature recovery and the event. Batches sorted by participant index share words and cost
about 20k per reading (measured)."""
TRADE_GAS_CEILING = 60_000
"""Most one settled trade can cost: two parties' balance writes and events, the seller's
exported-energy read, the hash link and its event."""


@dataclass
class ItemGas:
    """Gas per item (a reading, a settled trade): assumed, then measured from receipts.

    ``typical`` sizes batches until a receipt has been seen; ``ceiling`` is the most one item
    can cost (every storage word new), which sets the gas limit of small batches.
    """

    typical: int
    ceiling: int
    measured: int = 0

    def per_item(self) -> int:
        """What to budget per item: a quarter above the most expensive measured so far."""
        return self.measured * 5 // 4 if self.measured else self.typical

    def limit_per_item(self) -> int:
        """Gas limit per item of a transaction (unused gas is not paid for)."""
        return max(self.ceiling, self.per_item())

    def observe(self, gas_used: int, items: int) -> None:
        """Learn from a mined transaction of ``items`` items."""
        if items > 0:
            self.measured = max(self.measured, max(gas_used - TX_OVERHEAD_GAS, 1) // items + 1)

    def out_of_gas(self) -> None:
        """A transaction ran out of gas: budget twice as much per item from now on."""
        self.measured = 2 * self.per_item()
        self.ceiling = 2 * self.ceiling

    def items_within(self, budget: int, cap: int) -> int:
        """Items per transaction of at most ``budget`` gas: at least one, at most ``cap``."""
        return max(1, min(cap, (budget - TX_OVERHEAD_GAS) // self.per_item()))

    def gas_limit(self, items: int, budget: int) -> int:
        """The gas limit of a transaction of ``items`` items, at most ``budget``."""
        return min(budget, TX_OVERHEAD_GAS + max(items, 1) * self.limit_per_item())


__all__ = ["READING_GAS_CEILING", "TRADE_GAS_CEILING", "TX_OVERHEAD_GAS", "ItemGas"]
