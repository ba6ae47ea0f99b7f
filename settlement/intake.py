"""Reading intake: a meter-signed reading is checked, then stored durably, before it is
acknowledged (``POST /meter-readings`` and ``POST /meter-readings:batch``, see
:mod:`settlement.api`).

A reading is the EIP-712 ``MeterReading(participant, interval, importedWh, exportedWh)`` plus
a 65-byte signature. It is accepted when, in this order: the fields are uint64 values and an
address; the signature is well formed and recovers a key; neither energy exceeds the meter's
physical maximum (:attr:`~settlement.config.SettlementConfig.max_reading_wh`, by default
10 MWh per interval, or a per-meter limit); the participant is registered and the recovered
key is its meter key (read from the chain and cached; re-read on a mismatch, at most once
per :data:`METER_REFRESH_SECONDS` per participant, so a rotated meter is seen at once); the
interval's delivery has ended, it was committed, it is not settled, and its reading deadline
(on-chain time) is more than the reading margin away
(:attr:`~settlement.config.SettlementConfig.reading_margin_seconds`: a reading accepted later
could miss the deadline, and the seller would pay the penalty for it); and no reading of the
participant for the interval is stored here or on-chain. It is then written to SQLite
(``synchronous=FULL``) and only then acknowledged (``202``, status ``queued``).

Nothing unsigned reaches the chain
    The checks up to the physical maximum need no chain. A request with a reading that fails
    one of them is refused at once, listing those readings, before anything is read from
    the chain for any of its readings: a batch of junk signatures costs its signature
    recoveries and nothing more. Only then is each participant's meter key read, once per
    participant (cached), and for a participant intake has never seen registered only
    within a budget of such reads per second (:mod:`market.lookup_budget`). When a flood of
    readings naming unknown addresses has spent it, a participant that is registered (in the
    registry's events, scanned at most once a second) is still read; any other address is
    answered ``chain_busy`` (503, ``Retry-After``). A registered meter is never held up.

A batch gets the same checks for every reading (one code path, the single reading is its
one-item case), but reads the chain once per request and interval instead of once per
reading, and stores all of its readings in one transaction or none. Nothing is stored and no
gas is spent for a refused reading.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chain.errors import ChainUnavailable
from chain.reader import MeterInfo
from ledger import eip712 as signing
from ledger.addresses import checksum_address
from ledger.errors import RequestError
from ledger.records import IntervalInfo, Reading
from market.http.errors import (
    BatchRejected,
    BatchTooLarge,
    ChainUnavailableProblem,
    InvalidRequest,
    OutOfBounds,
    ServiceUnavailable,
)
from market.http.wire import MAX_DIGITS
from market.lookup_budget import LookupBudget
from market.signed_messages import whole_number
from settlement.chain_port import SettlementChain
from settlement.config import SettlementConfig
from settlement.errors import (
    DuplicateReading,
    IntervalSettled,
    MeterMismatch,
    ReadingDeadlinePassed,
    ReadingDeadlineTooClose,
    ReadingOutOfBounds,
    ReadingTooEarly,
    UnknownInterval,
    UnregisteredMeter,
)
from settlement.store import (
    ONCHAIN,
    DuplicateKey,
    ReadingStore,
    ReadingStoreError,
    StoredReading,
)

UINT64_MAX = 2**64 - 1
UNREGISTERED_CACHE_SECONDS = 2.0
"""How long an address found unregistered is answered from memory (a burst of readings of
an unregistered participant reads the chain once, a registration is seen within seconds)."""
REGISTRY_REFRESH_SECONDS = 1.0
"""Least time between two scans of the registry (every address ever registered), made only
when the lookup budget is spent: one read a second however large the flood."""
METER_REFRESH_SECONDS = 2.0
"""Least time between two reads of one registered participant's meter key on a signature
that does not match it: a rotation is seen within that, and readings signed by another key
for a registered participant cannot make intake read the chain more often."""

_READING_FIELDS = ("participant", "interval", "importedWh", "exportedWh")


def _uint64(value: Any, name: str) -> int:
    number = whole_number(value)
    if (
        isinstance(number, str)
        and 0 < len(number) <= MAX_DIGITS
        and number.isascii()
        and number.isdigit()
    ):
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidRequest(f"reading.{name}: expected an unsigned integer, got {value!r}")
    if number < 0:
        raise InvalidRequest(f"reading.{name}: {number} is negative")
    if number > UINT64_MAX:
        raise OutOfBounds(f"reading.{name}: {number} does not fit uint64")
    return number


def parse_reading(message: Mapping[str, Any]) -> Reading:
    """Check a ``MeterReading`` message's fields; raise InvalidRequest or OutOfBounds.

    The reading's participant is lower-case ``0x`` hex."""
    if not isinstance(message, Mapping):
        raise InvalidRequest("reading: expected a JSON object")
    missing = [f for f in _READING_FIELDS if f not in message]
    extra = [k for k in message if k not in _READING_FIELDS]
    if missing or extra:
        raise InvalidRequest(
            f"reading: missing fields {missing}, unknown fields {extra}; "
            f"expected exactly {list(_READING_FIELDS)}"
        )
    participant = message["participant"]
    if (
        not isinstance(participant, str)
        or len(participant) != 42
        or participant[:2] not in ("0x", "0X")
        or not all(c in "0123456789abcdefABCDEF" for c in participant[2:])
    ):
        raise InvalidRequest("reading.participant: expected a 0x-prefixed 20-byte hex address")
    return Reading(
        participant="0x" + participant[2:].lower(),
        interval=_uint64(message["interval"], "interval"),
        imported_wh=_uint64(message["importedWh"], "importedWh"),
        exported_wh=_uint64(message["exportedWh"], "exportedWh"),
    )


