"""Reconciliation of one interval: what the chain says happened, checked against the model.

:func:`build_report` takes everything the chain says about an interval (its committed trades,
``CollateralLocked``, ``ReadingSubmitted``, ``TradeSettled``, ``ParticipantSettled`` and
``IntervalSettled`` events, and the escrow totals), re-settles the interval with
:mod:`settlement.model` from the same on-chain trades, readings and snapshotted terms, and
lists every difference (the re-settlement is :mod:`settlement.resettlement`, the one the
audit runs too). It is pure: :meth:`settlement.chain_reader.ChainReader.interval_events`
reads the :class:`IntervalRecord` (events as :mod:`ledger.events` records) and this module
only reasons about it, so a test can feed it doctored events and see the check fail. The
report's values and JSON are :mod:`settlement.report`'s; its human table is
:func:`settlement.report_table.render`.

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
from dataclasses import dataclass, replace
from typing import Any

from ledger.events import ReadingSubmitted, TradeSettled
from ledger.records import Reading, Terms, Trade
from settlement.interval_record import IntervalRecord
from settlement.model import BalanceDelta, TradeOutcome
from settlement.report import Check, ParticipantLine, SettlementReport, Totals, TradeLine
from settlement.resettlement import accepted_readings, resettle


@dataclass(frozen=True)
class _OnChain:
    """The record with every address lower-case (as the report shows them), summed per party."""

    trades: list[Trade]
    settled: dict[int, list[TradeSettled]]
    """``TradeSettled`` events by trade index."""
    readings: dict[str, ReadingSubmitted]
    """Each party's first reading (the one settlement used)."""
    repeated: list[str]
    """A party for each reading after its first."""
    locked: dict[str, int]
    released: dict[str, int]
    credited: dict[str, int]


def _lower_record(record: IntervalRecord) -> _OnChain:
    events = record.events
    settled: dict[int, list[TradeSettled]] = {}
    for e in events.trade_settlements:
        settled.setdefault(e.trade_index, []).append(e)
    accepted = accepted_readings(events.readings)
    locked: dict[str, int] = {}
    for lock in events.locks:
        who = lock.participant.lower()
        locked[who] = locked.get(who, 0) + lock.amount_base_units
    released: dict[str, int] = {}
    credited: dict[str, int] = {}
    for ps in events.party_settlements:
        who = ps.participant.lower()
        released[who] = released.get(who, 0) + ps.released_base_units
        credited[who] = credited.get(who, 0) + ps.credited_base_units
    return _OnChain(
        trades=[_lower(tr) for tr in record.trades],
        settled=settled,
        readings={p.lower(): r for p, r in accepted.first.items()},
        repeated=[r.participant.lower() for r in accepted.repeated],
        locked=locked,
        released=released,
        credited=credited,
    )


