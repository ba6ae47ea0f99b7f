"""The reconciliation report: truthful events pass every check, each kind of lie fails one.

The events are made by hand from :mod:`settlement.model` (what an honest contract emits), so
each test can bend one number and see which check catches it. One test reconciles a real
settlement on the embedded chain, and one renders the human table.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from eth_utils.address import to_checksum_address
from rich.console import Console

from ledger.events import (
    CollateralLocked,
    IntervalCommitted,
    IntervalEvents,
    IntervalSettled,
    ParticipantSettled,
    ReadingSubmitted,
    TradeSettled,
)
from ledger.records import IntervalInfo, Terms, Trade
from settlement.interval_record import EscrowSnapshot, IntervalRecord
from settlement.model import collateral_locks, settle_range
from settlement.reconciliation import build_report
from settlement.report import SettlementReport
from settlement.report_table import render

A, B, C, D = ("0x" + c * 40 for c in "abcd")
PRICE = 250_000_000_000_000
TERMS = Terms(penalty_price_per_wh=500_000_000_000_000, tolerance_bps=500)
TRADES = (
    Trade(A, B, 600, PRICE),
    Trade(C, B, 300, 2 * PRICE),
    Trade(A, D, 100, PRICE),
)
EXPORTED = {B: 450, D: 100}


T = 7
ROOT = b"\x01" * 32


def events(
    trades: tuple[Trade, ...] = TRADES,
    exported: dict[str, int] = EXPORTED,
    cursor: int | None = None,
) -> IntervalRecord:
    """What an honest contract emits for ``trades`` settled up to ``cursor`` (all by default),
    in chunks of one trade."""
    stop = len(trades) if cursor is None else cursor
    outcomes = settle_range(trades, exported, TERMS, 0, stop).outcomes
    parties = []
    for k in range(stop):
        for party, delta in settle_range(trades, exported, TERMS, k, k + 1).deltas.items():
            parties.append(ParticipantSettled(T, party, delta.released, delta.credited))
    locked = collateral_locks(trades, TERMS.penalty_price_per_wh)
    total = 10**24
    pp, tolerance = TERMS.penalty_price_per_wh, TERMS.tolerance_bps
    return IntervalRecord(
        state=IntervalInfo(
            status="settled" if stop == len(trades) else "committed",
            trade_count=len(trades),
            cursor=stop,
            deadline=1_000,
            tolerance_bps=tolerance,
            penalty_price_per_wh=pp,
            book_root=ROOT,
            remaining_hash=bytes(32),
        ),
        trades=trades,
        events=IntervalEvents(
            interval=T,
            commit=IntervalCommitted(T, ROOT, b"", b"", len(trades), 1_000, pp, tolerance),
            locks=tuple(CollateralLocked(T, p, amount) for p, amount in locked.items()),
            readings=tuple(ReadingSubmitted(T, p, 5, e) for p, e in exported.items()),
            trade_settlements=tuple(
                TradeSettled(T, o.index, o.delivered_wh, o.payment, o.refund, o.penalty)
                for o in outcomes
            ),
            party_settlements=tuple(parties),
            settlements=(IntervalSettled(T),) if stop == len(trades) else (),
        ),
        escrow=EscrowSnapshot(total, total, total, 4),
    )


def with_events(record: IntervalRecord, **changes: Any) -> IntervalRecord:
    """``record`` with some of its events replaced."""
    return dataclasses.replace(record, events=dataclasses.replace(record.events, **changes))


def failed(report: SettlementReport) -> set[str]:
    return {c.name for c in report.checks if not c.ok}


def test_an_honest_settlement_passes_every_check() -> None:
    report = build_report(events())
    assert report.ok and failed(report) == set() and report.mismatches == ()
    assert [line.delivered_wh for line in report.trades] == [300, 150, 100]
    t = report.totals
    assert (t.contracted_wh, t.delivered_wh, t.shortfall_wh) == (1_000, 550, 450)
    assert t.paid + t.refunded == t.contracted_value
    assert t.released == t.locked and t.credited == t.released
    assert sum(p.net_change for p in report.participants) == 0
    seller = next(p for p in report.participants if p.participant == B)
    assert (seller.sold_wh, seller.delivered_wh, seller.exported_wh) == (900, 450, 450)
    # B is paid for what it delivered and loses the penalty on its whole shortfall (450 Wh).
    paid = 300 * PRICE + 150 * 2 * PRICE
    assert seller.net_change == paid - 450 * TERMS.penalty_price_per_wh


def test_a_partly_settled_interval_is_checked_up_to_its_cursor() -> None:
    report = build_report(events(cursor=2))
    assert report.ok, [c for c in report.checks if not c.ok]
    assert report.status == "committed" and report.totals.settled_trades == 2
    assert report.trades[2].settled is False and report.trades[2].paid is None


def test_a_payment_that_differs_from_the_model_is_caught() -> None:
    honest = events()
    bent = list(honest.events.trade_settlements)
    bent[1] = dataclasses.replace(bent[1], payment_base_units=bent[1].payment_base_units + 1)
    report = build_report(with_events(honest, trade_settlements=tuple(bent)))
    assert "trades_match_model" in failed(report) and "buyer_lock_released" in failed(report)
    assert any(m.startswith("trade 1:") for m in report.mismatches)


def test_a_trade_settled_twice_or_not_at_all_is_caught() -> None:
    honest = events()
    settled = honest.events.trade_settlements
    twice = build_report(with_events(honest, trade_settlements=(*settled, settled[0])))
    assert "settled_exactly_once" in failed(twice)
    assert "more than once: trades 0" in next(
        c.detail for c in twice.checks if c.name == "settled_exactly_once"
    )
    missing = build_report(with_events(honest, trade_settlements=settled[:2]))
    assert "settled_exactly_once" in failed(missing)
    beyond = build_report(with_events(events(cursor=1), trade_settlements=settled))
    assert "settled_exactly_once" in failed(beyond)


def test_value_created_for_a_participant_is_caught() -> None:
    honest = events()
    bent = list(honest.events.party_settlements)
    bent[0] = dataclasses.replace(bent[0], credited_base_units=bent[0].credited_base_units + 1)
    report = build_report(with_events(honest, party_settlements=tuple(bent)))
    assert {"participants_match_model", "value_conserved"} <= failed(report)


def test_a_lock_not_fully_released_is_caught() -> None:
    honest = events()
    locks = tuple(
        dataclasses.replace(lock, amount_base_units=lock.amount_base_units + 1)
        if lock.participant == A
        else lock
        for lock in honest.events.locks
    )
    report = build_report(with_events(honest, locks=locks))
    assert failed(report) == {"locks_released"}


def test_delivery_above_the_meter_reading_is_caught() -> None:
    honest = events()
    # the chain claims D delivered 100 Wh on 40 exported
    readings = tuple(
        ReadingSubmitted(T, D, 0, 40) if r.participant == D else r for r in honest.events.readings
    )
    report = build_report(with_events(honest, readings=readings))
    assert {"delivery_within_export", "trades_match_model"} <= failed(report)


def test_unbalanced_escrow_and_double_readings_are_caught() -> None:
    honest = events()
    again = ReadingSubmitted(T, B, 0, EXPORTED[B] + 100)  # a second reading of B, ignored
    doubled = with_events(honest, readings=(*honest.events.readings, again))
    report = build_report(dataclasses.replace(doubled, escrow=EscrowSnapshot(10, 10, 9, 4)))
    assert failed(report) == {"escrow_balanced", "one_reading_per_participant"}
    assert report.readings == 2
    detail = next(c.detail for c in report.checks if c.name == "one_reading_per_participant")
    assert detail == f"more than one reading for {B}"


def test_replayed_trades_that_differ_in_number_are_caught() -> None:
    honest = events()
    state = dataclasses.replace(honest.state, trade_count=4)
    assert "trades_committed" in failed(build_report(dataclasses.replace(honest, state=state)))


def test_json_carries_money_as_strings_and_round_trips() -> None:
    data = build_report(events()).to_json()
    text = json.dumps(data)
    back = json.loads(text)
    assert back["ok"] is True and back["interval"] == 7
    assert back["totals"]["paid"] == str(build_report(events()).totals.paid)
    assert all(isinstance(t["paid"], str) for t in back["trades"])
    assert back["trades"][0]["model"]["deliveredWh"] == 300
    assert {c["name"] for c in back["checks"]} >= {"value_conserved", "settled_exactly_once"}
    # addresses in the EIP-55 form the market API uses, so clients compare them as they are
    parties = [t[k] for t in back["trades"] for k in ("buyer", "seller")]
    parties += [p["participant"] for p in back["participants"]]
    assert parties and all(a == to_checksum_address(a) for a in parties)


def test_the_table_shows_totals_checks_and_the_verdict() -> None:
    console = Console(record=True, width=140)
    console.print(render(build_report(events())))
    text = console.export_text()
    assert "Interval 7" in text and "OK" in text and "value_conserved" in text
    bent = dataclasses.replace(events(), escrow=EscrowSnapshot(1, 2, 3, 4))
    console = Console(record=True, width=140)
    console.print(render(build_report(bent), max_rows=1))
    text = console.export_text()
    assert "MISMATCH" in text and "2 more trades" in text


@pytest.mark.parametrize("cursor", [0, 3])
def test_report_of_a_real_settlement_on_the_embedded_chain(cursor: int, tmp_path: Path) -> None:
    """The reader's events, from the contract, reconcile with the model."""
    from test_ledger_support import MarketEnv, trade
    from test_settlement_service_support import FAST_POLICY, SettleEnv

    from chain.connection import connect
    from settlement.config import SettlementConfig

    market = MarketEnv.build(connect(), n_participants=4)
    env = SettleEnv(market, tmp_path / "s.db", SettlementConfig(max_settle_trades=1), FAST_POLICY)
    a, b, c, d = env.participants
    t = env.commit([trade(a, b, 600, n=0), trade(c, b, 300, n=1), trade(a, d, 100, n=2)])
    market.to_reading_window(t)
    env.accept(t, {b: 450, d: 100})
    env.service.tick()
    if cursor:
        market.to_deadline(t)
        env.service.tick()
    report = env.service.report(t)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert report.totals.settled_trades == cursor and report.readings == 2
    assert report.escrow is not None and report.escrow.participants == 4