def normalized_signature(signature: Any) -> str:
    """A checked 65-byte signature as lower-case ``0x`` hex with ``v`` in {27, 28}."""
    raw = signing.parse_signature(signature)
    return "0x" + raw[:64].hex() + format(raw[64] + 27, "02x")


def reading_json(r: StoredReading) -> dict[str, Any]:
    """The JSON view of a stored reading (``POST /meter-readings`` answers with it)."""
    return {
        "participant": checksum_address(r.participant),
        "interval": r.interval,
        "importedWh": r.imported_wh,
        "exportedWh": r.exported_wh,
        "meter": checksum_address(r.meter),
        "status": r.status,
        "reason": r.reason,
        "receivedAt": r.received_at,
        "txHash": r.tx_hash,
        "blockNumber": r.block_number,
        "signature": r.signature,
    }


def published_reading_json(r: StoredReading) -> dict[str, Any]:
    """A stored reading as ``GET /intervals/{t}/readings`` publishes it: :func:`reading_json`
    and whether it is the one on-chain (``onChain``)."""
    return {**reading_json(r), "onChain": r.status == ONCHAIN}


@dataclass(frozen=True, slots=True)
class _Signed:
    """A reading of a request (at ``index``) whose fields, signature and bounds passed, with
    the key its signature recovers and the signature normalized; its meter not checked yet."""

    index: int
    reading: Reading
    signer: str
    signature: str


@dataclass(frozen=True, slots=True)
class _Authentic:
    """A reading of a request (at ``index``) whose fields, signature, meter key and bounds
    passed; ``signature`` normalized."""

    index: int
    reading: Reading
    meter: MeterInfo
    signature: str


def _refusal(count: int, errors: Mapping[int, RequestError]) -> RequestError:
    """What a request of ``count`` readings with these refusals (by index) raises: the error
    itself for one reading; for more, :class:`BatchRejected` listing each (``readings[i]``),
    with the status of the first."""
    ordered = sorted(errors.items())
    if count == 1:
        return ordered[0][1]
    first_index, first = ordered[0]
    return BatchRejected(
        f"{len(ordered)} of {count} readings refused; none was stored "
        f"(first: readings[{first_index}]: {first.message})",
        extra={
            "errors": [
                {
                    "index": i,
                    "code": e.code,
                    "status": e.status,
                    "detail": e.message,
                    **e.extra,
                }
                for i, e in ordered
            ]
        },
    ).with_status(first.status)