def build_report(
    record: IntervalRecord, off_chain: Mapping[str, Reading] | None = None
) -> SettlementReport:
    """Reconcile one interval's on-chain record with :mod:`settlement.model`.

    ``off_chain``: meter-signed readings kept off-chain (participants that sold nothing, by
    lower-case address), which the participant lines show where the chain has none of the
    participant (``reading_source`` ``offchain``). Settlement reads none of them, so no
    check depends on them."""
    state = record.state
    chain = _lower_record(record)
    trades = chain.trades
    terms = record.terms
    complete = state.status == "settled"
    settled_prefix = len(trades) if complete else min(state.cursor, len(trades))
    exported = {p: r.exported_wh for p, r in chain.readings.items()}
    model = resettle(trades, exported, terms, settled_prefix)

    lines = _trade_lines(trades, chain.settled, model.outcomes, terms)
    trade_mismatches = _trade_mismatches(lines)
    parties = _participant_lines(trades, lines, chain, model.deltas, off_chain or {})
    party_mismatch = [
        p for p in parties if (p.released, p.credited) != (p.expected_released, p.expected_credited)
    ]
    mismatches = trade_mismatches + [
        f"participant {p.participant}: chain (released, credited) = ({p.released}, "
        f"{p.credited}), model = ({p.expected_released}, {p.expected_credited})"
        for p in party_mismatch
    ]
    checks = [
        Check(
            "trades_committed",
            len(trades) == state.trade_count,
            f"{len(trades)} trades replayed from the commit, {state.trade_count} committed",
        ),
        _settled_exactly_once(record, len(trades), chain.settled),
        Check(
            "trades_match_model",
            not trade_mismatches,
            f"{len(trade_mismatches)} trades differ from the model"
            if trade_mismatches
            else "every settled trade equals the model's delivery, payment, refund and penalty",
        ),
        *_trade_value_checks(lines),
        Check(
            "participants_match_model",
            not party_mismatch,
            f"{len(party_mismatch)} participants differ from the model"
            if party_mismatch
            else "every party's released and credited sums equal the model's",
        ),
        *_party_checks(parties, complete),
        Check(
            "one_reading_per_participant",
            not chain.repeated,
            f"more than one reading for {_few(chain.repeated)}"
            if chain.repeated
            else f"{len(chain.readings)} readings, one per participant",
        ),
    ]
    escrow = record.escrow
    if escrow is not None:
        balanced = escrow.token_balance == escrow.total_escrowed == escrow.sum_of_balances
        checks.append(
            Check(
                "escrow_balanced",
                balanced,
                f"token balance {escrow.token_balance}, totalEscrowed {escrow.total_escrowed}, "
                f"sum of {escrow.participants} participants' balances {escrow.sum_of_balances}",
            )
        )
    return SettlementReport(
        interval=record.interval,
        status=state.status,
        cursor=state.cursor,
        trade_count=state.trade_count,
        deadline=state.deadline,
        terms=terms,
        trades=tuple(lines),
        participants=tuple(parties),
        readings=len(chain.readings),
        totals=_totals(trades, lines, chain),
        checks=tuple(checks),
        mismatches=tuple(mismatches),
        escrow=escrow,
    )


def _trade_lines(
    trades: list[Trade],
    settled: Mapping[int, list[TradeSettled]],
    outcomes: tuple[TradeOutcome, ...],
    terms: Terms,
) -> list[TradeLine]:
    """One line per committed trade: what settlement did (its first ``TradeSettled``) and
    what the model says."""
    lines = []
    for k, tr in enumerate(trades):
        seen = settled.get(k, [])
        first = seen[0] if seen else None
        lines.append(
            TradeLine(
                index=k,
                buyer=tr.buyer,
                seller=tr.seller,
                quantity_wh=tr.quantity_wh,
                price_per_wh=tr.price_per_wh,
                bond=tr.quantity_wh * terms.penalty_price_per_wh,
                expected=outcomes[k],
                settled_times=len(seen),
                delivered_wh=None if first is None else first.delivered_wh,
                paid=None if first is None else first.payment_base_units,
                refunded=None if first is None else first.refund_base_units,
                penalty=None if first is None else first.penalty_base_units,
            )
        )
    return lines


def _trade_mismatches(lines: list[TradeLine]) -> list[str]:
    out = []
    for line in lines:
        if not line.settled:
            continue
        got = (line.delivered_wh, line.paid, line.refunded, line.penalty)
        e = line.expected
        want = (e.delivered_wh, e.payment, e.refund, e.penalty)
        if got != want:
            out.append(
                f"trade {line.index}: chain (delivered, paid, refunded, penalty) = {got}, "
                f"model = {want}"
            )
    return out


def _settled_exactly_once(
    record: IntervalRecord, trade_count: int, settled: Mapping[int, list[TradeSettled]]
) -> Check:
    """``settled_exactly_once``: each trade before the cursor (every trade once the interval
    is settled) has exactly one ``TradeSettled``, no other has one, one ``IntervalSettled``."""
    state = record.state
    twice = sorted(k for k, seen in settled.items() if len(seen) > 1)
    outside = sorted(k for k in settled if not 0 <= k < trade_count)
    settled_set = {k for k in settled if 0 <= k < trade_count}
    expected_set = set(range(trade_count if state.status == "settled" else state.cursor))
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
    marks = len(record.events.settlements)
    if state.status == "settled" and marks != 1:
        problems.append(f"{marks} IntervalSettled events (want 1)")
    return Check(
        "settled_exactly_once",
        not problems,
        "; ".join(problems)
        or f"{len(settled_set)} of {trade_count} trades settled, each exactly once",
    )


