"""Reconciliation of one interval: what the chain says happened, checked against the model.

:func:`build_report` takes everything the chain says about an interval (its committed trades,
``CollateralLocked``, ``ReadingSubmitted``, ``TradeSettled``, ``ParticipantSettled`` and
``IntervalSettled`` events, and the escrow totals), re-settles the interval with
:mod:`settlement.model` from the same on-chain trades, readings and snapshotted terms, and
lists every difference. It is pure: :class:`settlement.chain_reader.ChainReader` fetches the
events (``interval_events``) and this module only reasons about them, so a test can feed it
doctored events and see the check fail.

The report has, per trade, what was contracted, delivered, paid, refunded and the penalty;
per participant, what commit locked and settlement released and credited, and the net
change (``credited - released``: what settlement added to the participant's total balance);
totals; and these checks:

* ``trades_committed``: the replayed trades are as many as the contract committed;
* ``settled_exactly_once``: no trade has two ``TradeSettled`` events, and the settled trades
  are exactly those before the cursor (all of them once the interval is settled);
* ``trades_match_model``: each settled trade's delivery, payment, refund and penalty equal
  the model's;
* ``buyer_lock_released``: ``paid + refunded == quantity * price`` for each settled trade;
* ``penalty_within_bond``: no penalty exceeds the seller's bond ``quantity * penaltyPrice``;
* ``participants_match_model``: each party's released and credited sums equal the model's
  for the settled trades;
* ``value_conserved``: the net changes add up to zero (settlement moves value between
  parties; it never creates or destroys a base unit);
* ``locks_released``: once settled, every party's release equals what commit locked;
* ``delivery_within_export``: per seller, delivered energy is ``min(sold, exported)``;
* ``one_reading_per_participant``: no participant has two accepted readings;
* ``escrow_balanced``: the market's token balance equals ``totalEscrowed`` and the sum of
  every registered participant's balances.

Money is in token base units, energy in Wh, all ``int``; JSON carries money as decimal
strings (it can exceed 2**53).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger.records import Terms, Trade, seller_positions
from settlement.model import TradeOutcome, settle_range, settle_trade

# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class IntervalState:
    """``intervalInfo(t)`` as the report needs it."""

    status: str
    trade_count: int
    cursor: int
    deadline: int
    tolerance_bps: int
    penalty_price_per_wh: int


@dataclass(frozen=True, slots=True)
class ReadingEvent:
    """One ``ReadingSubmitted`` event (participant lower-case)."""

    participant: str
    imported_wh: int
    exported_wh: int
    block_number: int = 0
    tx_hash: str = ""


@dataclass(frozen=True, slots=True)
class TradeSettledEvent:
    """One ``TradeSettled`` event: a trade's delivery, payment, refund and penalty."""

    trade_index: int
    delivered_wh: int
    payment: int
    refund: int
    penalty: int
    block_number: int = 0
    tx_hash: str = ""


@dataclass(frozen=True, slots=True)
class ParticipantSettledEvent:
    """One ``ParticipantSettled`` event: a party's netted change in one settlement chunk."""

    participant: str
    released: int
    credited: int


@dataclass(frozen=True, slots=True)
class EscrowSnapshot:
    """The market's escrow as a whole (base units): what the token says it holds, what the
    market says it holds, and the sum of every registered participant's balances."""

    token_balance: int
    total_escrowed: int
    sum_of_balances: int
    participants: int


@dataclass(frozen=True)
class IntervalEvents:
    """Everything the chain says about one interval. Addresses are lower-case."""

    interval: int
    state: IntervalState
    committed: bool
    trades: tuple[Trade, ...]
    locked: Mapping[str, int]
    readings: Mapping[str, ReadingEvent]
    trade_settled: tuple[TradeSettledEvent, ...]
    participant_settled: tuple[ParticipantSettledEvent, ...]
    interval_settled_events: int = 0
    escrow: EscrowSnapshot | None = None
    reading_duplicates: tuple[str, ...] = ()

    @property
    def terms(self) -> Terms:
        """The penalty rate and tolerance snapshotted at commit."""
        return Terms(self.state.penalty_price_per_wh, self.state.tolerance_bps)


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
        "buyer": line.buyer,
        "seller": line.seller,
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
        "participant": p.participant,
        "boughtWh": p.bought_wh,
        "soldWh": p.sold_wh,
        "deliveredWh": p.delivered_wh,
        "importedWh": p.imported_wh,
        "exportedWh": p.exported_wh,
        "locked": str(p.locked),
        "released": str(p.released),
        "credited": str(p.credited),
        "netChange": str(p.net_change),
        "model": {"released": str(p.expected_released), "credited": str(p.expected_credited)},
    }


