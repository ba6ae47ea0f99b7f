"""The checks of the market as a whole at the audited block: ``conservation`` and ``code``.

``conservation``: every participant's free and locked balance, rebuilt from the events alone
(deposits, withdrawals, locks, settlement releases and credits), equals ``balanceOf``; their
sum equals ``totalEscrowed()`` and ``deposits - withdrawals``; the token balance of the market
covers it (a surplus, which anyone can cause by sending tokens directly, is a note).
``code``: the runtime code at the audited address is the EnergyMarket build this audit mirrors,
byte for byte outside the exact places the compiler reserves for immutables
(``immutableReferences``), so the settlement rules it re-runs are the ones the chain runs; and,
when the audit knows the market's creation transaction (from the deployment record, or named),
that transaction created this address directly with the build's init code, and its constructor
arguments are the record's and name the token the market reports. The immutables (token,
epoch, interval length, the cached EIP-712 domain) are what that constructor wrote, so a market
whose creation checks out cannot carry foreign immutables either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from audit.checks.violations import CODE, CONSERVATION, CheckLog, decimal_text
from audit.evidence import CreationRecord, LedgerEvidence
from ledger.abi import WORD
from ledger.units import currency_from_base_units

CONSTRUCTOR_WORDS = (
    "token",
    "admin",
    "epoch",
    "intervalSeconds",
    "penaltyPricePerWh",
    "toleranceBps",
    "readingWindowSeconds",
)
"""EnergyMarket's constructor arguments, one ABI word each (``Terms`` is a static struct)."""
_CONSTRUCTOR_BITS = (160, 160, 64, 64, 128, 16, 64)


def code_matches(
    deployed: bytes, reference: bytes, immutable_ranges: Sequence[tuple[int, int]]
) -> tuple[bool, int]:
    """Whether ``deployed`` is ``reference`` with only its immutables' bytes filled in.

    The constructor writes each immutable (token address, epoch, interval length, cached
    EIP-712 values) into the runtime code at the ``(start, length)`` ranges the compiler
    reports; every other byte is fixed by the source, zero bytes included (a zero may be a
    STOP or part of a jump target). Returns (matches, number of bytes that differ outside
    those ranges, or the difference in length).
    """
    if len(deployed) != len(reference):
        return False, abs(len(deployed) - len(reference))
    masked = bytearray(deployed)
    for start, length in immutable_ranges:
        masked[start : start + length] = reference[start : start + length]
    foreign = sum(1 for d, r in zip(masked, reference, strict=True) if d != r)
    return foreign == 0, foreign


def constructor_arguments(init: bytes, reference_init: bytes) -> tuple[int, ...] | str:
    """The constructor arguments of a creation transaction's input, or why they cannot be.

    The input must be ``reference_init`` followed by exactly one in-range ABI word per
    :data:`CONSTRUCTOR_WORDS` entry.
    """
    if not reference_init or init[: len(reference_init)] != reference_init:
        return "its init code is not the EnergyMarket build's"
    tail = init[len(reference_init) :]
    if len(tail) != WORD * len(CONSTRUCTOR_WORDS):
        return (
            f"its constructor arguments are {len(tail)} bytes, not {WORD * len(CONSTRUCTOR_WORDS)}"
        )
    values = tuple(int.from_bytes(tail[i * WORD : (i + 1) * WORD]) for i in range(7))
    for name, bits, value in zip(CONSTRUCTOR_WORDS, _CONSTRUCTOR_BITS, values, strict=True):
        if value >> bits:
            return f"its constructor argument {name} is out of range"
    return values


def _flat(value: Any) -> tuple[Any, ...]:
    """A deployment record's constructor arguments as one flat tuple of integers (addresses
    as 0x strings become integers; the terms tuple is spread)."""
    if isinstance(value, (list, tuple)):
        return tuple(v for item in value for v in _flat(item))
    if isinstance(value, str) and value.startswith("0x"):
        return (int(value, 16),)
    return (value,)