class ReadingIntake:
    """Checks signed readings against the chain and stores the good ones (see the module).

    ``domain_separator``: the market's EIP-712 domain separator, which readings are signed
    over. ``committed``: ``intervalInfo`` of committed intervals, shared with the loop (a
    committed interval's deadline never changes). Thread-safe: the API's threads call it while
    the loop ticks.
    """

    def __init__(
        self,
        chain: SettlementChain,
        store: ReadingStore,
        config: SettlementConfig,
        domain_separator: bytes,
        committed: dict[int, IntervalInfo],
        budget: LookupBudget | None = None,
    ) -> None:
        self.chain = chain
        self.store = store
        self.config = config
        self._separator = domain_separator
        self._committed = committed
        self._meters: dict[str, MeterInfo] = {}
        self._unregistered_until: dict[str, float] = {}
        self._read_at: dict[str, float] = {}
        self._vouched: set[str] = set()
        self._registered_ever: set[str] = set()
        self._registry_at = float("-inf")
        self._registry_lock = threading.Lock()
        self.budget = budget or LookupBudget(config.lookups_per_second, config.lookup_burst)
        """Chain reads of participants never seen registered (:mod:`market.lookup_budget`)."""

    def accept(self, items: Sequence[tuple[Mapping[str, Any], Any]]) -> list[StoredReading]:
        """Check signed readings ``(message, signature)`` and store them durably, all or none.

        Each reading gets every check (see the module), in the same order, but the chain is
        read once per request (time and latest block) and once per distinct interval
        (window, ``intervalInfo``, readings on-chain), and all are written in one store
        transaction. A reading repeating an earlier one's participant and interval is a
        duplicate. Returns the stored readings in request order.

        Refusals: one reading raises its own error. Of more, :class:`BatchRejected` (status
        of the first error) lists every bad reading by ``index``; :class:`BatchTooLarge`
        when there are more than ``max_intake_readings``. Nothing is stored then.
        ``ServiceUnavailable`` (chain or store failed) is raised as it is.
        """
        if len(items) > self.config.max_intake_readings:
            raise BatchTooLarge(
                f"{len(items)} readings in one batch; at most {self.config.max_intake_readings}"
            )
        if not items:
            raise InvalidRequest("a batch needs at least one reading")
        errors: dict[int, RequestError] = {}
        signed: list[_Signed] = []
        for index, (message, signature) in enumerate(items):
            try:
                signed.append(self._check_signed(index, message, signature))
            except RequestError as err:
                errors[index] = err
        if errors:  # refused before the chain is read for any of the readings
            raise _refusal(len(items), errors)
        by_interval: dict[int, list[_Authentic]] = {}
        for item in signed:
            try:
                authentic = self._check_meter(item)
            except RequestError as err:
                errors[item.index] = err
                continue
            by_interval.setdefault(authentic.reading.interval, []).append(authentic)
        accepted: list[StoredReading | None] = [None] * len(items)
        intervals: dict[int, tuple[int, int]] = {}
        now = latest = 0
        if by_interval:
            now, latest, _ = read_chain("reading chain time", self.chain.chain_time)
        for t, group in by_interval.items():
            try:
                info = self._open_interval(t, now)
            except RequestError as err:
                errors.update((item.index, err) for item in group)
                continue
            intervals[t] = (info.trade_count, info.deadline)
            fresh = self._fresh_readings(t, group, latest, errors)
            for good in fresh:
                accepted[good.index] = StoredReading(
                    interval=t,
                    participant=good.reading.participant,
                    imported_wh=good.reading.imported_wh,
                    exported_wh=good.reading.exported_wh,
                    signature=good.signature,
                    meter=good.meter.meter,
                    participant_index=good.meter.participant_index,
                    received_at=now,
                )
        if errors:
            raise _refusal(len(items), errors)
        stored = [r for r in accepted if r is not None]
        try:
            self.store.insert_readings(stored, intervals, now)
        except DuplicateKey as err:
            duplicate = DuplicateReading(
                f"a reading of {err.participant} for interval {err.interval} was already accepted"
            )
            index = next(
                (
                    k
                    for k, r in enumerate(stored)
                    if (r.interval, r.participant) == (err.interval, err.participant)
                ),
                0,
            )
            raise _refusal(len(items), {index: duplicate}) from None
        except ReadingStoreError as err:
            raise ServiceUnavailable(f"the reading store failed: {err.message}") from None
        return stored

    def _check_signed(self, index: int, message: Mapping[str, Any], signature: Any) -> _Signed:
        """The checks of one reading that need no chain: fields, signature (it recovers a
        key), the meter's physical maximum."""
        reading = parse_reading(message)
        signer = signing.recover(signing.reading_digest(self._separator, reading), signature)
        limit = self.config.limit_for(reading.participant)
        for name, value in (
            ("importedWh", reading.imported_wh),
            ("exportedWh", reading.exported_wh),
        ):
            if value > limit:
                raise ReadingOutOfBounds(
                    f"reading.{name}: {value} Wh is above this meter's physical maximum of "
                    f"{limit} Wh per interval"
                )
        return _Signed(index, reading, signer, normalized_signature(signature))

    def _check_meter(self, item: _Signed) -> _Authentic:
        """The recovered key of ``item`` against its participant's registered meter key
        (from the chain, once per participant, cached)."""
        reading, signer = item.reading, item.signer
        meter = self.meter(reading.participant)
        if meter.registered and signer != meter.meter:
            meter = self.meter(reading.participant, refresh=True)
        if not meter.registered:
            raise UnregisteredMeter(
                f"{reading.participant} is not a registered participant, so no meter key "
                "signs for it",
                hint="Ask the market's registrar to register the participant and its meter key.",
            )
        if signer != meter.meter:
            raise MeterMismatch(
                f"the reading is signed by {signer}, not by {reading.participant}'s meter key "
                f"{meter.meter}",
                hint="Sign with the meter key, over the market's EIP-712 domain (GET /market).",
            )
        return _Authentic(item.index, reading, meter, item.signature)

    def _open_interval(self, t: int, now: int) -> IntervalInfo:
        """Interval ``t``'s info if it takes readings at ``now``; else the refusal."""
        _, end = read_chain("reading the interval window", lambda: self.chain.window(t))
        if now < end:
            raise ReadingTooEarly(
                f"interval {t}: delivery ends at {end}; it is {now} on-chain",
                hint="Send the reading after the interval has ended.",
            )
        info = self._interval_info(t)
        if info.status == "none":
            raise UnknownInterval(
                f"interval {t} was never committed: it has no contracts to settle"
            )
        if info.status == "settled":
            raise IntervalSettled(f"interval {t} is already settled")
        margin = self.config.reading_margin_seconds
        until = info.deadline - margin
        if now >= until:
            fresh = read_chain("reading the interval", lambda: self.chain.interval(t))
            if fresh.status == "settled":
                raise IntervalSettled(f"interval {t} is already settled")
            when = {"deadline": info.deadline, "marginSeconds": margin, "acceptedUntil": until}
            if now >= info.deadline:
                raise ReadingDeadlinePassed(
                    f"interval {t}: readings were accepted until {info.deadline}; it is {now} "
                    "on-chain",
                    extra=when,
                )
            raise ReadingDeadlineTooClose(
                f"interval {t}: its reading deadline is {info.deadline}, {info.deadline - now} s "
                f"from now ({now} on-chain); a reading accepted less than {margin} s before "
                f"it (from {until} on) could not be relied on to be mined in time, and a "
                "missed reading costs the seller its penalty",
                hint="Send readings soon after the interval ends; the window is "
                f"{margin} s shorter than the on-chain deadline.",
                extra=when,
            )
        return info

    def _fresh_readings(
        self, t: int, group: Sequence[_Authentic], latest: int, errors: dict[int, RequestError]
    ) -> list[_Authentic]:
        """The readings of ``group`` (all for interval ``t``) that no reading precedes: none
        stored here, none on-chain as of block ``latest``, none earlier in the request. The
        others' refusals go into ``errors``."""
        participants = [item.reading.participant for item in group]
        stored = read_store("reading the store", lambda: self.store.readings_of(t, participants))
        onchain: dict[str, Any] | None = None
        first: dict[str, int] = {}
        fresh = []
        for item in group:
            participant = item.reading.participant
            existing = stored.get(participant)
            if existing is not None:
                errors[item.index] = DuplicateReading(
                    f"a reading of {participant} for interval {t} was already accepted "
                    f"(status {existing.status})",
                    extra={"existing": reading_json(existing)},
                )
                continue
            if onchain is None:
                onchain = read_chain(
                    "reading the readings on-chain",
                    lambda: self.chain.submitted_readings(t, latest),
                )
            event = onchain.get(participant)
            if event is not None:
                errors[item.index] = DuplicateReading(
                    f"a reading of {participant} for interval {t} is already on-chain "
                    f"(exported {event.exported_wh} Wh)"
                )
                continue
            if participant in first:
                errors[item.index] = DuplicateReading(
                    f"readings[{first[participant]}] is already a reading of {participant} "
                    f"for interval {t}"
                )
                continue
            first[participant] = item.index
            fresh.append(item)
        return fresh

    def meter(self, participant: str, refresh: bool = False) -> MeterInfo:
        """``participant``'s registration, from memory unless ``refresh`` (a registered one is
        kept until a reading's signer disagrees, and then read again at most once per
        :data:`METER_REFRESH_SECONDS`; an unregistered one for
        :data:`UNREGISTERED_CACHE_SECONDS`). Reading a participant never seen registered
        spends a lookup of the budget (ChainBusy when none is left); ServiceUnavailable if
        the chain is down."""
        key = participant.lower()
        cached = self._meters.get(key)
        if cached is not None:
            if not refresh or time.monotonic() - self._read_at.get(key, 0.0) < (
                METER_REFRESH_SECONDS
            ):
                return cached
        else:
            until = self._unregistered_until.get(key)
            if until is not None and time.monotonic() < until:
                return MeterInfo("0x" + "00" * 20, 0, False)
            if (
                key not in self._vouched
                and not self.budget.try_take()
                and key not in self._registry()
            ):
                raise self.budget.refusal(f"the meter key of {key}")
        info: MeterInfo = read_chain(
            f"reading the registration of {key}", lambda: self.chain.participant(key)
        )
        if info.registered:
            self._meters[key] = info
            self._vouched.add(key)
            self._read_at[key] = time.monotonic()
            self._unregistered_until.pop(key, None)
        else:
            self._meters.pop(key, None)
            self._read_at.pop(key, None)
            if len(self._unregistered_until) > 100_000:
                self._unregistered_until.clear()
            self._unregistered_until[key] = time.monotonic() + UNREGISTERED_CACHE_SECONDS
        return info

    def _registry(self) -> set[str]:
        """Every address ever registered, read again (an incremental scan of registry events)
        at most once per :data:`REGISTRY_REFRESH_SECONDS`: a registered participant intake has
        not seen yet gets its meter read when the lookup budget is spent by others."""
        with self._registry_lock:  # one scan at a time; the others wait for its answer
            if time.monotonic() - self._registry_at >= REGISTRY_REFRESH_SECONDS:
                found = read_chain("reading the registered participants", self.chain.participants)
                self._registered_ever = {p.lower() for p in found}
                self._registry_at = time.monotonic()
            return self._registered_ever

    def known_meter(self, participant: str) -> MeterInfo | None:
        """``participant``'s registration if intake has read it, else None (no read)."""
        return self._meters.get(participant.lower())

    def _interval_info(self, t: int) -> IntervalInfo:
        """``intervalInfo(t)``, cached once committed (its deadline never changes)."""
        cached = self._committed.get(t)
        if cached is not None:
            return cached
        info: IntervalInfo = read_chain(f"reading interval {t}", lambda: self.chain.interval(t))
        if info.status == "committed":
            self._committed[t] = info
        return info


def read_chain(what: str, call: Callable[[], Any]) -> Any:
    """``call()`` (``what`` it reads) for a client's request: a chain that does not answer
    becomes :class:`ServiceUnavailable` (``503``, retry later)."""
    try:
        return call()
    except ChainUnavailable as err:
        raise ChainUnavailableProblem(f"the chain is unavailable ({what}): {err.message}") from None


def read_store(what: str, call: Callable[[], Any]) -> Any:
    """``call()`` (``what`` it does) for a client's request: a failing reading store becomes
    :class:`ServiceUnavailable` (``503``, retry later)."""
    try:
        return call()
    except ReadingStoreError as err:
        raise ServiceUnavailable(f"the reading store failed while {what}: {err.message}") from None


__all__ = [
    "ReadingIntake",
    "normalized_signature",
    "parse_reading",
    "published_reading_json",
    "read_chain",
    "read_store",
    "reading_json",
]