# ----------------------------------------------------------------------------- building


def build_report(events: IntervalEvents) -> SettlementReport:
    """Reconcile one interval's on-chain events with :mod:`settlement.model`."""
    t = events.interval
    state = events.state
    trades = [_lower(tr) for tr in events.trades]
    terms = events.terms
    exported = {p: r.exported_wh for p, r in events.readings.items()}
    positions = seller_positions(trades)
    model = [
        settle_trade(k, tr, positions[k], exported.get(tr.seller, 0), terms)
        for k, tr in enumerate(trades)
    ]
    by_index: dict[int, list[TradeSettledEvent]] = {}
    for e in events.trade_settled:
        by_index.setdefault(e.trade_index, []).append(e)
    mismatches: list[str] = []

    lines = []
    for k, tr in enumerate(trades):
        seen = by_index.get(k, [])
        first = seen[0] if seen else None
        line = TradeLine(
            index=k,
            buyer=tr.buyer,
            seller=tr.seller,
            quantity_wh=tr.quantity_wh,
            price_per_wh=tr.price_per_wh,
            bond=tr.quantity_wh * terms.penalty_price_per_wh,
            expected=model[k],
            settled_times=len(seen),
            delivered_wh=None if first is None else first.delivered_wh,
            paid=None if first is None else first.payment,
            refunded=None if first is None else first.refund,
            penalty=None if first is None else first.penalty,
        )
        lines.append(line)
        if first is not None:
            got = (first.delivered_wh, first.payment, first.refund, first.penalty)
            want = (model[k].delivered_wh, model[k].payment, model[k].refund, model[k].penalty)
            if got != want:
                mismatches.append(
                    f"trade {k}: chain (delivered, paid, refunded, penalty) = {got}, model = {want}"
                )

    checks: list[Check] = []
    # -- trades_committed
    checks.append(
        _check(
            "trades_committed",
            len(trades) == state.trade_count,
            f"{len(trades)} trades replayed from the commit, {state.trade_count} committed",
        )
    )
    # -- settled_exactly_once
    twice = sorted(k for k, seen in by_index.items() if len(seen) > 1)
    outside = sorted(k for k in by_index if not 0 <= k < len(trades))
    settled_set = {k for k in by_index if 0 <= k < len(trades)}
    expected_set = set(range(len(trades) if state.status == "settled" else state.cursor))
    problems = []
    if twice:
        problems.append(f"settled more than once: trades {_few(twice)}")
    if outside:
        problems.append(
            f"TradeSettled for trade indices that were never committed: {_few(outside)}"
        )
    if settled_set != expected_set:
        missing = sorted(expected_set - settled_set)
        early = sorted(settled_set - expected_set)
        if missing:
            problems.append(f"not settled: trades {_few(missing)}")
        if early:
            problems.append(f"settled beyond the cursor: trades {_few(early)}")
    if state.status == "settled" and events.interval_settled_events != 1:
        problems.append(f"{events.interval_settled_events} IntervalSettled events (want 1)")
    checks.append(
        _check(
            "settled_exactly_once",
            not problems,
            "; ".join(problems)
            or f"{len(settled_set)} of {len(trades)} trades settled, each exactly once",
        )
    )
    # -- trades_match_model
    checks.append(
        _check(
            "trades_match_model",
            not mismatches,
            f"{len(mismatches)} trades differ from the model"
            if mismatches
            else "every settled trade equals the model's delivery, payment, refund and penalty",
        )
    )
    # -- buyer_lock_released, penalty_within_bond
    unbalanced = [
        line.index
        for line in lines
        if line.paid is not None and line.paid + (line.refunded or 0) != line.contracted
    ]
    checks.append(
        _check(
            "buyer_lock_released",
            not unbalanced,
            f"paid + refunded != quantity * price for trades {_few(unbalanced)}"
            if unbalanced
            else "paid + refunded = quantity * price for every settled trade",
        )
    )
    over = [line.index for line in lines if (line.penalty or 0) > line.bond]
    checks.append(
        _check(
            "penalty_within_bond",
            not over,
            f"penalty above the bond for trades {_few(over)}"
            if over
            else "no penalty exceeds its bond",
        )
    )
    # -- participants
    released: dict[str, int] = {}
    credited: dict[str, int] = {}
    for ps in events.participant_settled:
        released[ps.participant] = released.get(ps.participant, 0) + ps.released
        credited[ps.participant] = credited.get(ps.participant, 0) + ps.credited
    settled_prefix = len(trades) if state.status == "settled" else min(state.cursor, len(trades))
    expected = settle_range(trades, exported, terms, 0, settled_prefix).deltas
    bought: dict[str, int] = {}
    sold: dict[str, int] = {}
    delivered: dict[str, int] = {}
    for k, tr in enumerate(trades):
        bought[tr.buyer] = bought.get(tr.buyer, 0) + tr.quantity_wh
        sold[tr.seller] = sold.get(tr.seller, 0) + tr.quantity_wh
        if lines[k].delivered_wh is not None:
            delivered[tr.seller] = delivered.get(tr.seller, 0) + (lines[k].delivered_wh or 0)
    everyone = sorted(
        set(bought) | set(sold) | set(released) | set(events.locked), key=lambda a: int(a, 16)
    )
    parties = []
    party_mismatch = []
    for p in everyone:
        reading = events.readings.get(p)
        delta = expected.get(p)
        line_p = ParticipantLine(
            participant=p,
            bought_wh=bought.get(p, 0),
            sold_wh=sold.get(p, 0),
            delivered_wh=delivered.get(p, 0),
            imported_wh=None if reading is None else reading.imported_wh,
            exported_wh=None if reading is None else reading.exported_wh,
            locked=events.locked.get(p, 0),
            released=released.get(p, 0),
            credited=credited.get(p, 0),
            expected_released=0 if delta is None else delta.released,
            expected_credited=0 if delta is None else delta.credited,
        )
        parties.append(line_p)
        if (line_p.released, line_p.credited) != (
            line_p.expected_released,
            line_p.expected_credited,
        ):
            party_mismatch.append(p)
            mismatches.append(
                f"participant {p}: chain (released, credited) = "
                f"({line_p.released}, {line_p.credited}), model = "
                f"({line_p.expected_released}, {line_p.expected_credited})"
            )
    checks.append(
        _check(
            "participants_match_model",
            not party_mismatch,
            f"{len(party_mismatch)} participants differ from the model"
            if party_mismatch
            else "every party's released and credited sums equal the model's",
        )
    )
    net = sum(p.net_change for p in parties)
    checks.append(
        _check(
            "value_conserved",
            net == 0,
            f"net changes sum to {net} base units (want 0)"
            if net
            else "the parties' net changes sum to zero",
        )
    )
    if state.status == "settled":
        unreleased = [p.participant for p in parties if p.released != p.locked]
        checks.append(
            _check(
                "locks_released",
                not unreleased,
                f"release differs from the commit's lock for {_few(unreleased)}"
                if unreleased
                else "every party's lock for the interval was released in full",
            )
        )
    else:
        over_released = [p.participant for p in parties if p.released > p.locked]
        checks.append(
            _check(
                "locks_released",
                not over_released,
                f"released more than locked for {_few(over_released)}"
                if over_released
                else "not settled yet; no party released more than it locked",
            )
        )
    overdelivered = []
    complete = state.status == "settled"
    for party in parties:
        if not party.sold_wh:
            continue
        cap = min(party.sold_wh, party.exported_wh or 0)
        if (complete and party.delivered_wh != cap) or party.delivered_wh > cap:
            overdelivered.append(party.participant)
    checks.append(
        _check(
            "delivery_within_export",
            not overdelivered,
            f"delivered != min(sold, exported) for sellers {_few(overdelivered)}"
            if overdelivered
            else "each seller delivered min(sold, exported)",
        )
    )
    checks.append(
        _check(
            "one_reading_per_participant",
            not events.reading_duplicates,
            f"more than one reading for {_few(list(events.reading_duplicates))}"
            if events.reading_duplicates
            else f"{len(events.readings)} readings, one per participant",
        )
    )
    escrow = events.escrow
    if escrow is not None:
        balanced = escrow.token_balance == escrow.total_escrowed == escrow.sum_of_balances
        checks.append(
            _check(
                "escrow_balanced",
                balanced,
                f"token balance {escrow.token_balance}, totalEscrowed {escrow.total_escrowed}, "
                f"sum of {escrow.participants} participants' balances {escrow.sum_of_balances}",
            )
        )

    done = [line for line in lines if line.settled]
    totals = Totals(
        trades=len(trades),
        settled_trades=len(done),
        contracted_wh=sum(tr.quantity_wh for tr in trades),
        delivered_wh=sum(line.delivered_wh or 0 for line in done),
        shortfall_wh=sum(line.quantity_wh - (line.delivered_wh or 0) for line in done),
        contracted_value=sum(line.contracted for line in lines),
        paid=sum(line.paid or 0 for line in done),
        refunded=sum(line.refunded or 0 for line in done),
        penalties=sum(line.penalty or 0 for line in done),
        bonds=sum(line.bond for line in lines),
        locked=sum(events.locked.values()),
        released=sum(released.values()),
        credited=sum(credited.values()),
    )
    return SettlementReport(
        interval=t,
        status=state.status,
        cursor=state.cursor,
        trade_count=state.trade_count,
        deadline=state.deadline,
        terms=terms,
        trades=tuple(lines),
        participants=tuple(parties),
        readings=len(events.readings),
        totals=totals,
        checks=tuple(checks),
        mismatches=tuple(mismatches),
        escrow=escrow,
    )


