"""What a check finds: the check names, :class:`Violation` and the :class:`CheckLog` they go to.

Every check of :mod:`audit.checks` appends violations (with the numbers that show them) and
notes to a :class:`CheckLog`; :mod:`audit.report` runs the checks per interval and on the whole
market and builds the report. The small formatting helpers every check shares live here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ledger.addresses import checksum_address

SIGNATURES = "signatures"
BOOK_ROOT = "book_root"
COMMITMENT = "commitment"
RECLEAR = "reclear"
PROPERTIES = "properties"
SETTLEMENT = "settlement"
READINGS = "readings"
"""The meter readings kept off-chain and published by the settlement service are signed by
the meter key in force at the commit, of non-sellers, and agree with the chain."""
CONSERVATION = "conservation"
CODE = "code"
RECEIPTS = "receipts"
"""Every published receipt is the operator's, and the seqs it states are the published ones."""
CANCELS = "cancels"
"""No order cancelled before the gate closed (by the operator's receipt) is in the book."""
LATE_ORDERS = "late_orders"
"""No order received at or after the gate closure (by its receipt) is in the clearing."""
UNCOMMITTED = "uncommitted"
"""An interval with a published order set was committed on-chain."""
GRID = "grid"
"""A grid interval's document is the grid operator's, its committed trades are the grid
re-clearing's and P1-P6 hold (:mod:`audit.checks.grid`)."""
DEFAULTERS = "defaulters"
"""Every party the interval names as a defaulter was short at the block it names, between the
gate closure and the commit, and every party short there was named (:mod:`market.defaulters`)."""

INTERVAL_CHECKS: tuple[str, ...] = (
    SIGNATURES,
    BOOK_ROOT,
    COMMITMENT,
    DEFAULTERS,
    RECLEAR,
    PROPERTIES,
    GRID,
    SETTLEMENT,
    READINGS,
    RECEIPTS,
    CANCELS,
    LATE_ORDERS,
    UNCOMMITTED,
)
"""The checks run on every committed interval (``uncommitted`` on every closed interval the
audit scans), in report order."""
MARKET_CHECKS: tuple[str, ...] = (CODE, CONSERVATION)
"""The checks run once on the whole market at the audited block."""

MAX_DIFFERENCES = 8
"""Most differences one check lists for one interval before it says how many more there are."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed check: which interval (None for a market check), which check, and what."""

    check: str
    message: str
    interval: int | None = None

    def __str__(self) -> str:
        where = "market" if self.interval is None else f"interval {self.interval}"
        return f"{where}: {self.check}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        """``{"interval", "check", "message"}``."""
        return {"interval": self.interval, "check": self.check, "message": self.message}


class CheckLog:
    """Collects violations and notes of one interval (or of the market)."""

    def __init__(self, interval: int | None) -> None:
        self.interval = interval
        self.violations: list[Violation] = []
        self.notes: list[str] = []

    def fail(self, check: str, message: str) -> None:
        """Record one violation of ``check``."""
        self.violations.append(Violation(check, message, self.interval))

    def fail_all(self, check: str, messages: list[str]) -> None:
        """Record each message as a violation of ``check``, the first MAX_DIFFERENCES only."""
        for message in capped(messages):
            self.fail(check, message)


def decimal_text(value: Decimal) -> str:
    """A Decimal without trailing zeros, never in exponent form: ``0.25``, ``3``."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def hex_of(raw: bytes) -> str:
    """``0x`` and lower-case hex: how the audit shows hashes and order ids."""
    return "0x" + raw.hex()


def short(text: str) -> str:
    """An id cut to its first bytes for a message (``0x12345678…``)."""
    return text if len(text) <= 14 else f"{text[:10]}…"


def capped(items: list[str], limit: int = MAX_DIFFERENCES) -> list[str]:
    """The first ``limit`` items and, when there are more, how many more."""
    if len(items) <= limit:
        return items
    return [*items[:limit], f"and {len(items) - limit} more"]


def is_uint(value: Any) -> bool:
    """Whether a published value is a non-negative integer (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def address_key(address: str) -> str:
    """Addresses compare in checksum form (ValueError for one that is not an address)."""
    return checksum_address("0x" + address[2:].lower())


__all__ = [
    "BOOK_ROOT",
    "CANCELS",
    "CODE",
    "COMMITMENT",
    "CONSERVATION",
    "DEFAULTERS",
    "GRID",
    "INTERVAL_CHECKS",
    "LATE_ORDERS",
    "MARKET_CHECKS",
    "MAX_DIFFERENCES",
    "PROPERTIES",
    "READINGS",
    "RECEIPTS",
    "RECLEAR",
    "SETTLEMENT",
    "SIGNATURES",
    "UNCOMMITTED",
    "CheckLog",
    "Violation",
    "address_key",
    "capped",
    "decimal_text",
    "hex_of",
    "is_uint",
    "short",
]
