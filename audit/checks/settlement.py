"""The ``settlement`` check: the chain settled each interval as the settlement model does.

:mod:`settlement.resettlement` re-settles the interval from the committed trades, the terms
snapshotted at commit and the readings accepted on-chain (``ReadingSubmitted``, each
re-verified against the meter key registered at the time); the check compares it with what
commit locked (``CollateralLocked``), how every settled trade settled (``TradeSettled``:
delivered, payment, refund, penalty) and each party's netted change (``ParticipantSettled``).
Each trade settles at most once, in cursor order, and ``IntervalSettled`` comes exactly when
all have.
"""

from __future__ import annotations

from collections.abc import Sequence

from audit.checks.meters import MeterHistory, reading_signer
from audit.checks.violations import SETTLEMENT, CheckLog
from audit.evidence import CommitRecord, LedgerEvidence
from ledger.errors import BadSignature
from ledger.events import IntervalEvents
from ledger.records import IntervalInfo, Trade
from settlement import model
from settlement.resettlement import accepted_readings, resettle


def check_settlement(
    commit: CommitRecord,
    trades: Sequence[Trade],
    state: IntervalInfo | None,
    events: IntervalEvents,
    ledger: LedgerEvidence,
    meters: MeterHistory,
    checks: CheckLog,
) -> str:
    """The ``settlement`` check; returns the interval's settlement status for the report."""
    event = commit.event
    problems: list[str] = []
    terms = event.terms

    expected_locks = {
        p: a for p, a in model.collateral_locks(trades, terms.penalty_price_per_wh).items() if a
    }
    found_locks: dict[str, int] = {}
    for lock in events.locks:
        found_locks[lock.participant] = (
            found_locks.get(lock.participant, 0) + lock.amount_base_units
        )
    for party in sorted(set(expected_locks) | set(found_locks)):
        want, got = expected_locks.get(party, 0), found_locks.get(party, 0)
        if want != got:
            problems.append(f"collateral locked of {party}: expected {want} found {got}")

    separator = ledger.order_domain.separator
    read: set[str] = set()
    for reading in events.readings:
        who = reading.participant
        if who in read:
            problems.append(f"reading of {who} accepted twice")
            continue
        read.add(who)
        if reading.position < event.position:
            problems.append(f"reading of {who} accepted before the commit")
        if reading.signature is None:
            checks.notes.append(
                f"meter signature of {who}'s reading not re-verified (transaction "
                f"{reading.tx_hash} is not a direct submitReadings call)"
            )
            continue
        # the key in force when the interval was committed counts (a later rotation or
        # deregistration changes nothing for it), as the contract checks
        meter = meters.meter_at(who, event.position)
        try:
            signer = reading_signer(separator, reading)
        except BadSignature as err:
            problems.append(f"reading of {who}: signature does not recover ({err.message})")
            continue
        if signer != meter:
            problems.append(
                f"reading of {who} (exported {reading.exported_wh} Wh): signed by {signer}, "
                f"the meter registered at the commit was {meter}"
            )

    settled_count = len({e.trade_index for e in events.trade_settlements})
    expected = resettle(
        trades, accepted_readings(events.readings).exported_wh, terms, settled_count
    )
    seen: set[int] = set()
    for n, settled in enumerate(events.trade_settlements):
        k = settled.trade_index
        if k in seen:
            problems.append(f"trade {k} settled twice")
            continue
        seen.add(k)
        if k >= len(trades):
            problems.append(f"trade {k} settled, but only {len(trades)} were committed")
            continue
        if k != n:
            problems.append(f"trade {k} settled out of cursor order (position {n})")
        outcome = expected.outcomes[k]
        for name, a, b in (
            ("delivered Wh", outcome.delivered_wh, settled.delivered_wh),
            ("payment", outcome.payment, settled.payment_base_units),
            ("refund", outcome.refund, settled.refund_base_units),
            ("penalty", outcome.penalty, settled.penalty_base_units),
        ):
            if a != b:
                problems.append(f"trade {k}: {name} expected {a} found {b}")

    found_released: dict[str, int] = {}
    found_credited: dict[str, int] = {}
    grid_credited = 0
    for party_event in events.party_settlements:
        if party_event.grid_revenue:
            grid_credited += party_event.credited_base_units
            continue
        p = party_event.participant
        found_released[p] = found_released.get(p, 0) + party_event.released_base_units
        found_credited[p] = found_credited.get(p, 0) + party_event.credited_base_units
    for party in sorted(set(expected.deltas) | set(found_released)):
        delta = expected.deltas.get(party, model.BalanceDelta(0, 0))
        for name, a, b in (
            ("released", delta.released, found_released.get(party, 0)),
            ("credited", delta.credited, found_credited.get(party, 0)),
        ):
            if a != b:
                problems.append(f"{party}: {name} expected {a} found {b}")
    expected_grid = sum(o.grid_share for o in expected.outcomes[:settled_count])
    if grid_credited != expected_grid:
        problems.append(
            f"grid operator credited {grid_credited} base units, the committed seller prices "
            f"give {expected_grid}"
        )
    released, credited = sum(found_released.values()), sum(found_credited.values())
    if released != credited + grid_credited:
        problems.append(
            f"settlement moved value: released {released} base units from locked balances, "
            f"credited {credited} to free balances and {grid_credited} to the grid operator"
        )

    marked = bool(events.settlements)
    if marked and settled_count != len(trades):
        problems.append(f"IntervalSettled emitted after {settled_count} of {len(trades)} trades")
    if state is not None:
        if marked != (state.status == "settled"):
            problems.append(
                f"intervalInfo status {state.status!r} but IntervalSettled "
                f"{'was' if marked else 'was not'} emitted"
            )
        if state.cursor != settled_count and state.status != "none":
            problems.append(
                f"cursor expected {settled_count} (trades settled) found {state.cursor}"
            )
    checks.fail_all(SETTLEMENT, problems)

    if marked:
        return "settled"
    if settled_count:
        return f"{settled_count} of {len(trades)} trades settled"
    if ledger.block_timestamp < event.deadline:
        return "reading window open"
    return "awaiting settlement"


__all__ = [
    "check_settlement",
]