def creation_problems(ledger: LedgerEvidence, creation: CreationRecord) -> list[str]:
    """What is wrong with ``creation`` as the transaction that created ``ledger.market``."""
    where = f"creation transaction {creation.tx_hash}"
    if not creation.succeeded:
        return [f"{where} did not succeed"]
    if creation.to is not None:
        return [
            f"{where} is a call to {creation.to}, not a contract creation: the market's init "
            "code and constructor arguments are not in it and cannot be checked"
        ]
    if creation.created is None or creation.created.lower() != ledger.market.lower():
        return [f"{where} created {creation.created}, not the audited market {ledger.market}"]
    args = constructor_arguments(creation.input, ledger.reference_init_code)
    if isinstance(args, str):
        return [f"{where}: {args}"]
    problems = []
    if args[0] != int(ledger.token, 16):
        problems.append(
            f"{where} passed token {args[0]:#042x}, but the market reports {ledger.token}"
        )
    if creation.record_args is not None and _flat(creation.record_args) != args:
        stated = dict(zip(CONSTRUCTOR_WORDS, _flat(creation.record_args), strict=False))
        differing = [n for n, v in zip(CONSTRUCTOR_WORDS, args, strict=True) if stated.get(n) != v]
        problems.append(
            f"{where}: the constructor arguments differ from the deployment record's "
            f"({', '.join(differing) or 'their number'})"
        )
    return problems


def rebuilt_balances(
    ledger: LedgerEvidence, through_block: int | None = None
) -> dict[str, list[int]]:
    """Every participant's ``[free, locked]`` balance rebuilt from the market's events alone
    (deposits, withdrawals, commit locks, settlement releases and credits), as they stood at
    the end of ``through_block`` (default: the audited block). ``conservation`` holds them
    equal to ``balanceOf`` at the audited block; the ``defaulters`` check reads them at the
    blocks an interval names its defaulters at."""
    rebuilt: dict[str, list[int]] = {}

    def entry(p: str) -> list[int]:
        return rebuilt.setdefault(p, [0, 0])

    def counted(block_number: int) -> bool:
        return through_block is None or block_number <= through_block

    for e in ledger.escrow:
        if counted(e.position.block_number):
            entry(e.participant)[0] += e.amount_base_units
    for lock in ledger.locks:
        if counted(lock.position.block_number):
            b = entry(lock.participant)
            b[0] -= lock.amount_base_units
            b[1] += lock.amount_base_units
    for s in ledger.party_settlements:
        if counted(s.position.block_number):
            b = entry(s.participant)
            b[1] -= s.released_base_units
            b[0] += s.credited_base_units
    return rebuilt


def check_conservation(ledger: LedgerEvidence, checks: CheckLog) -> None:
    """The market-wide ``conservation`` check at the audited block."""
    rebuilt = rebuilt_balances(ledger)
    deposits = sum(e.amount_base_units for e in ledger.escrow if e.amount_base_units >= 0)
    withdrawals = -sum(e.amount_base_units for e in ledger.escrow if e.amount_base_units < 0)
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
    """The market-wide ``code`` check: runtime code, and the creation transaction if known."""
    problems = []
    same, differing = code_matches(
        ledger.deployed_code, ledger.reference_code, ledger.immutable_ranges
    )
    if not same and len(ledger.deployed_code) != len(ledger.reference_code):
        problems.append(
            f"runtime code is {len(ledger.deployed_code)} bytes, the EnergyMarket build "
            f"{len(ledger.reference_code)} bytes"
        )
    elif not same:
        problems.append(
            f"runtime code differs from the EnergyMarket build in {differing} "
            f"byte{'s' if differing != 1 else ''} outside its immutables"
        )
    if ledger.creation is not None:
        problems += creation_problems(ledger, ledger.creation)
    checks.fail_all(CODE, problems)
    if problems:
        return
    if ledger.creation is None:
        checks.notes.append(
            "code: the EnergyMarket build this audit mirrors (runtime code; the creation "
            "transaction was not checked: no deployment record names this market)"
        )
    else:
        checks.notes.append(
            "code: the EnergyMarket build this audit mirrors, created by "
            f"{ledger.creation.tx_hash} with the build's init code and the "
            + (
                "deployment record's constructor arguments"
                if ledger.creation.record_args is not None
                else "token it reports"
            )
        )


__all__ = [
    "CONSTRUCTOR_WORDS",
    "check_code",
    "check_conservation",
    "code_matches",
    "constructor_arguments",
    "creation_problems",
    "rebuilt_balances",
]
