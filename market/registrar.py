"""Registration requests: a participant asks, signed, to be registered with its meter key.

``POST /registrations`` carries a ``Registration(participant, meter, nonce, expiry)`` message
of :mod:`ledger.eip712` signed by the participant's own key. :class:`Registrar` checks it,
in this order: the fields (:func:`market.signed_messages.parse_registration`); the meter (see
below); the signature recovers to ``participant`` (a participant registers only itself:
another signer is ``signer_mismatch``); then, one request at a time:

- the same signed request sent again (same EIP-712 digest) is answered as it stands
  (idempotent: ``registered`` again with its transaction, ``pending``, or the refusal), and an
  approved request whose chain write failed is retried then;
- ``expiry`` has not passed (``registration_expired``);
- the participant has no other request that is pending or being registered
  (``registration_pending``) or registered (``already_registered``);
- the nonce is unused (``nonce_used``; the participant's nonces are shared with its orders
  and cancels);
- the participant is not registered on-chain already (``already_registered``).

The request is then decided by the configured :class:`~market.registrar_policy.RegistrarPolicy`
and stored durably with its decision (SQLite, ``synchronous=FULL``) before anything is
answered or sent: approved, it is sent as ``registerParticipant(participant, meter)`` from the
key holding ``REGISTRAR_ROLE`` and answered ``registered`` with the transaction hash; held,
``pending``; refused, ``registration_refused`` with the reason (a later request, with a new
nonce, may follow a refusal).

The meter key
    Any non-zero address other than the market's two contracts (a contract has no key to
    sign readings with) and the operator's key (the key that commits trades must not also
    attest the deliveries that settle them). ``invalid_meter`` otherwise. The meter may be
    the participant's own key (development accounts are their own meters).

Hostile input
    At most one request per participant is pending or registered, so a flood of requests
    for one participant, with any nonces, costs at most one chain write; the same approved
    request sent again while its chain write keeps failing retries at most once every
    :data:`RETRY_SECONDS`. Every refusal before the decision stores nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from ledger import eip712 as signing
from ledger.addresses import checksum_address
from market.clock import Clock
from market.collateral import Collateral
from market.http.errors import (
    AlreadyRegistered,
    InvalidMeter,
    NonceUsed,
    RegistrationExpired,
    RegistrationNotFound,
    RegistrationPending,
    RegistrationRefused,
    ServiceUnavailable,
    SignerMismatch,
)
from market.ledger_port import Ledger, LedgerCallFailed, LedgerInfo
from market.registrar_policy import Decision, RegistrarPolicy, RegistrationRequest
from market.signed_messages import SignedMessage, parse_registration
from market.store import (
    REGISTRATION_PENDING,
    REGISTRATION_REFUSED,
    REGISTRATION_REGISTERED,
    REGISTRATION_REGISTERING,
    OrderStore,
    StoredRegistration,
    StoreError,
)

T = TypeVar("T")

RETRY_SECONDS = 10.0
"""Least time (monotonic seconds) between two chain writes for one participant's request."""


