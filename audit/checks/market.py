"""The checks of the market as a whole at the audited block: ``conservation`` and ``code``.

``conservation``: every participant's free and locked balance, rebuilt from the events alone
(deposits, withdrawals, locks, settlement releases and credits), equals ``balanceOf``; their
sum equals ``totalEscrowed()`` and ``deposits - withdrawals``; the token balance of the market
covers it (a surplus, which anyone can cause by sending tokens directly, is a note).
``code``: the runtime code at the audited address is the EnergyMarket build this audit mirrors
(bytes of immutables aside), so the settlement rules it re-runs are the ones the chain runs.
"""

from __future__ import annotations

from audit.checks.violations import CODE, CONSERVATION, CheckLog, decimal_text
from audit.evidence import LedgerEvidence
from ledger.units import currency_from_base_units


def code_matches(deployed: bytes, reference: bytes) -> tuple[bool, int]:
    """Whether ``deployed`` is ``reference`` with only its zero bytes filled in.

    Immutables (token address, epoch, interval length, cached EIP-712 values) are written
    into the runtime code at deployment over zero placeholders; every other byte is fixed by
    the source. Returns (matches, number of bytes that differ outside placeholders).
    """
    if len(deployed) != len(reference):
        return False, abs(len(deployed) - len(reference))
    foreign = sum(1 for d, r in zip(deployed, reference, strict=True) if d != r and r != 0)
    return foreign == 0, foreign


def check_conservation(ledger: LedgerEvidence, checks: CheckLog) -> None:
    """The market-wide ``conservation`` check at the audited block."""
    rebuilt: dict[str, list[int]] = {}

    def entry(p: str) -> list[int]:
        return rebuilt.setdefault(p, [0, 0])

    deposits = withdrawals = 0
    for e in ledger.escrow:
        entry(e.participant)[0] += e.amount_base_units
        if e.amount_base_units >= 0:
            deposits += e.amount_base_units
        else:
            withdrawals -= e.amount_base_units
    for lock in ledger.locks:
        b = entry(lock.participant)
        b[0] -= lock.amount_base_units
        b[1] += lock.amount_base_units
    for s in ledger.party_settlements:
        b = entry(s.participant)
        b[1] -= s.released_base_units
        b[0] += s.credited_base_units
    problems = []
    for p in sorted(set(rebuilt) | set(ledger.balances)):
        free, locked = rebuilt.get(p, [0, 0])
        on_chain = ledger.balances.get(p)
        if on_chain is None:
            problems.append(f"{p}: balance not read at block {ledger.block_number}")
            continue
        if (free, locked) != on_chain:
            problems.append(
                f"{p}: balance rebuilt from events (free {free}, locked {locked}) differs from "
                f"balanceOf (free {on_chain[0]}, locked {on_chain[1]})"
            )
        if free < 0 or locked < 0:
            problems.append(f"{p}: events give a negative balance (free {free}, locked {locked})")
    total = sum(f + lk for f, lk in rebuilt.values())
    if total != ledger.total_escrowed:
        problems.append(
            f"sum of balances rebuilt from events {total} differs from totalEscrowed "
            f"{ledger.total_escrowed}"
        )
    if deposits - withdrawals != ledger.total_escrowed:
        problems.append(
            f"deposits {deposits} - withdrawals {withdrawals} = {deposits - withdrawals} differs "
            f"from totalEscrowed {ledger.total_escrowed}"
        )
    if ledger.token_balance < ledger.total_escrowed:
        problems.append(
            f"token balance of the market {ledger.token_balance} is below totalEscrowed "
            f"{ledger.total_escrowed}"
        )
    checks.fail_all(CONSERVATION, problems)
    if not problems:
        tokens = decimal_text(currency_from_base_units(ledger.total_escrowed))
        note = (
            f"conservation: {len(rebuilt)} balances rebuilt from events match balanceOf; "
            f"their sum {tokens} tokens = totalEscrowed"
        )
        surplus = ledger.token_balance - ledger.total_escrowed
        note += (
            f"; the token balance is {surplus} base units above it (sent directly, not deposited)"
            if surplus
            else " = token balance"
        )
        checks.notes.append(note)


def check_code(ledger: LedgerEvidence, checks: CheckLog) -> None:
    """The market-wide ``code`` check."""
    same, differing = code_matches(ledger.deployed_code, ledger.reference_code)
    if same:
        checks.notes.append("code: the EnergyMarket build this audit mirrors")
        return
    if len(ledger.deployed_code) != len(ledger.reference_code):
        checks.fail(
            CODE,
            f"runtime code is {len(ledger.deployed_code)} bytes, the EnergyMarket build "
            f"{len(ledger.reference_code)} bytes",
        )
    else:
        checks.fail(
            CODE,
            f"runtime code differs from the EnergyMarket build in {differing} "
            f"byte{'s' if differing != 1 else ''} outside immutables",
        )


__all__ = [
    "check_code",
    "check_conservation",
    "code_matches",
]
