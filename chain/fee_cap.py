"""A cap on what an EIP-1559 transaction pays per gas, and when it must wait instead.

An EIP-1559 transaction pays ``baseFee + min(maxPriorityFeePerGas, maxFeePerGas - baseFee)``
per gas and is only included while ``baseFee <= maxFeePerGas``. A sender's policy asks for
``maxFeePerGas = 2 * baseFee + tip`` (room for six blocks of full-block base fee rises); the
cap clamps it:

* ``priority = min(tip, priority_fee_wei)``;
* ``max_fee = min(policy max_fee, max_fee_wei)``;
* and when ``baseFee + priority > max_fee_wei`` the transaction is not sent at all: it could
  only pay less tip than asked, or not be included, so the sender waits for the base fee to
  fall (and says so) instead of overpaying or sitting in the pool.

All amounts are integers in wei; people-facing flags take gwei with at most nine decimals
(:func:`gwei_to_wei`, exact).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

WEI_PER_GWEI = 10**9


def gwei_to_wei(text: str) -> int:
    """A positive amount of gwei (``"25"``, ``"0.5"``) as wei, exactly; argparse's error for
    anything else, or an amount finer than one wei (never rounded)."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"expected an amount of gwei, got {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive amount of gwei, got {text!r}")
    wei = value * WEI_PER_GWEI
    if wei != wei.to_integral_value():
        raise argparse.ArgumentTypeError(f"{text} gwei is finer than 1 wei (at most 9 decimals)")
    return int(wei)


def format_gwei(wei: int) -> str:
    """``wei`` as gwei for people: ``25 gwei``, ``0.000000007 gwei`` (exact, no float)."""
    whole, rest = divmod(wei, WEI_PER_GWEI)
    if not rest:
        return f"{whole} gwei"
    return f"{whole}.{rest:09d}".rstrip("0") + " gwei"


@dataclass(frozen=True)
class FeeCap:
    """The most an EIP-1559 transaction may pay per gas (``None``: no cap), in wei."""

    max_fee_wei: int | None = None
    priority_fee_wei: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_fee_wei", "priority_fee_wei"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")

    @property
    def active(self) -> bool:
        """True when either cap is set."""
        return self.max_fee_wei is not None or self.priority_fee_wei is not None

    def tip(self, tip_wei: int) -> int:
        """The priority fee a transaction asks for under the cap."""
        return tip_wei if self.priority_fee_wei is None else min(tip_wei, self.priority_fee_wei)

    def max_fee(self, max_fee_wei: int) -> int:
        """``max_fee_wei`` clamped to the cap."""
        return max_fee_wei if self.max_fee_wei is None else min(max_fee_wei, self.max_fee_wei)

    def blocks(self, base_fee_wei: int, tip_wei: int) -> bool:
        """True when a transaction must wait: the base fee plus the (capped) tip is above the
        max fee cap."""
        return self.max_fee_wei is not None and base_fee_wei + self.tip(tip_wei) > self.max_fee_wei

    def describe(self) -> str:
        """The caps for messages: ``max fee 10 gwei, tip 1 gwei``."""
        parts = []
        if self.max_fee_wei is not None:
            parts.append(f"max fee {format_gwei(self.max_fee_wei)}")
        if self.priority_fee_wei is not None:
            parts.append(f"tip {format_gwei(self.priority_fee_wei)}")
        return ", ".join(parts) or "no cap"


NO_CAP = FeeCap()


__all__ = ["NO_CAP", "WEI_PER_GWEI", "FeeCap", "format_gwei", "gwei_to_wei"]
