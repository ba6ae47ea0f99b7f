"""Who may sign for whom, and when: each participant's registration and meter key over time,
and the signer of an on-chain meter reading.

The ``signatures`` check asks whether an order's participant was registered when its interval
was committed; the ``settlement`` check whether a reading was signed by the meter key
registered when its interval was committed (the contract's rule: a later rotation or
deregistration does not change which key counts). Both look the answer up in
:class:`MeterHistory`, built once from the registration events (``ParticipantRegistered``,
``MeterRotated``, ``ParticipantDeregistered``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

from audit.checks.violations import address_key
from ledger import eip712 as signing
from ledger.events import (
    LogPosition,
    MeterEvent,
    MeterRotated,
    ParticipantRegistered,
    ReadingSubmitted,
)
from ledger.records import Reading


class MeterHistory:
    """Each participant's registrations, meter rotations and deregistrations, in chain order.

    Look-ups bisect one participant's changes, so the audit stays linear in the number of
    readings and orders however long the market has run. A deregistration keeps the meter key
    the participant had; a rotation counts as registered.
    """

    def __init__(self, changes: Iterable[MeterEvent]) -> None:
        self._states: dict[str, list[tuple[str, bool]]] = {}
        self._positions: dict[str, list[LogPosition]] = {}
        self.indices: dict[str, int] = {}
        """Participant index of every address ever registered (fixed at registration)."""
        for change in sorted(changes, key=lambda c: c.position):
            who = change.participant
            states = self._states.setdefault(who, [])
            if isinstance(change, ParticipantRegistered):
                states.append((change.meter, True))
                self.indices[who] = change.participant_index
            elif isinstance(change, MeterRotated):
                states.append((change.new_meter, True))
            else:
                states.append((states[-1][0] if states else "", False))
            self._positions.setdefault(who, []).append(change.position)

    def _last_before(self, participant: str, at: LogPosition) -> tuple[str, bool] | None:
        """(meter, registered) of ``participant`` (any address form) just before ``at``."""
        try:
            who = address_key(participant)
        except ValueError:
            return None
        positions = self._positions.get(who)
        if not positions:
            return None
        i = bisect.bisect_left(positions, at)
        return self._states[who][i - 1] if i else None

    def meter_at(self, participant: str, at: LogPosition) -> str | None:
        """The meter key registered for ``participant`` just before ``at`` (None if never)."""
        state = self._last_before(participant, at)
        return None if state is None else state[0]

    def registered_at(self, participant: str, at: LogPosition) -> bool:
        """Whether ``participant`` was registered just before ``at``."""
        state = self._last_before(participant, at)
        return state is not None and state[1]


def reading_signer(separator: bytes, reading: ReadingSubmitted) -> str:
    """Checksum address that signed ``reading`` (``r``, ``vs`` as EIP-2098); raise if none.

    As OpenZeppelin's ``ECDSA.tryRecover``: ``v = 27 + (vs >> 255)``, ``s`` the low 255 bits,
    and a high ``s`` is refused (:func:`ledger.eip712.recover` checks that).
    """
    assert reading.signature is not None
    r, vs = reading.signature
    digest = signing.reading_digest(separator, reading)
    return address_key(signing.recover(digest, signing.expand_signature(r, vs)))


def published_reading_signer(separator: bytes, reading: Reading, signature: Any) -> str:
    """Checksum address that signed ``reading`` with ``signature`` as published (65 bytes
    ``r ‖ s ‖ v`` or EIP-2098 64 bytes, hex); raise BadSignature if none (or ``s`` is high)."""
    digest = signing.reading_digest(separator, reading)
    return address_key(signing.recover(digest, signature))


__all__ = [
    "MeterHistory",
    "published_reading_signer",
    "reading_signer",
]
