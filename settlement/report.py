"""The reconciliation report of one interval: per trade, per participant, totals and checks.

:func:`settlement.reconciliation.build_report` builds a :class:`SettlementReport` from what the
chain says about an interval, re-settled with the model; this module holds the report's values
and their JSON (``wattledger settle --report T --json`` and ``GET /intervals/{t}/settlement``),
and :mod:`settlement.report_table` renders it for people. Money is in token base units,
energy in Wh, all ``int``; JSON carries money as decimal strings (it can exceed 2**53).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.addresses import checksum_address
from ledger.records import Terms
from settlement.interval_record import EscrowSnapshot
from settlement.model import TradeOutcome

# ----------------------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True)
class TradeLine:
    """One committed trade: contract, what settlement did (None before it settled), model."""

    index: int
    buyer: str
    seller: str
    quantity_wh: int
    price_per_wh: int
    bond: int
    expected: TradeOutcome
    settled_times: int
    delivered_wh: int | None
    paid: int | None
    refunded: int | None
    penalty: int | None

    @property
    def contracted(self) -> int:
        """``quantity * price``: what the buyer's lock holds for this trade."""
        return self.quantity_wh * self.price_per_wh

    @property
    def settled(self) -> bool:
        """Whether a ``TradeSettled`` event exists for it."""
        return self.settled_times > 0


@dataclass(frozen=True, slots=True)
class ParticipantLine:
    """One party of the interval: energy, locks and the settlement's netted balance change."""

    participant: str
    bought_wh: int
    sold_wh: int
    delivered_wh: int
    imported_wh: int | None
    exported_wh: int | None
    locked: int
    released: int
    credited: int
    expected_released: int
    expected_credited: int
    reading_source: str | None = None
    """Where ``imported_wh`` and ``exported_wh`` come from: ``onchain`` (the reading
    settlement used), ``offchain`` (a participant that sold nothing: its meter-signed reading
    is kept and published by the settlement service, not sent on-chain), or None (none)."""

    @property
    def net_change(self) -> int:
        """``credited - released``: what settlement added to the party's total balance."""
        return self.credited - self.released


@dataclass(frozen=True, slots=True)
class Check:
    """One reconciliation check and what it found."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums over the interval (energy Wh, money base units)."""

    trades: int
    settled_trades: int
    contracted_wh: int
    delivered_wh: int
    shortfall_wh: int
    contracted_value: int
    paid: int
    refunded: int
    penalties: int
    bonds: int
    locked: int
    released: int
    credited: int


@dataclass(frozen=True)
class SettlementReport:
    """The reconciliation report of one interval (see the module docstring)."""

    interval: int
    status: str
    cursor: int
    trade_count: int
    deadline: int
    terms: Terms
    trades: tuple[TradeLine, ...]
    participants: tuple[ParticipantLine, ...]
    readings: int
    totals: Totals
    checks: tuple[Check, ...]
    mismatches: tuple[str, ...] = field(default=())
    escrow: EscrowSnapshot | None = None

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.ok for c in self.checks)

    @property
    def settled(self) -> bool:
        """Whether the interval is settled on-chain."""
        return self.status == "settled"

    def to_json(self) -> dict[str, Any]:
        """The report as JSON values (money as decimal strings)."""
        t = self.totals
        return {
            "interval": self.interval,
            "status": self.status,
            "cursor": self.cursor,
            "tradeCount": self.trade_count,
            "deadline": self.deadline,
            "terms": {
                "penaltyPricePerWh": str(self.terms.penalty_price_per_wh),
                "toleranceBps": self.terms.tolerance_bps,
            },
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "mismatches": list(self.mismatches),
            "totals": {
                "trades": t.trades,
                "settledTrades": t.settled_trades,
                "contractedWh": t.contracted_wh,
                "deliveredWh": t.delivered_wh,
                "shortfallWh": t.shortfall_wh,
                "contractedValue": str(t.contracted_value),
                "paid": str(t.paid),
                "refunded": str(t.refunded),
                "penalties": str(t.penalties),
                "bonds": str(t.bonds),
                "locked": str(t.locked),
                "released": str(t.released),
                "credited": str(t.credited),
                "readings": self.readings,
            },
            "escrow": (
                None
                if self.escrow is None
                else {
                    "tokenBalance": str(self.escrow.token_balance),
                    "totalEscrowed": str(self.escrow.total_escrowed),
                    "sumOfBalances": str(self.escrow.sum_of_balances),
                    "participants": self.escrow.participants,
                }
            ),
            "trades": [_trade_json(line) for line in self.trades],
            "participants": [_participant_json(p) for p in self.participants],
        }


def _opt(value: int | None) -> str | None:
    return None if value is None else str(value)


def _trade_json(line: TradeLine) -> dict[str, Any]:
    e = line.expected
    return {
        "index": line.index,
        "buyer": checksum_address(line.buyer),
        "seller": checksum_address(line.seller),
        "quantityWh": line.quantity_wh,
        "pricePerWh": str(line.price_per_wh),
        "contracted": str(line.contracted),
        "bond": str(line.bond),
        "settled": line.settled,
        "deliveredWh": line.delivered_wh,
        "paid": _opt(line.paid),
        "refunded": _opt(line.refunded),
        "penalty": _opt(line.penalty),
        "model": {
            "deliveredWh": e.delivered_wh,
            "paid": str(e.payment),
            "refunded": str(e.refund),
            "penalty": str(e.penalty),
        },
    }


def _participant_json(p: ParticipantLine) -> dict[str, Any]:
    return {
        "participant": checksum_address(p.participant),
        "boughtWh": p.bought_wh,
        "soldWh": p.sold_wh,
        "deliveredWh": p.delivered_wh,
        "importedWh": p.imported_wh,
        "exportedWh": p.exported_wh,
        "reading": p.reading_source,
        "locked": str(p.locked),
        "released": str(p.released),
        "credited": str(p.credited),
        "netChange": str(p.net_change),
        "model": {"released": str(p.expected_released), "credited": str(p.expected_credited)},
    }


__all__ = [
    "Check",
    "ParticipantLine",
    "SettlementReport",
    "Totals",
    "TradeLine",
]