def _trade_value_checks(lines: list[TradeLine]) -> list[Check]:
    """``buyer_lock_released`` and ``penalty_within_bond``."""
    unbalanced = [
        line.index
        for line in lines
        if line.paid is not None and line.paid + (line.refunded or 0) != line.contracted
    ]
    over = [line.index for line in lines if (line.penalty or 0) > line.bond]
    return [
        Check(
            "buyer_lock_released",
            not unbalanced,
            f"paid + refunded != quantity * price for trades {_few(unbalanced)}"
            if unbalanced
            else "paid + refunded = quantity * price for every settled trade",
        ),
        Check(
            "penalty_within_bond",
            not over,
            f"penalty above the bond for trades {_few(over)}"
            if over
            else "no penalty exceeds its bond",
        ),
    ]


def _participant_lines(
    trades: list[Trade],
    lines: list[TradeLine],
    chain: _OnChain,
    expected: Mapping[str, BalanceDelta],
    off_chain: Mapping[str, Reading],
) -> list[ParticipantLine]:
    """One line per party of the interval (traded, locked or settled), ascending by address."""
    bought: dict[str, int] = {}
    sold: dict[str, int] = {}
    delivered: dict[str, int] = {}
    for k, tr in enumerate(trades):
        bought[tr.buyer] = bought.get(tr.buyer, 0) + tr.quantity_wh
        sold[tr.seller] = sold.get(tr.seller, 0) + tr.quantity_wh
        if lines[k].delivered_wh is not None:
            delivered[tr.seller] = delivered.get(tr.seller, 0) + (lines[k].delivered_wh or 0)
    everyone = sorted(
        set(bought) | set(sold) | set(chain.released) | set(chain.locked),
        key=lambda a: int(a, 16),
    )
    parties = []
    for p in everyone:
        reading: ReadingSubmitted | Reading | None = chain.readings.get(p)
        source = None if reading is None else "onchain"
        if reading is None and p in off_chain:
            reading, source = off_chain[p], "offchain"
        delta = expected.get(p)
        parties.append(
            ParticipantLine(
                participant=p,
                bought_wh=bought.get(p, 0),
                sold_wh=sold.get(p, 0),
                delivered_wh=delivered.get(p, 0),
                imported_wh=None if reading is None else reading.imported_wh,
                exported_wh=None if reading is None else reading.exported_wh,
                locked=chain.locked.get(p, 0),
                released=chain.released.get(p, 0),
                credited=chain.credited.get(p, 0),
                expected_released=0 if delta is None else delta.released,
                expected_credited=0 if delta is None else delta.credited,
                reading_source=source,
            )
        )
    return parties


def _party_checks(parties: list[ParticipantLine], complete: bool) -> list[Check]:
    """``value_conserved``, ``locks_released`` and ``delivery_within_export``."""
    net = sum(p.net_change for p in parties)
    checks = [
        Check(
            "value_conserved",
            net == 0,
            f"net changes sum to {net} base units (want 0)"
            if net
            else "the parties' net changes sum to zero",
        )
    ]
    if complete:
        unreleased = [p.participant for p in parties if p.released != p.locked]
        checks.append(
            Check(
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
            Check(
                "locks_released",
                not over_released,
                f"released more than locked for {_few(over_released)}"
                if over_released
                else "not settled yet; no party released more than it locked",
            )
        )
    overdelivered = []
    for party in parties:
        if not party.sold_wh:
            continue
        exported = party.exported_wh if party.reading_source == "onchain" else None
        cap = min(party.sold_wh, exported or 0)
        if (complete and party.delivered_wh != cap) or party.delivered_wh > cap:
            overdelivered.append(party.participant)
    checks.append(
        Check(
            "delivery_within_export",
            not overdelivered,
            f"delivered != min(sold, exported) for sellers {_few(overdelivered)}"
            if overdelivered
            else "each seller delivered min(sold, exported)",
        )
    )
    return checks


def _totals(trades: list[Trade], lines: list[TradeLine], chain: _OnChain) -> Totals:
    done = [line for line in lines if line.settled]
    return Totals(
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
        locked=sum(chain.locked.values()),
        released=sum(chain.released.values()),
        credited=sum(chain.credited.values()),
    )


def _lower(trade: Trade) -> Trade:
    return replace(trade, buyer=trade.buyer.lower(), seller=trade.seller.lower())


def _few(items: list[Any], limit: int = 8) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


__all__ = [
    "build_report",
]