def _lower(trade: Trade) -> Trade:
    return Trade(
        buyer=trade.buyer.lower(),
        seller=trade.seller.lower(),
        quantity_wh=trade.quantity_wh,
        price_per_wh=trade.price_per_wh,
        buy_order_id=trade.buy_order_id,
        sell_order_id=trade.sell_order_id,
    )


def _check(name: str, ok: bool, detail: str) -> Check:
    return Check(name, ok, detail)


def _few(items: list[Any], limit: int = 8) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# ----------------------------------------------------------------------------- rendering


def render(report: SettlementReport, *, max_rows: int = 40) -> Any:
    """A ``rich`` renderable of the report: totals, checks, trades and participants.

    At most ``max_rows`` trades and participants are listed (the JSON form has all).
    """
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def money(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    head = Text.assemble(
        (f"Interval {report.interval}", "bold"),
        f"  status {report.status}, {report.totals.settled_trades}/{report.trade_count} trades "
        f"settled, {report.readings} readings, penalty {report.terms.penalty_price_per_wh:,} "
        f"per Wh, tolerance {report.terms.tolerance_bps} bps  ",
        ("OK" if report.ok else "MISMATCH", "bold green" if report.ok else "bold red"),
    )
    totals = Table(title="Totals (Wh; token base units)", show_header=False)
    totals.add_column("what")
    totals.add_column("value", justify="right")
    t = report.totals
    for name, value in (
        ("contracted Wh", t.contracted_wh),
        ("delivered Wh", t.delivered_wh),
        ("shortfall Wh", t.shortfall_wh),
        ("contracted value", t.contracted_value),
        ("paid to sellers", t.paid),
        ("refunded to buyers", t.refunded),
        ("penalties", t.penalties),
        ("bonds", t.bonds),
        ("locked at commit", t.locked),
        ("released", t.released),
        ("credited", t.credited),
    ):
        totals.add_row(name, money(value))
    checks = Table(title="Checks")
    checks.add_column("check")
    checks.add_column("ok")
    checks.add_column("detail")
    for c in report.checks:
        checks.add_row(c.name, Text("yes", "green") if c.ok else Text("NO", "bold red"), c.detail)
    trades = Table(title=f"Trades ({len(report.trades)})")
    for col in (
        "#",
        "buyer",
        "seller",
        "contracted Wh",
        "delivered Wh",
        "paid",
        "refunded",
        "penalty",
    ):
        trades.add_column(col, justify="right" if col not in ("buyer", "seller") else "left")
    for line in report.trades[:max_rows]:
        trades.add_row(
            str(line.index),
            line.buyer[:10] + "…",
            line.seller[:10] + "…",
            f"{line.quantity_wh:,}",
            "-" if line.delivered_wh is None else f"{line.delivered_wh:,}",
            money(line.paid),
            money(line.refunded),
            money(line.penalty),
        )
    parties = Table(title=f"Participants ({len(report.participants)})")
    for col in ("participant", "locked", "released", "credited", "net change"):
        parties.add_column(col, justify="left" if col == "participant" else "right")
    for p in report.participants[:max_rows]:
        parties.add_row(
            p.participant,
            money(p.locked),
            money(p.released),
            money(p.credited),
            f"{p.net_change:+,}",
        )
    parts: list[Any] = [head, totals, checks, trades]
    if len(report.trades) > max_rows:
        parts.append(Text(f"... {len(report.trades) - max_rows} more trades (--json lists all)"))
    parts.append(parties)
    if len(report.participants) > max_rows:
        parts.append(Text(f"... {len(report.participants) - max_rows} more participants"))
    if report.mismatches:
        parts.append(Text("Mismatches:", "bold red"))
        parts.extend(Text("  " + m) for m in report.mismatches[:max_rows])
    return Group(*parts)


__all__ = [
    "Check",
    "EscrowSnapshot",
    "IntervalEvents",
    "IntervalState",
    "ParticipantLine",
    "ParticipantSettledEvent",
    "ReadingEvent",
    "SettlementReport",
    "Totals",
    "TradeLine",
    "TradeSettledEvent",
    "build_report",
    "render",
]