def _chain(what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except LedgerCallFailed as err:
        raise ServiceUnavailable(f"the chain failed ({what}): {err.message}") from None


def _store(what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except StoreError as err:
        raise ServiceUnavailable(f"the order store failed ({what}): {err.message}") from None


class Registrar:
    """Checks, decides, stores and carries out registration requests (see the module).

    ``nonces`` and ``market_lock`` are the order intake's used nonces and the market's lock:
    a registration uses one of its participant's nonces. Requests are handled one at a time
    (they are rare, and a chain write happens inside), under the registrar's own lock, so
    order intake never waits for them.
    """

    def __init__(
        self,
        store: OrderStore,
        ledger: Ledger,
        clock: Clock,
        domain: signing.Domain,
        info: LedgerInfo,
        policy: RegistrarPolicy,
        collateral: Collateral,
        nonces: set[tuple[str, int]],
        market_lock: threading.RLock,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.clock = clock
        self.policy = policy
        self.collateral = collateral
        self._separator = domain.separator
        self._not_meters = {
            "0x" + "00" * 20: "the zero address",
            info.market_address.lower(): "the EnergyMarket contract",
            info.token_address.lower(): "the settlement token contract",
            info.operator.lower(): "the market operator's key",
        }
        self._nonces = nonces
        self._market_lock = market_lock
        self._lock = threading.Lock()
        self._last_attempt: dict[str, float] = {}

    def submit(self, signed: SignedMessage) -> StoredRegistration:
        """Check a signed ``Registration`` and carry it out (see the module); return the
        stored request, ``registered`` or ``pending``. Raises the refusal otherwise."""
        request = parse_registration(signed.message)
        digest = request.digest(self._separator)
        signer, signature = signing.recover_canonical(digest, signed.signature)
        participant = request.participant
        if signer != participant:
            raise SignerMismatch(
                f"the signature is by {signer}, not by participant {participant}: a "
                "participant registers only itself",
                hint="Sign with the participant's key, over the domain GET /market publishes.",
            )
        what = self._not_meters.get(request.meter)
        if what is not None:
            raise InvalidMeter(
                f"meter: {request.meter} is {what}, which cannot be a meter key",
                hint="Name the key your meter signs readings with.",
            )
        digest_hex = "0x" + digest.hex()
        now = self.clock.now()
        with self._lock:
            existing = _store("reading", lambda: self.store.get_registration(participant))
            if existing is not None and existing.digest == digest_hex:
                return self._answer_again(existing)
            if request.expiry <= now:
                raise RegistrationExpired(f"expiry {request.expiry} is not after now ({now})")
            if existing is not None and existing.status == REGISTRATION_REGISTERED:
                raise AlreadyRegistered(
                    f"{participant} is registered (meter {existing.meter})",
                    extra={"registration": registration_json(existing)},
                )
            if existing is not None and existing.status != REGISTRATION_REFUSED:
                raise RegistrationPending(
                    f"{participant} has a registration request that is {existing.status}",
                    extra={"registration": registration_json(existing)},
                )
            with self._market_lock:
                if (participant, request.nonce) in self._nonces:
                    raise NonceUsed(f"nonce {request.nonce} of {participant} was already used")
            on_chain = _chain(
                "reading the registration", lambda: self.ledger.participant(participant)
            )
            if on_chain.registered:
                raise AlreadyRegistered(
                    f"{participant} is registered on-chain already (meter "
                    f"{str(on_chain.meter).lower()})"
                )
            decision = self.policy.decide(
                RegistrationRequest(participant, request.meter, request.nonce, request.expiry, now)
            )
            record = StoredRegistration(
                participant=participant,
                meter=request.meter,
                nonce=request.nonce,
                expiry=request.expiry,
                digest=digest_hex,
                signature=signature,
                status=_STATUS[decision.outcome],
                reason=decision.reason or None,
                tx_hash=None,
                received_at=now,
                decided_at=None if decision.outcome == "hold" else now,
            )
            _store("storing the request", lambda: self.store.save_registration(record))
            with self._market_lock:
                self._nonces.add((participant, request.nonce))
            return self._carry_out(record)

    def decide(self, participant: str, decision: Decision) -> StoredRegistration:
        """The registrar's later decision on a held (``pending``) request of ``participant``:
        approve (registered on-chain now), refuse with a reason, or keep holding it."""
        key = participant.lower()
        with self._lock:
            record = self._get(key)
            if record.status != REGISTRATION_PENDING:
                raise RegistrationPending(f"the request of {key} is {record.status}, not pending")
            if decision.outcome == "hold":
                return record
            status = _STATUS[decision.outcome]
            now = self.clock.now()
            _store(
                "recording the decision",
                lambda: self.store.update_registration(
                    key, status, reason=decision.reason or None, decided_at=now
                ),
            )
            updated = replace(record, status=status, reason=decision.reason or None, decided_at=now)
            if status == REGISTRATION_REFUSED:
                return updated
            return self._carry_out(updated)

    def status(self, participant: str) -> StoredRegistration:
        """``participant``'s latest request; RegistrationNotFound when it has none. A request
        still pending or being registered whose participant the chain shows registered (the
        registrar acted directly, or a chain write's answer was lost) is recorded so."""
        key = participant.lower()
        with self._lock:
            record = self._get(key)
            if record.status in (REGISTRATION_PENDING, REGISTRATION_REGISTERING):
                on_chain = _chain("reading the registration", lambda: self.ledger.participant(key))
                if on_chain.registered:
                    return self._registered(record, record.tx_hash)
            return record

    # -- inside the lock --------------------------------------------------------------------

    def _get(self, participant: str) -> StoredRegistration:
        record = _store("reading", lambda: self.store.get_registration(participant))
        if record is None:
            raise RegistrationNotFound(f"{participant} has no registration request")
        return record

    def _answer_again(self, record: StoredRegistration) -> StoredRegistration:
        """The answer to a request sent again: as it stands, a refusal raised again, and an
        approved request not yet on-chain sent (again)."""
        if record.status == REGISTRATION_REFUSED:
            raise _refusal(record)
        return self._carry_out(record)

    def _carry_out(self, record: StoredRegistration) -> StoredRegistration:
        """Raise the refusal of a refused request; register an approved one on-chain."""
        if record.status == REGISTRATION_REFUSED:
            raise _refusal(record)
        if record.status != REGISTRATION_REGISTERING:
            return record
        participant = record.participant
        on_chain = _chain("reading the registration", lambda: self.ledger.participant(participant))
        if on_chain.registered:
            return self._registered(record, record.tx_hash)
        last = self._last_attempt.get(participant)
        if last is not None and time.monotonic() - last < RETRY_SECONDS:
            raise ServiceUnavailable(
                f"the registration of {participant} is being retried; send it again in "
                f"{RETRY_SECONDS:.0f} seconds"
            )
        self._last_attempt[participant] = time.monotonic()
        tx_hash = _chain(
            "registering the participant",
            lambda: self.ledger.register_participant(participant, record.meter),
        )
        self._last_attempt.pop(participant, None)
        return self._registered(record, tx_hash)

    def _registered(self, record: StoredRegistration, tx_hash: str | None) -> StoredRegistration:
        decided = record.decided_at if record.decided_at is not None else self.clock.now()
        _store(
            "recording the registration",
            lambda: self.store.update_registration(
                record.participant,
                REGISTRATION_REGISTERED,
                reason=record.reason,
                tx_hash=tx_hash,
                decided_at=decided,
            ),
        )
        self.collateral.forget_unregistered(record.participant)
        return replace(record, status=REGISTRATION_REGISTERED, tx_hash=tx_hash, decided_at=decided)


_STATUS = {
    "approve": REGISTRATION_REGISTERING,
    "hold": REGISTRATION_PENDING,
    "refuse": REGISTRATION_REFUSED,
}


def _refusal(record: StoredRegistration) -> RegistrationRefused:
    reason = record.reason or "refused by the registrar"
    return RegistrationRefused(
        f"the registrar refused the registration of {record.participant}: {reason}",
        extra={"reason": reason},
    )


def registration_json(record: StoredRegistration) -> dict[str, object]:
    """The JSON view of a stored request (``GET /registrations/{participant}``)."""
    return {
        "participant": checksum_address(record.participant),
        "meter": checksum_address(record.meter),
        "status": record.status,
        "transactionHash": record.tx_hash,
        "reason": record.reason,
        "nonce": str(record.nonce),
        "expiry": str(record.expiry),
        "receivedAt": record.received_at,
        "decidedAt": record.decided_at,
    }


__all__ = ["RETRY_SECONDS", "Registrar", "registration_json"]
