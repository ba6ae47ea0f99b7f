"""Defaulters at commit: no single participant can void an interval for the others.

The clearing of an interval is published at its gate closure, before its commit lands. A
participant can withdraw in between, and ``commitInterval`` locks every party's collateral
or reverts as a whole (``InsufficientCollateral``): one party's withdrawal would void every
other party's trades, for free. So the commit is made without it.

The rule (:mod:`market.gate_closure` applies it; the audit re-derives it,
:mod:`audit.checks.defaulters`)
    Round ``r`` (from 1) starts from the clearing ``C[r-1]`` (``C[0]``: the clearing of the
    published set). Each party of ``C[r-1]`` must cover what committing its trades locks
    (:func:`commit_locks`: a buyer ``quantity * price``, a seller ``quantity * penaltyPrice``).
    The free balances of all of them are read at one block ``B[r]``; every party whose free
    balance there is below its lock is a *defaulter* of round ``r`` (:func:`shortfalls`).
    All orders of the defaulters of rounds ``1..r`` leave the book, and what remains is
    cleared again by the same mechanism (``C[r]``). Rounds end when no party of the last
    clearing is short; each removes at least one party, so there are at most as many rounds
    as parties, and a book whose every party defaults ends empty (committed with its root and
    no trades).

Refused signatures (the same rule, a second reason)
    ``commitInterval`` checks every order it fills: an ECDSA signature of its party, or, for a
    contract account, one its ERC-1271 ``isValidSignature`` accepts (within the market's gas
    cap). A contract account can accept its orders at intake and refuse them when the commit
    lands, and the whole commit reverts ``BadOrderSignature``: the same void as a withdrawal.
    So in round ``r`` a party of ``C[r-1]`` is also a defaulter when it is a contract account
    and one of its orders that ``C[r-1]`` fills is not accepted at ``B[r]``, asked exactly as
    the market asks (``acceptsSignature``); the defaulter names that order. A party both short
    and refusing is named once, as short.

Why it is safe to give the operator this choice
    A defaulter is named with the block at which its shortfall was read, and its free balance
    at a block is public: the audit rebuilds it from the market's escrow, lock and settlement
    events, and fails an interval whose operator dropped a party that was not short there, or
    kept one that was, or committed anything but the re-clearing without the dropped parties.
    The block must lie between the gate closure and the commit, so an old state (before a
    deposit) cannot be named.

Why a defaulter is not penalised on-chain
    It gets no trades, and its orders are published ``dropped``. A bond slashed on-chain for
    a withdrawal would need the contract to know of orders it never saw committed, and would
    let an operator that names false defaulters take money instead of only trades; the audit
    catches a false default either way, and the honest participants' trades commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

INSUFFICIENT_COLLATERAL = "insufficient_collateral"
"""The reason a defaulter's orders were dropped: its free balance at the named block was below
what its trades lock."""
REFUSED_SIGNATURE = "refused_signature"
"""The reason a defaulter's orders were dropped: it is a contract account, and at the named block
its ERC-1271 ``isValidSignature``, asked as ``commitInterval`` asks it (``acceptsSignature``),
did not accept the named order of its that the round's clearing fills."""
REASONS = (INSUFFICIENT_COLLATERAL, REFUSED_SIGNATURE)
"""Every reason the rule knows."""


def commit_locks(
    trades: Iterable[tuple[str, str, int, int]], penalty_price_per_wh: int
) -> dict[str, int]:
    """What committing ``trades`` (``(buyer, seller, quantity_wh, price_per_wh)``) locks of each
    party, in token base units (DESIGN §5): ``quantity * price`` of the buyer's free balance,
    ``quantity * penaltyPrice`` of the seller's, summed over its trades. Keys as given."""
    locks: dict[str, int] = {}
    for buyer, seller, quantity_wh, price_per_wh in trades:
        locks[buyer] = locks.get(buyer, 0) + quantity_wh * price_per_wh
        locks[seller] = locks.get(seller, 0) + quantity_wh * penalty_price_per_wh
    return locks


def shortfalls(
    locks_base_units: Mapping[str, int], free_base_units: Mapping[str, int]
) -> dict[str, tuple[int, int]]:
    """The parties of ``locks_base_units`` whose free balance is below their lock, each with
    ``(free, needed)``; a party missing from ``free_base_units`` has none."""
    return {
        party: (free_base_units.get(party, 0), needed)
        for party, needed in locks_base_units.items()
        if free_base_units.get(party, 0) < needed
    }


__all__ = ["INSUFFICIENT_COLLATERAL", "REASONS", "REFUSED_SIGNATURE", "commit_locks", "shortfalls"]
