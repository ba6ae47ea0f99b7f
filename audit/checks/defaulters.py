"""The ``defaulters`` check: every party dropped at commit was short, and only those were.

An interval may name defaulters (:mod:`market.defaulters`): parties whose free balance, read
at a block between the gate closure and the commit, no longer covered what their cleared
trades lock. Their orders stay in the published set (and its root) as ``dropped``, and the
committed trades are the re-clearing without them. The audit re-derives every round from the
published set and the chain:

* round ``r`` starts from the clearing ``C[r-1]`` (``C[0]``: the clearing of the unexpired
  set), and names one block ``B[r]`` (rounds numbered from 1, blocks never going back, each
  before the commit's block, and, when the audit has the block times, the block after
  ``B[r]`` mined at or after the published ``closedAt``: a state from before the gate closed,
  before a deposit say, cannot be named);
* the parties of ``C[r-1]`` whose free balance at the end of ``B[r]``, rebuilt from the
  market's events alone (:func:`audit.checks.market.rebuilt_balances`, which ``conservation``
  holds equal to ``balanceOf``), is below what their trades in ``C[r-1]`` lock at the
  commit's penalty price (:func:`market.defaulters.commit_locks`) are exactly the parties the
  round names: a dropped party that was not short, or a short one that was kept, fails;
* ``C[r]`` is the clearing of the set without every party named so far.

A defaulter named for a refused signature (``refused_signature``, :mod:`market.defaulters`)
names an order of its own that ``C[r-1]`` fills; it passes when the party held code at the end
of ``B[r]`` and its ``isValidSignature``, asked there exactly as ``commitInterval`` asks it
(``acceptsSignature``, read by :func:`audit.chain_source.read_signature_answers`), did not
accept that order. A party that accepted there, or an account with no code (an ECDSA signature
cannot be refused), fails. A refusing party the operator kept is no failure: had it refused at
the commit, the commit would not be on-chain.

The orders marked ``dropped`` must be exactly the unexpired orders of the named parties. The
``reclear`` and ``properties`` checks then hold the committed trades to the clearing of the set
without the dropped parties (:attr:`audit.checks.book.PublishedSet.dropped_parties`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audit.checks.book import PublishedSet
from audit.checks.market import rebuilt_balances
from audit.checks.violations import DEFAULTERS, CheckLog, address_key, is_uint, short
from audit.evidence import ClearingRules, LedgerEvidence, PublishedBook
from ledger.events import IntervalCommitted
from market import clearing
from market.defaulters import (
    INSUFFICIENT_COLLATERAL,
    REASONS,
    REFUSED_SIGNATURE,
    commit_locks,
    shortfalls,
)


@dataclass(frozen=True, slots=True)
class Defaulter:
    """One published defaulter, its fields read (amounts as stated, None when unreadable)."""

    round: int
    block: int
    participant: str
    free_base_units: int | None
    needed_base_units: int | None
    reason: str = INSUFFICIENT_COLLATERAL
    order: str | None = None
    """``refused_signature``: the order (``0x`` lower-case hex) the party refused."""


def parse_defaulters(book: PublishedBook, problems: list[str]) -> list[Defaulter]:
    """The published defaulters that are well formed; a problem for each that is not."""
    out = []
    for i, entry in enumerate(book.defaulters):
        label = f"defaulter {i}"
        if not isinstance(entry, Mapping):
            problems.append(f"{label}: not an object")
            continue
        round_, block = entry.get("round"), entry.get("block")
        if not is_uint(round_) or not is_uint(block) or int(str(round_)) < 1:
            problems.append(f"{label}: round {round_!r} or block {block!r} is not a number")
            continue
        try:
            participant = address_key(str(entry.get("participant")))
        except ValueError:
            problems.append(f"{label}: participant {entry.get('participant')!r} is no address")
            continue
        reason = entry.get("reason")
        if reason not in REASONS:
            problems.append(f"{label}: reason {reason!r} is not one the rule knows")
        order = entry.get("order")
        if reason == REFUSED_SIGNATURE and not isinstance(order, str):
            problems.append(f"{label}: a refused signature names no order")
        out.append(
            Defaulter(
                int(str(round_)),
                int(str(block)),
                participant,
                _amount(entry.get("freeBaseUnits")),
                _amount(entry.get("neededBaseUnits")),
                str(reason),
                order.lower() if isinstance(order, str) else None,
            )
        )
    return out


def _amount(value: Any) -> int | None:
    try:
        amount = int(str(value))
    except ValueError:
        return None
    return amount if amount >= 0 else None


def check_defaulters(
    book: PublishedBook,
    parsed: PublishedSet,
    commit: IntervalCommitted,
    ledger: LedgerEvidence,
    rules: ClearingRules,
    checks: CheckLog,
) -> None:
    """The ``defaulters`` check; sets ``parsed.dropped_parties`` to the parties named."""
    problems: list[str] = []
    named = parse_defaulters(book, problems)
    rounds: dict[int, list[Defaulter]] = {}
    for d in named:
        rounds.setdefault(d.round, []).append(d)
    if sorted(rounds) != list(range(1, len(rounds) + 1)):
        problems.append(f"rounds {sorted(rounds)} are not numbered 1, 2, ...")
    dropped: set[str] = set()
    orders = parsed.unexpired_orders()
    result = clearing.clear(orders, rules.mechanism, rules.k)
    last_block = -1
    for r in sorted(rounds):
        entries = rounds[r]
        blocks = {d.block for d in entries}
        if len(blocks) != 1:
            problems.append(f"round {r}: names several blocks {sorted(blocks)}")
        block = min(blocks)
        problems.extend(_block_problems(r, block, last_block, commit, ledger, book.closed_at))
        last_block = block
        owner = {o.id: o.participant or "" for o in orders}
        locks = commit_locks(
            (
                (owner[t.buy], owner[t.sell], int(t.quantity_wh), int(t.price_per_wh))
                for t in result.trades
            ),
            commit.penalty_price_per_wh,
        )
        free = {p: b[0] for p, b in rebuilt_balances(ledger, block).items()}
        short_at = shortfalls(locks, free)
        names = {d.participant for d in entries}
        filled = {oid: owner[oid] for t in result.trades for oid in (t.buy, t.sell) if oid in owner}
        for d in sorted(entries, key=lambda d: d.participant):
            if d.participant in dropped:
                problems.append(f"round {r}: {d.participant} was already dropped")
            elif d.reason == REFUSED_SIGNATURE:
                problems.extend(_refusal_problems(r, block, d, filled, ledger))
            elif d.participant not in short_at:
                problems.append(
                    f"round {r}: {d.participant} was dropped as short at block {block}, but "
                    f"its free balance there ({free.get(d.participant, 0)}) covered the "
                    f"{locks.get(d.participant, 0)} its trades lock"
                )
            else:
                have, need = short_at[d.participant]
                if (d.free_base_units, d.needed_base_units) != (have, need):
                    problems.append(
                        f"round {r}: {d.participant} is stated free {d.free_base_units} needed "
                        f"{d.needed_base_units}; the chain's events give free {have} needed "
                        f"{need} at block {block}"
                    )
        for party in sorted(set(short_at) - names):
            have, need = short_at[party]
            problems.append(
                f"round {r}: {party} was short at block {block} (free {have} < needed {need}) "
                "but was not dropped"
            )
        dropped |= names
        orders = [o for o in orders if o.participant not in dropped]
        result = clearing.clear(orders, rules.mechanism, rules.k)
    parsed.dropped_parties = dropped
    expected = {o.id for o in parsed.unexpired_orders() if o.participant in dropped}
    for oid in sorted(parsed.marked_dropped - expected):
        problems.append(f"order {short(oid)}: published dropped, its participant is no defaulter")
    for oid in sorted(expected - parsed.marked_dropped):
        problems.append(f"order {short(oid)}: its participant defaulted, not published dropped")
    checks.fail_all(DEFAULTERS, problems)
    if dropped:
        checks.notes.append(
            f"defaulters: {len(dropped)} part{'ies' if len(dropped) != 1 else 'y'} dropped at "
            f"commit in {len(rounds)} round{'s' if len(rounds) != 1 else ''}: "
            + ", ".join(sorted(dropped))
        )


def _refusal_problems(
    r: int, block: int, d: Defaulter, filled: Mapping[str, str], ledger: LedgerEvidence
) -> list[str]:
    """Why ``d`` cannot be a party that refused its signature at ``block`` in round ``r``:
    its order is not one of its own the round's clearing fills, it held no code there, or
    the chain says its ``isValidSignature`` accepted the order there."""
    if d.order is None:
        return []  # parse_defaulters reported it
    if filled.get(d.order) != d.participant:
        return [
            f"round {r}: {d.participant} was dropped for refusing order {short(d.order)}, "
            "which is not an order of its that the round's clearing fills"
        ]
    answer = ledger.signature_answer(d.participant, d.order, block)
    if not answer.contract:
        return [
            f"round {r}: {d.participant} was dropped for refusing its signature at block "
            f"{block}, but it held no code there (an account's own ECDSA signature cannot "
            "be refused)"
        ]
    if answer.accepts:
        return [
            f"round {r}: {d.participant} was dropped for refusing order {short(d.order)} "
            f"at block {block}, but its isValidSignature accepted it there"
        ]
    return []


def _block_problems(
    r: int,
    block: int,
    last_block: int,
    commit: IntervalCommitted,
    ledger: LedgerEvidence,
    closed_at: Any,
) -> list[str]:
    """Why round ``r``'s ``block`` cannot be where a shortfall was read: not before the
    commit, before the previous round's block, or before the gate closed."""
    problems = []
    if block < last_block:
        problems.append(f"round {r}: block {block} is before the previous round's {last_block}")
    if block >= commit.block_number:
        problems.append(
            f"round {r}: block {block} is not before the commit's block {commit.block_number}"
        )
    mined = ledger.block_times.get(block + 1)
    if is_uint(closed_at) and mined is not None and mined < closed_at:
        problems.append(
            f"round {r}: block {block} is from before the gate closed at {closed_at} (block "
            f"{block + 1} was mined at {mined})"
        )
    return problems


__all__ = ["Defaulter", "check_defaulters", "parse_defaulters"]
