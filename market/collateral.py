"""Collateral (DESIGN §5): what an order can lock, and the ledger facts it is checked against.

``commitInterval`` locks ``quantity * price`` of a buyer's free balance and
``quantity * penaltyPrice`` of a seller's. An order is accepted only when the participant's
on-chain free balance minus what all its open orders (every interval) could lock still
covers its own worst-case lock (:func:`worst_case_lock_base_units`): ``quantity * limit`` for
a bid, ``quantity * penaltyPrice`` for an ask. A fill never locks more than that (a buyer
never pays above its limit), so the commit cannot revert for collateral.

:class:`Collateral` keeps what that check needs from the ledger: the terms, and each
participant's registration and free balance. Free balances are cached: read from the chain
the first time a participant is seen and whenever a check would fail (a fresh deposit is then
seen), and lowered by what each commit locked. The hot path never calls the chain. Because a
participant can withdraw at any time, gate closure re-reads the free balances of the
interval's participants (:mod:`market.gate_closure`).

The terms and registrations follow the chain: :meth:`Collateral.apply` takes the ledger's
facts as the service re-checks them (:meth:`market.service.MarketService.refresh_facts`, at
most once per ``chain_facts_seconds``): new terms replace the kept ones, and any registry
event (registration, meter rotation, deregistration) drops the kept registrations, which are
then read again on each participant's next order.

Reads for participants not seen yet are bounded (:mod:`market.lookup_budget`): a
registration read for an address the chain never confirmed registered to this service
spends one lookup of the budget, and none is left means ``chain_busy`` (503) instead of a
read. An address the chain confirmed once (``vouched``: also every participant with an open
order at start, and every one the registrar registered) is read again without spending it,
after a registry event too; and when a flood of fresh keys has spent the budget, an address
found among every address ever registered (an incremental scan of the registry's events, at
most once a second) is still read. So a flood of fresh keys never stands between a
registered participant and its order.

Contract accounts (ERC-1271)
    ``commitInterval`` accepts a contract account's order when its ``isValidSignature`` does
    (within the market's gas cap), so intake does too: an order whose signature does not
    recover to its participant is asked of the chain (:meth:`Collateral.contract_accepts`)
    only when that participant is known to be registered without a read
    (:meth:`Collateral.may_be_contract`: confirmed registered, vouched for, or among the
    addresses ever registered, which the service scans again after each registry event,
    :meth:`Collateral.follow_registry`) and is not known to be without code. Every such check
    spends a lookup of the budget (its head, code and ``isValidSignature`` are read); an
    account found without code is not asked again for :data:`UNREGISTERED_CACHE_SECONDS`.
    So junk signatures naming fresh addresses still cost no read at all, and junk naming
    registered participants costs at most the budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from ledger import eip712 as signing
from ledger.errors import RequestError
from ledger.records import Balance, ParticipantInfo, Terms, Trade
from market.http.errors import (
    ChainBusy,
    ChainUnavailableProblem,
    InsufficientCollateral,
    ServiceUnavailable,
    UnregisteredParticipant,
)
from market.ledger_port import Ledger, LedgerCallFailed, LedgerFacts
from market.lookup_budget import LookupBudget

T = TypeVar("T")

UNREGISTERED_CACHE_SECONDS = 2.0
"""How long a "not registered" answer from the chain is trusted (monotonic seconds)."""
REGISTRY_REFRESH_SECONDS = 1.0
"""Least time between two scans of every address ever registered, made only when the lookup
budget is spent: one read a second however large the flood."""


def worst_case_lock_base_units(
    side: int, quantity_wh: int, price_per_wh: int, penalty_price_per_wh: int
) -> int:
    """Most collateral an order can lock at commit (DESIGN §5), in token base units:
    ``quantity * limit`` for a bid, ``quantity * penalty price`` for an ask."""
    if side == signing.SIDE_BUY:
        return quantity_wh * price_per_wh
    return quantity_wh * penalty_price_per_wh


def _call_ledger(method: Callable[..., T], *args: object) -> T:
    """``method(*args)`` of the ledger port for a request: a failed call is the service's
    ServiceUnavailable (503), not the caller's fault."""
    try:
        return method(*args)
    except LedgerCallFailed as err:
        raise ChainUnavailableProblem(f"the chain failed: {err.message}") from None


class Collateral:
    """The terms, and each participant's registration and free balance, as last read.

    Reads go to the ledger outside ``lock``; the caches are written under it (the market's
    one lock, shared with the book and intake).
    """

    def __init__(
        self, ledger: Ledger, lock: threading.RLock, budget: LookupBudget | None = None
    ) -> None:
        self.ledger = ledger
        self._lock = lock
        self.budget = budget or LookupBudget()
        """Chain lookups of participants not seen yet (:mod:`market.lookup_budget`)."""
        self.vouched: set[str] = set()
        """Participants the chain confirmed registered to this service (or that held open
        orders at start): their registration is read again without spending the budget."""
        self.terms: Terms = ledger.terms()
        self.free: dict[str, int] = {}
        """Free balance of each participant seen, in token base units (lower-case keys)."""
        self.registered: set[str] = set()
        self._unregistered_until: dict[str, float] = {}
        self._registry_changes: int | None = None
        self._registered_ever: set[str] = set()
        self._registry_at = float("-inf")
        self._registry_lock = threading.Lock()
        self._registry_followed: int | None = None
        self.contracts: set[str] = set()
        """Participants the chain showed to be contract accounts (their code stays)."""
        self._codeless_until: dict[str, float] = {}

    def apply(self, facts: LedgerFacts) -> None:
        """Keep the terms of ``facts``; forget every kept registration when the ledger has
        seen a registry event since the last facts applied."""
        with self._lock:
            self.terms = facts.terms
            if self._registry_changes not in (None, facts.registry_changes):
                self.registered.clear()
                self._unregistered_until.clear()
            self._registry_changes = facts.registry_changes

    def read_terms(self) -> Terms:
        """Read the terms the next commit snapshots, and keep them."""
        self.terms = _call_ledger(self.ledger.terms)
        return self.terms

    def lock_base_units(self, side: int, quantity_wh: int, price_per_wh: int) -> int:
        """:func:`worst_case_lock_base_units` at the terms last read."""
        return worst_case_lock_base_units(
            side, quantity_wh, price_per_wh, self.terms.penalty_price_per_wh
        )

    def is_known(self, participant: str) -> bool:
        """Whether both the registration and the free balance of ``participant`` are cached."""
        return participant in self.registered and participant in self.free

    def vouch(self, participants: Iterable[str]) -> None:
        """Count ``participants`` as seen (:attr:`vouched`): orders of theirs were accepted."""
        with self._lock:
            self.vouched.update(participants)

    def look_up(self, participants: Iterable[str]) -> None:
        """Read the registration and free balance of ``participants`` from the chain.

        For a worker thread, so that the API's event loop does not wait for the chain on a
        participant's first order. A failure is not raised here: intake meets it again.
        Stops at the first participant the lookup budget has no read left for.
        """
        for participant in participants:
            try:
                self.check_registered(participant)
                self.free_balance(participant)
            except ChainBusy:
                return
            except (RequestError, ServiceUnavailable):
                continue

    def check_registered(self, participant: str) -> None:
        """Raise UnregisteredParticipant unless ``participant`` is registered on-chain.

        A "registered" answer is kept; a "not registered" one for
        :data:`UNREGISTERED_CACHE_SECONDS`, so a registration is seen soon after it lands.
        Reading the chain for a participant not :attr:`vouched` for spends a lookup of the
        budget; ChainBusy when there is none.
        """
        if participant in self.registered:
            return
        until = self._unregistered_until.get(participant)
        if until is not None and time.monotonic() < until:
            raise UnregisteredParticipant(f"{participant} is not a registered participant")
        if (
            participant not in self.vouched
            and not self.budget.try_take()
            and participant not in self._registry()
        ):
            raise self.budget.refusal(f"the registration of {participant}")
        if _call_ledger(self.ledger.is_registered, participant):
            with self._lock:
                self.registered.add(participant)
                self.vouched.add(participant)
                self._unregistered_until.pop(participant, None)
            return
        with self._lock:
            if len(self._unregistered_until) > 100_000:
                self._unregistered_until.clear()
            self._unregistered_until[participant] = time.monotonic() + UNREGISTERED_CACHE_SECONDS
        raise UnregisteredParticipant(
            f"{participant} is not a registered participant",
            hint="Ask the market's registrar to register the address and its meter key.",
        )

    def _registry(self) -> set[str]:
        """Every address ever registered, read again (an incremental scan of registry events)
        at most once per :data:`REGISTRY_REFRESH_SECONDS`, and only when the lookup budget is
        spent: a registered participant the service has not seen is read even then."""
        with self._registry_lock:  # one scan at a time; the others wait for its answer
            if time.monotonic() - self._registry_at >= REGISTRY_REFRESH_SECONDS:
                found = _call_ledger(self.ledger.participants)
                self._registered_ever = {p.lower() for p in found}
                self._registry_at = time.monotonic()
            return self._registered_ever

    def follow_registry(self) -> None:
        """Scan every address ever registered again (an incremental scan of the registry's
        events) when the ledger has seen a registry event since the last scan, so that
        :meth:`may_be_contract` knows a participant registered since without a read on the
        intake path. A chain that fails keeps the last scan (tried again on the next call)."""
        changes = self._registry_changes
        if changes is None or changes == self._registry_followed:
            return
        with self._registry_lock:
            try:
                found = self.ledger.participants()
            except LedgerCallFailed:
                return
            self._registered_ever = {p.lower() for p in found}
            self._registry_followed = changes

    def may_be_contract(self, participant: str) -> bool:
        """Whether an order of ``participant`` whose signature is not its own is worth asking
        the chain about (no read): ``participant`` is known to be registered (confirmed,
        vouched for, or in the last registry scan) and not known to be without code."""
        if participant in self.contracts:
            return True
        until = self._codeless_until.get(participant)
        if until is not None and time.monotonic() < until:
            return False
        return (
            participant in self.registered
            or participant in self.vouched
            or participant in self._registered_ever
        )

    def contract_accepts(self, participant: str, digest: bytes, signature: str) -> bool:
        """Whether contract account ``participant`` accepts ``signature`` over ``digest`` at
        the chain's head, as ``commitInterval`` would ask it (ERC-1271 within the market's
        gas cap): a lookup of the budget (ChainBusy when none is left), then the head and
        the free balance, the code (once per participant) and ``isValidSignature``. False,
        and remembered for a while, when ``participant`` has no code. ChainUnavailableProblem
        when the chain fails."""
        self.budget.take(f"the ERC-1271 signature of {participant}")
        block, balances = _call_ledger(self.ledger.balances_at_head, [participant])
        with self._lock:
            self.free.setdefault(participant, balances[participant].free)
        if participant not in self.contracts:
            if not _call_ledger(self.ledger.has_code, participant, block):
                with self._lock:
                    if len(self._codeless_until) > 100_000:
                        self._codeless_until.clear()
                    self._codeless_until[participant] = (
                        time.monotonic() + UNREGISTERED_CACHE_SECONDS
                    )
                return False
            with self._lock:
                self.contracts.add(participant)
        return _call_ledger(self.ledger.accepts_signature, participant, digest, signature, block)

    def free_balance(self, participant: str, refresh: bool = False) -> int:
        """The cached free balance of ``participant``, read from the chain when not cached
        or when ``refresh``."""
        if refresh or participant not in self.free:
            balance = _call_ledger(self.ledger.balances, participant)
            with self._lock:
                self.free[participant] = balance.free
        return self.free[participant]

    def check_covers(
        self, participant: str, lock_base_units: int, reserved_base_units: int
    ) -> None:
        """Raise InsufficientCollateral unless the free balance minus ``reserved_base_units``
        (what open orders could lock) covers ``lock_base_units``; a shortfall is checked
        again against a fresh read, which sees a recent deposit. Caller holds the lock."""
        free = self.free_balance(participant)
        if free - reserved_base_units < lock_base_units:
            free = self.free_balance(participant, refresh=True)
            if free - reserved_base_units < lock_base_units:
                raise InsufficientCollateral(
                    f"{participant}: this order can lock {lock_base_units} base units, but the "
                    f"free balance {free} minus {reserved_base_units} reserved by open orders "
                    f"leaves {max(free - reserved_base_units, 0)}",
                    hint="Deposit more tokens on the market contract, or cancel open orders.",
                )

    def read_standing(self, participant: str) -> tuple[ParticipantInfo, Balance]:
        """``participant``'s registration record (meter key, registered) and its balance, read
        from the chain now; the caches take the answer."""
        record = _call_ledger(self.ledger.participant, participant)
        balance = _call_ledger(self.ledger.balances, participant)
        with self._lock:
            self.free[participant] = balance.free
            if record.registered:
                self.registered.add(participant)
                self.vouched.add(participant)
                self._unregistered_until.pop(participant, None)
        return record, balance

    def forget_unregistered(self, participant: str) -> None:
        """Drop a cached "not registered" answer for ``participant`` (it was just registered),
        so its next order reads the chain again, outside the lookup budget (the registrar
        vouches for it)."""
        with self._lock:
            self._unregistered_until.pop(participant, None)
            self.vouched.add(participant)

    def uncovered(self, needs_base_units: dict[str, int]) -> tuple[dict[str, int], dict[str, str]]:
        """Re-read the free balances of the participants of ``needs_base_units`` (what each
        one's orders could lock) at one moment; return them, and the participants who can no
        longer cover their needs or are no longer registered (a deregistered party would make
        the whole commit revert), each with the reason (``unregistered`` or
        ``insufficient_collateral: free F < needed N``). The caches are not written: see
        :meth:`remember`."""
        read = _call_ledger(self.ledger.balances_of, list(needs_base_units))
        fresh = {p: read[p].free for p in needs_base_units}
        short = {
            p: f"insufficient_collateral: free {fresh[p]} < needed {need}"
            for p, need in needs_base_units.items()
            if fresh[p] < need
        }
        for p in needs_base_units:
            if not _call_ledger(self.ledger.is_registered, p):
                short[p] = "unregistered"
        return fresh, short

    def remember(self, fresh: dict[str, int], unregistered: set[str]) -> None:
        """Keep the ``fresh`` free balances; forget that ``unregistered`` were registered.
        Caller holds the lock."""
        self.free.update(fresh)
        self.registered -= unregistered

    def spend(self, trades: Sequence[Trade], penalty_price_per_wh: int) -> None:
        """Lower the cached free balances by what committing ``trades`` locked: the buyer's
        ``quantity * price``, the seller's ``quantity * penalty price``."""
        with self._lock:
            for trade in trades:
                buyer, seller = trade.buyer.lower(), trade.seller.lower()
                if buyer in self.free:
                    self.free[buyer] -= trade.quantity_wh * trade.price_per_wh
                if seller in self.free:
                    self.free[seller] -= trade.quantity_wh * penalty_price_per_wh


__all__ = [
    "UNREGISTERED_CACHE_SECONDS",
    "Collateral",
    "worst_case_lock_base_units",
]
