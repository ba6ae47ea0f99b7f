"""The settlement service: meter readings in, exactly-once on-chain settlement out.

:class:`SettlementService` takes meter-signed readings (``POST /meter-readings`` and
``POST /meter-readings:batch``, see :mod:`settlement.api`), keeps them durably
(:mod:`settlement.store`), puts them on-chain in batches while the interval's reading window
is open, and once the reading deadline has passed calls ``settle`` in chunks until the
interval is ``Settled``. It runs inside ``wattledger serve`` and on its own as
``wattledger settle``; either way a :class:`SettlementRunner` calls
:meth:`SettlementService.tick` every few seconds, and tests and simulations call ``tick()``
themselves after moving chain time.

Intake (before anything is stored or any gas is spent)
    A reading is the EIP-712 ``MeterReading(participant, interval, importedWh, exportedWh)``
    plus a 65-byte signature. It is accepted when, in this order: the fields are uint64 values
    and an address; the signature is well formed and recovers a key; the participant is
    registered and that key is its meter key (read from the chain and cached; re-read once on
    a mismatch, so a rotated meter is seen at once); neither energy exceeds the meter's
    physical maximum (``max_reading_wh``, by default 10 MWh per interval, or a per-meter
    limit); the interval's delivery has ended, it was committed, it is not settled and its
    reading deadline (on-chain time) has not passed; and no reading of the participant for
    the interval is stored here or on-chain. It is then written to SQLite
    (``synchronous=FULL``) and only then acknowledged (``202``, status ``queued``).
    ``POST /meter-readings:batch`` makes the same checks of every reading (one code path,
    :meth:`SettlementService.accept_readings`; the single reading is its one-item case), but
    reads the chain once per request and interval instead of once per reading, and stores
    all of them in one transaction or none.

The loop (:meth:`SettlementService.tick`)
    1. Reconcile the transaction journal: wait for (or give up on) transactions that an
       earlier run sent but did not see mined.
    2. Discover committed intervals from ``IntervalCommitted`` events (a block cursor is kept).
    3. For each interval not yet settled or failed, read ``intervalInfo`` and act on chain time:

       * ``waiting``: delivery has not ended. Nothing to do.
       * ``reading``: the window is open. Read which readings are on-chain (``ReadingSubmitted``
         events), mark those, and submit the rest sorted by participant index in batches
         sized to a fraction of the block gas limit, re-reading the chain before each batch.
       * ``settling``: the deadline has passed. Readings still queued are ``missed``. Read the
         cursor, send the chunk from the cursor (trades replayed from the commit calldata,
         chunk sized to the gas budget), and repeat until the interval is ``Settled``.
       * ``settled``; ``failed`` (a permanent error, recorded with its reason).

Exactly once, across crashes
    Every transaction is preceded by a read of the state it changes (readings on-chain; the
    settle cursor) and by an ``eth_call`` preflight; the contract itself refuses a second
    reading (``ReadingAlreadySubmitted``) and a chunk that is not at the cursor
    (``ChunkNotAtCursor``). A transaction is journalled before it is broadcast, and the next
    run first waits for any journalled transaction still in flight, so a kill between
    "send" and "mark" neither loses nor repeats anything and wastes no gas. SQLite marks
    (``onchain``, ``settled``) are a cache of chain state and are re-derived whenever they
    are missing.

Failures
    A node that does not answer (:class:`~chain.errors.ChainUnavailable`) stops the tick;
    the runner retries with exponential backoff. Paused markets and early windows are noted on
    the interval and retried. A revert that cannot succeed later (``TradesMismatch``, a chunk
    out of range, undecodable commit calldata, ...) marks that interval ``failed`` with the
    reason, and the service carries on with the others. A reading the contract refuses (the
    meter was rotated or the participant deregistered after acceptance) is marked
    ``rejected`` with the reason and the rest of its batch goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types
from eth_utils.address import to_checksum_address

from chain.errors import ChainUnavailable
from chain.reader import ChainClock, MeterInfo
from ledger import contract_errors as chain_errors
from ledger import eip712 as signing
from ledger.addresses import checksum_address
from ledger.calldata import settle_chunk_args
from ledger.contract_errors import LedgerError
from ledger.eip712 import READING_TYPEHASH
from ledger.errors import RequestError
from ledger.hashing import keccak
from ledger.records import IntervalInfo, Trade
from ledger.trade_chain import settlement_chain
from market.clock import Clock
from market.http.errors import (
    BatchRejected,
    BatchTooLarge,
    InvalidRequest,
    OutOfBounds,
    ServiceUnavailable,
)
from settlement.chain_reader import ChainReader
from settlement.errors import (
    DuplicateReading,
    IntervalSettled,
    MeterMismatch,
    OutOfGas,
    ReadingDeadlinePassed,
    ReadingOutOfBounds,
    ReadingTooEarly,
    SettlementFailed,
    TransactionNotMined,
    UnknownInterval,
    UnregisteredMeter,
)
from settlement.report import SettlementReport, build_report
from settlement.store import (
    FAILED,
    MISSED,
    ONCHAIN,
    QUEUED,
    READING,
    REJECTED,
    SETTLED,
    SETTLING,
    SUPERSEDED,
    WAITING,
    DuplicateKey,
    IntervalRow,
    ReadingStore,
    ReadingStoreError,
    StoredReading,
)
from settlement.tx import NonceConsumed, TxSender, backoff_delays

log = logging.getLogger("wattledger.settle")

UINT64_MAX = 2**64 - 1
DEFAULT_MAX_READING_WH = 10_000_000
"""Default physical maximum of one meter's import or export in one interval: 10 MWh (a large
commercial connection over 15 minutes is a few MWh; anything above is a broken meter)."""
TX_OVERHEAD_GAS = 30_000
"""Fixed gas of a transaction (21,000 intrinsic plus the call's set-up), not per item."""
READING_GAS_CEILING = 60_000
"""Most one reading can cost: a new flag word and a new exported-energy word (2 x 22.1k),
signature recovery and the event. Batches sorted by participant index share words and cost
about 20k per reading (measured)."""
TRADE_GAS_CEILING = 60_000
"""Most one settled trade can cost: two parties' balance writes and events, the seller's
exported-energy read, the hash link and its event."""
UNREGISTERED_CACHE_SECONDS = 2.0
SCAN_STEP_BLOCKS = 5_000


@dataclass(frozen=True)
class SettlementConfig:
    """Choices of the settlement service (the chain fixes the rest).

    ``max_reading_wh``: physical maximum of import or export per interval for any meter;
    ``meter_limits_wh``: per-participant maxima (lower-case address → Wh) that override it.
    ``gas_fraction``: share of the block gas limit one transaction may use (numerator,
    denominator). ``max_batch_readings`` and ``max_settle_trades`` cap batches and chunks
    further. ``max_intake_readings``: most readings one ``POST /meter-readings:batch`` takes.
    ``reading_gas`` and ``settle_trade_gas``: gas per reading and per settled trade assumed
    before any has been measured (measured: about 20k and 10-20k).
    ``deadline_margin_seconds``: refuse readings this close to the deadline (time to get
    them mined).
    """

    max_reading_wh: int = DEFAULT_MAX_READING_WH
    meter_limits_wh: Mapping[str, int] = field(default_factory=dict)
    gas_fraction: tuple[int, int] = (1, 2)
    max_batch_readings: int = 1_000
    max_intake_readings: int = 1_000
    max_settle_trades: int = 5_000
    reading_gas: int = 25_000
    settle_trade_gas: int = 25_000
    deadline_margin_seconds: int = 0

    def limit_for(self, participant: str) -> int:
        """The physical maximum (Wh per interval) of ``participant``'s meter."""
        return self.meter_limits_wh.get(participant.lower(), self.max_reading_wh)


@dataclass(frozen=True, slots=True)
class ParsedReading:
    """A reading message with every field checked (participant lower-case)."""

    participant: str
    interval: int
    imported_wh: int
    exported_wh: int


_READING_FIELDS = ("participant", "interval", "importedWh", "exportedWh")


def _uint64(value: Any, name: str) -> int:
    number = value
    if isinstance(number, str) and 0 < len(number) <= 40 and number.isascii() and number.isdigit():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidRequest(f"reading.{name}: expected an unsigned integer, got {value!r}")
    if number < 0:
        raise InvalidRequest(f"reading.{name}: {number} is negative")
    if number > UINT64_MAX:
        raise OutOfBounds(f"reading.{name}: {number} does not fit uint64")
    return number


def parse_reading(message: Mapping[str, Any]) -> ParsedReading:
    """Check a ``MeterReading`` message's fields; raise InvalidRequest or OutOfBounds."""
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
    return ParsedReading(
        participant="0x" + participant[2:].lower(),
        interval=_uint64(message["interval"], "interval"),
        imported_wh=_uint64(message["importedWh"], "importedWh"),
        exported_wh=_uint64(message["exportedWh"], "exportedWh"),
    )


def reading_digest(domain_separator: bytes, reading: ParsedReading) -> bytes:
    """The EIP-712 digest a meter signs (the contract's ``readingDigest``), computed fast."""
    body = (
        READING_TYPEHASH
        + bytes(12)
        + bytes.fromhex(reading.participant[2:])
        + reading.interval.to_bytes(32, "big")
        + reading.imported_wh.to_bytes(32, "big")
        + reading.exported_wh.to_bytes(32, "big")
    )
    return keccak(b"\x19\x01" + domain_separator + keccak(body))


def compact_signature(signature: str) -> tuple[bytes, bytes]:
    """EIP-2098 ``(r, vs)`` of a 65-byte ``r ‖ s ‖ v`` signature (checked, low ``s``)."""
    raw = signing.parse_signature(signature)
    vs = int.from_bytes(raw[32:64], "big") | (raw[64] << 255)
    return raw[:32], vs.to_bytes(32, "big")


@dataclass
class _Gas:
    """Gas per item (a reading, a settled trade): assumed, then measured from receipts.

    ``typical`` sizes batches until a receipt has been seen; ``ceiling`` is the most one item
    can cost (every storage word new), which sets the gas limit of small batches.
    """

    typical: int
    ceiling: int
    measured: int = 0

    def per_item(self) -> int:
        """What to budget per item: a quarter above the most expensive measured so far."""
        return self.measured * 5 // 4 if self.measured else self.typical

    def limit_per_item(self) -> int:
        """Gas limit per item of a transaction (unused gas is not paid for)."""
        return max(self.ceiling, self.per_item())

    def observe(self, gas_used: int, items: int) -> None:
        """Learn from a mined transaction of ``items`` items."""
        if items > 0:
            self.measured = max(self.measured, max(gas_used - TX_OVERHEAD_GAS, 1) // items + 1)

    def out_of_gas(self) -> None:
        """A transaction ran out of gas: budget twice as much per item from now on."""
        self.measured = 2 * self.per_item()
        self.ceiling = 2 * self.ceiling


@dataclass(frozen=True, slots=True)
class _Authentic:
    """A reading of a request (at ``index``) whose fields, signature, meter key and bounds
    passed; ``signature`` normalized."""

    index: int
    reading: ParsedReading
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


class SettlementService:
    """Readings intake, batched submission and chunked settlement for one market deployment.

    ``reader`` reads the chain, ``sender`` sends from the settlement account, ``store``
    keeps readings, interval states and the transaction journal. ``clock`` defaults to
    on-chain time. Thread-safe: intake runs on the API's threads while one thread ticks.
    """

    def __init__(
        self,
        reader: ChainReader,
        store: ReadingStore,
        sender: TxSender,
        config: SettlementConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.reader = reader
        self.store = store
        self.sender = sender
        self.config = config or SettlementConfig()
        self.clock: Clock = clock or ChainClock(reader)
        self.client = reader.client
        self.chain_id = int(
            reader.retry("reading the chain id", lambda: reader.client.chain.chain_id)
        )
        self.market = to_checksum_address(reader.market)
        store.bind_deployment(self.chain_id, self.market)
        self.domain = signing.Domain(self.chain_id, self.market)
        self._separator = self.domain.separator
        self._meters: dict[str, MeterInfo] = {}
        self._unregistered_until: dict[str, float] = {}
        self._committed: dict[int, IntervalInfo] = {}
        self._trades: dict[int, tuple[Trade, ...]] = {}
        self._heads: dict[int, tuple[bytes, ...]] = {}
        self._abi: dict[str, tuple[bytes, list[str]]] = {}
        self._reading_gas = _Gas(self.config.reading_gas, READING_GAS_CEILING)
        self._trade_gas = _Gas(self.config.settle_trade_gas, TRADE_GAS_CEILING)
        for row in store.intervals():
            if row.commit_block is not None:
                reader.remember_commit(row.interval, row.commit_block)
        self._tick_lock = threading.Lock()
        self._tick_now: int | None = None
        self._block_gas_limit: int | None = None
        self.stopping = threading.Event()
        """Set to make a running :meth:`tick` stop after its current transaction."""
        self.on_progress: Callable[[str], None] | None = None
        """Called with each progress line as it happens (a tick can take long)."""

    # -- intake ------------------------------------------------------------------------------

    def accept_reading(self, message: Mapping[str, Any], signature: Any) -> StoredReading:
        """Check a signed reading and store it durably; raise the refusal's RequestError.

        The one-reading case of :meth:`accept_readings`: the same checks, the same errors.
        Nothing is stored and no transaction is sent unless every check passes.
        """
        return self.accept_readings([(message, signature)])[0]

    def accept_readings(
        self, items: Sequence[tuple[Mapping[str, Any], Any]]
    ) -> list[StoredReading]:
        """Check signed readings ``(message, signature)`` and store them durably, all or none.

        Each reading gets every check :meth:`accept_reading` makes, in the same order, but the
        chain is read once per request (time and latest block) and once per distinct
        interval (window, ``intervalInfo``, readings on-chain), and all are written in one
        store transaction. A reading repeating an earlier one's participant and interval is
        a duplicate. Returns the stored readings in request order.

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
        by_interval: dict[int, list[_Authentic]] = {}
        for index, (message, signature) in enumerate(items):
            try:
                item = self._authenticate(index, message, signature)
            except RequestError as err:
                errors[index] = err
                continue
            by_interval.setdefault(item.reading.interval, []).append(item)
        accepted: list[StoredReading | None] = [None] * len(items)
        intervals: dict[int, tuple[int, int]] = {}
        now = latest = 0
        if by_interval:
            now, latest = self._chain("reading chain time", self.reader.now_and_latest)
        for t, group in by_interval.items():
            try:
                info = self._open_interval(t, now)
            except RequestError as err:
                errors.update((item.index, err) for item in group)
                continue
            intervals[t] = (info.trade_count, info.deadline)
            fresh = self._fresh_readings(t, group, latest, errors)
            for item in fresh:
                accepted[item.index] = StoredReading(
                    interval=t,
                    participant=item.reading.participant,
                    imported_wh=item.reading.imported_wh,
                    exported_wh=item.reading.exported_wh,
                    signature=item.signature,
                    meter=item.meter.meter,
                    participant_index=item.meter.participant_index,
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

    def _authenticate(self, index: int, message: Mapping[str, Any], signature: Any) -> _Authentic:
        """The checks of one reading that need no chain state but its meter: fields,
        signature, the participant's meter key, the meter's physical maximum."""
        reading = parse_reading(message)
        signer = signing.recover(reading_digest(self._separator, reading), signature)
        meter = self._meter(reading.participant)
        if meter.registered and signer != meter.meter:
            meter = self._meter(reading.participant, refresh=True)
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
        return _Authentic(index, reading, meter, normalized_signature(signature))

    def _open_interval(self, t: int, now: int) -> IntervalInfo:
        """Interval ``t``'s info if it takes readings at ``now``; else the refusal."""
        _, end = self._chain("reading the interval window", lambda: self.reader.window(t))
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
        if now >= info.deadline - self.config.deadline_margin_seconds:
            fresh = self._chain("reading the interval", lambda: self.reader.interval(t))
            if fresh.status == "settled":
                raise IntervalSettled(f"interval {t} is already settled")
            raise ReadingDeadlinePassed(
                f"interval {t}: readings were accepted until {info.deadline}; it is {now} on-chain"
            )
        return info

    def _fresh_readings(
        self, t: int, group: Sequence[_Authentic], latest: int, errors: dict[int, RequestError]
    ) -> list[_Authentic]:
        """The readings of ``group`` (all for interval ``t``) that no reading precedes: none
        stored here, none on-chain as of block ``latest``, none earlier in the request. The
        others' refusals go into ``errors``."""
        participants = [item.reading.participant for item in group]
        stored = self._store("reading the store", lambda: self.store.readings_of(t, participants))
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
                onchain = self._chain(
                    "reading the readings on-chain",
                    lambda: self.reader.submitted_readings(t, latest),
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

    def _chain(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except ChainUnavailable as err:
            raise ServiceUnavailable(f"the chain is unavailable ({what}): {err.message}") from None

    def _store(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except ReadingStoreError as err:
            raise ServiceUnavailable(
                f"the reading store failed while {what}: {err.message}"
            ) from None

    def _meter(self, participant: str, refresh: bool = False) -> MeterInfo:
        key = participant.lower()
        cached = self._meters.get(key)
        if cached is not None and not refresh:
            return cached
        until = self._unregistered_until.get(key)
        if cached is None and until is not None and time.monotonic() < until:
            return MeterInfo("0x" + "00" * 20, 0, False)
        info: MeterInfo = self._chain(
            f"reading the registration of {key}", lambda: self.reader.participant(key)
        )
        if info.registered:
            self._meters[key] = info
            self._unregistered_until.pop(key, None)
        else:
            self._meters.pop(key, None)
            if len(self._unregistered_until) > 100_000:
                self._unregistered_until.clear()
            self._unregistered_until[key] = time.monotonic() + UNREGISTERED_CACHE_SECONDS
        return info

    def _interval_info(self, t: int) -> IntervalInfo:
        """``intervalInfo(t)``, cached once committed (its deadline never changes)."""
        cached = self._committed.get(t)
        if cached is not None:
            return cached
        info: IntervalInfo = self._chain(f"reading interval {t}", lambda: self.reader.interval(t))
        if info.status == "committed":
            self._committed[t] = info
        return info

    # -- the loop ----------------------------------------------------------------------------

    def _emit(self, progress: list[str], line: str) -> None:
        progress.append(line)
        if self.on_progress is not None:
            self.on_progress(line)

    def tick(self) -> list[str]:
        """Do everything that is due now; return one progress line per step taken.

        Raises :class:`ChainUnavailable` when the node stops answering (nothing is lost: the
        next tick resumes from chain state).
        """
        with self._tick_lock:
            try:
                return self._tick()
            finally:
                self._tick_now = None
                self._block_gas_limit = None

    def _tick(self) -> list[str]:
        """One tick (under the tick lock): chain time and the latest block are read once."""
        progress: list[str] = []
        self.sender.reconcile()
        now, latest, self._block_gas_limit = self._now_and_latest()
        self._tick_now = now
        self._discover(now, latest)
        for row in self.store.intervals((WAITING, READING, SETTLING)):
            if self.stopping.is_set():
                break
            t = row.interval
            try:
                self._advance(row, now, progress)
            except SettlementFailed as err:
                self._fail(err, progress)
            except (ChainUnavailable, ReadingStoreError):
                raise
            except (NonceConsumed, TransactionNotMined) as err:
                self._note(t, err.code, err.message)
                self._emit(progress, f"interval {t}: {err.message}; retrying")
            except LedgerError as err:
                self._fail(SettlementFailed(t, _reason(err), str(err)), progress)
            except Exception as err:  # a bug must not stop the other intervals
                log.exception("interval %d: unexpected error", t)
                self._note(t, "internal_error", f"{type(err).__name__}: {err}")
        return progress

    def _now_and_latest(self) -> tuple[int, int, int | None]:
        """(the clock's time, the latest block, the block gas limit or None), in one request
        when the clock is chain time (whose block header also gives the gas limit)."""
        if isinstance(self.clock, ChainClock) and self.clock.reader is self.reader:
            now, latest = self.reader.now_and_latest()
            return now, latest, self.reader.header_gas_limit
        return self.clock.now(), self.reader.latest_block(), None

    def _now(self) -> int:
        """The time of the running tick (read once at its start), else the clock's now.

        A tick stamps the intervals it moves with it instead of asking the clock each time:
        on-chain time is one request to the node.
        """
        return self._tick_now if self._tick_now is not None else self.clock.now()

    def _discover(self, now: int, latest: int) -> None:
        """Add intervals committed up to block ``latest`` since the last scan
        (``IntervalCommitted`` events)."""
        scanned = self.store.get_meta("scan_block")
        start = self.reader.start_block if scanned is None else int(scanned) + 1
        while start <= latest:
            stop = min(latest, start + SCAN_STEP_BLOCKS - 1)
            for c in self.reader.committed_intervals(start, stop):
                added = self.store.upsert_interval(
                    c.interval, c.trade_count, c.deadline, now, c.block_number
                )
                if added:
                    log.info(
                        "interval %d: committed with %d trades; reading deadline %d",
                        c.interval,
                        c.trade_count,
                        c.deadline,
                    )
            self.store.set_meta("scan_block", str(stop))
            start = stop + 1

    def _advance(self, row: IntervalRow, now: int, progress: list[str]) -> None:
        t = row.interval
        info = self._status(t, now)
        if info.status == "settled":
            self._finish(t, progress)
            return
        if info.status == "none":
            raise SettlementFailed(
                t,
                "interval_not_committed",
                "the chain has no commit for this interval any more (a different or reset chain?)",
            )
        _, end = self.reader.window(t)
        if now < end:
            self._set_state(row, WAITING)
            return
        if now < info.deadline:
            self._set_state(row, READING)
            self._submit_readings(t, progress)
            return
        self._set_state(row, SETTLING)
        late = self._sync_readings(t)
        if late:
            self.store.mark_readings(
                t,
                [r.participant for r in late],
                MISSED,
                reason="the reading deadline passed before the reading could be submitted",
            )
            self._emit(progress, f"interval {t}: {len(late)} readings missed the deadline")
        self._settle(t, progress, info)

    def _status(self, t: int, now: int) -> IntervalInfo:
        """``intervalInfo(t)`` as far as the tick at ``now`` needs it.

        Read from the chain once per service (which also catches a reset or different
        chain after a restart), and again once the reading deadline has passed. Until then
        the answer cannot change: once committed, only ``settle`` changes an interval, and
        it reverts before the deadline (what this service does in the reading window, it
        checks by its own reads and preflights).
        """
        known = self._committed.get(t)
        if known is not None and now < known.deadline:
            return known
        info = self.reader.interval(t)
        if info.status == "committed":
            self._committed[t] = info
        return info

    def _set_state(self, row: IntervalRow, state: str) -> None:
        if row.state != state:
            self.store.set_interval_state(row.interval, state, self._now())
            log.info("interval %d: %s", row.interval, state)

    def _note(self, t: int, code: str, detail: str) -> None:
        self.store.note_interval_error(t, code, detail, self._now())
        log.warning("interval %d: %s", t, detail)

    def _fail(self, err: SettlementFailed, progress: list[str]) -> None:
        self.store.set_interval_state(
            err.interval, FAILED, self._now(), error_code=err.reason, error_detail=err.detail
        )
        log.error("interval %d FAILED (%s): %s", err.interval, err.reason, err.detail)
        self._forget(err.interval)
        self._emit(progress, f"interval {err.interval}: FAILED ({err.reason}): {err.detail}")

    def _finish(self, t: int, progress: list[str]) -> None:
        self._sync_readings(t)
        leftover = self.store.readings(t, QUEUED)
        if leftover:
            self.store.mark_readings(
                t,
                [r.participant for r in leftover],
                MISSED,
                reason="the interval was settled before the reading was submitted",
            )
        self.store.set_interval_state(t, SETTLED, self._now())
        row = self.store.get_interval(t)
        txs = f"{row.reading_txs} reading and {row.settle_txs} settle transactions" if row else ""
        self._emit(progress, f"interval {t}: settled ({txs} from this service)")
        log.info("interval %d: settled", t)
        self._forget(t)

    def _forget(self, t: int) -> None:
        """Drop what is cached about ``t`` (a retry re-derives everything from the chain)."""
        self._trades.pop(t, None)
        self._heads.pop(t, None)
        self._committed.pop(t, None)

    def retry_failed(self, interval: int | None = None) -> list[int]:
        """Put failed intervals (or one) back in the loop; return those reset."""
        reset = []
        for row in self.store.intervals((FAILED,)):
            if interval is None or row.interval == interval:
                self.store.set_interval_state(row.interval, WAITING, self.clock.now())
                reset.append(row.interval)
        return reset

    # -- readings --------------------------------------------------------------------------

    def _sync_readings(self, t: int) -> list[StoredReading]:
        """Mark queued readings that are on-chain; return the queued ones that are not."""
        queued = self.store.readings(t, QUEUED)
        if not queued:
            return []
        onchain = self.reader.submitted_readings(t)
        todo = []
        for r in queued:
            event = onchain.get(r.participant)
            if event is None:
                todo.append(r)
            elif (event.imported_wh, event.exported_wh) == (r.imported_wh, r.exported_wh):
                self.store.mark_readings(
                    t,
                    [r.participant],
                    ONCHAIN,
                    tx_hash=event.tx_hash,
                    block_number=event.block_number,
                )
            else:
                self.store.mark_readings(
                    t,
                    [r.participant],
                    SUPERSEDED,
                    reason=(
                        f"another reading (imported {event.imported_wh} Wh, exported "
                        f"{event.exported_wh} Wh) reached the chain first in {event.tx_hash}"
                    ),
                    tx_hash=event.tx_hash,
                    block_number=event.block_number,
                )
        return todo

    def _budget(self) -> tuple[int, int]:
        """(gas one transaction may use, the block gas limit).

        The block gas limit is read once per tick: it moves by at most 1/1024 a block, and a
        transaction is budgeted a fraction of it.
        """
        block_limit = self._block_gas_limit
        if block_limit is None:
            block_limit = self.reader.gas_limit()
            if self._tick_now is not None:
                self._block_gas_limit = block_limit
        num, den = self.config.gas_fraction
        return block_limit * num // den, block_limit

    def _batch(self, gas: _Gas, cap: int) -> tuple[int, int]:
        """(items per transaction, gas limit of a full one) within the budget."""
        budget, _ = self._budget()
        items = max(1, min(cap, (budget - TX_OVERHEAD_GAS) // gas.per_item()))
        return items, budget

    def _gas_limit(self, gas: _Gas, items: int, budget: int) -> int:
        return min(budget, TX_OVERHEAD_GAS + max(items, 1) * gas.limit_per_item())

    def _submit_readings(self, t: int, progress: list[str]) -> None:
        for _ in range(10_000):
            if self.stopping.is_set():
                return
            todo = self._sync_readings(t)
            if not todo:
                return
            size, budget = self._batch(self._reading_gas, self.config.max_batch_readings)
            batch = todo[:size]
            data = self._encode_readings(t, batch)
            try:
                receipt = self.sender.send(
                    self.market,
                    data,
                    gas_limit=self._gas_limit(self._reading_gas, len(batch), budget),
                    kind="readings",
                    interval=t,
                )
            except (
                chain_errors.InvalidMeterSignature,
                chain_errors.ParticipantNotRegistered,
                chain_errors.ReadingAlreadySubmitted,
            ) as err:
                self._reject(t, err, progress)
                continue
            except (chain_errors.ReadingWindowClosed, chain_errors.IntervalNotEnded) as err:
                self._note(t, _reason(err), str(err))
                return
            except chain_errors.EnforcedPause as err:
                self._note(t, "paused", f"the market is paused; readings wait ({err})")
                return
            except OutOfGas:
                if len(batch) == 1:
                    raise SettlementFailed(
                        t, "gas_budget_too_small", "one reading does not fit the gas budget"
                    ) from None
                self._reading_gas.out_of_gas()
                continue
            except NonceConsumed:
                continue
            self._reading_gas.observe(int(receipt["gasUsed"]), len(batch))
            tx_hash = _hex(receipt["transactionHash"])
            self.store.mark_readings(
                t,
                [r.participant for r in batch],
                ONCHAIN,
                tx_hash=tx_hash,
                block_number=int(receipt["blockNumber"]),
            )
            self.store.count_tx(t, "readings")
            self._emit(
                progress,
                f"interval {t}: {len(batch)} readings on-chain in {tx_hash} "
                f"({int(receipt['gasUsed']):,} gas)",
            )

    def _reject(self, t: int, err: LedgerError, progress: list[str]) -> None:
        who = str(getattr(err, "participant", "")).lower()
        if isinstance(err, chain_errors.ReadingAlreadySubmitted):
            if who in self.reader.submitted_readings(t):
                return  # on-chain after all: the next sync marks it
            reason = "the contract already has a reading of this participant"
        elif isinstance(err, chain_errors.InvalidMeterSignature):
            reason = (
                "the contract refused the signature: the participant's meter key changed "
                "after the reading was accepted"
            )
        else:
            reason = "the participant was deregistered after the reading was accepted"
        if not self.store.mark_readings(t, [who], REJECTED, reason=f"{reason} ({err})"):
            raise err  # not one of ours: nothing to drop, so retrying would loop
        self._emit(progress, f"interval {t}: reading of {who} rejected: {reason}")
        log.warning("interval %d: reading of %s rejected: %s", t, who, reason)

    def _encode_readings(self, t: int, batch: Sequence[StoredReading]) -> bytes:
        rows = []
        for r in batch:
            r_bytes, vs = compact_signature(r.signature)
            rows.append((r.participant, t, r.imported_wh, r.exported_wh, r_bytes, vs))
        return self._encode("submitReadings", [t, rows])

    def _encode(self, function: str, args: Sequence[Any]) -> bytes:
        """Calldata of the market's ``function`` with ``args``: selector and ABI encoding by
        :func:`encode_static_args` (eth-abi takes 50 ms for a batch of 200 readings, web3's
        ``encode_abi`` a tenth of a second: it checks every value against every overload)."""
        found = self._abi.get(function)
        if found is None:
            entry = next(
                e
                for e in self.client.contract.abi
                if e.get("type") == "function" and e.get("name") == function
            )
            found = (function_abi_to_4byte_selector(entry), get_abi_input_types(entry))
            self._abi[function] = found
        selector, types = found
        return selector + encode_static_args(types, args)

    # -- settlement -------------------------------------------------------------------------

    def _chunk_inputs(self, t: int) -> tuple[tuple[Trade, ...], dict[str, int], tuple[bytes, ...]]:
        trades = self._trades.get(t)
        if trades is None:
            trades = self.reader.committed_trades(t)
            self._trades[t] = trades
        indices: dict[str, int] = {}
        for seller in {tr.seller for tr in trades}:
            key = to_checksum_address(seller)
            info = self._meters.get(key.lower())
            if info is None or not info.ever_registered:
                info = self.reader.participant(key)
            indices[key] = info.participant_index
        heads = self._heads.get(t)
        if heads is None:
            heads = settlement_chain(trades, indices)
            self._heads[t] = heads
        return trades, indices, heads

    def _settle(self, t: int, progress: list[str], read: IntervalInfo | None = None) -> None:
        """Settle ``t`` chunk by chunk from the cursor; ``read``: its ``intervalInfo`` just
        read by the caller (the first chunk starts from it)."""
        trades, indices, heads = self._chunk_inputs(t)
        for _ in range(10_000):
            if self.stopping.is_set():
                return
            info, read = read or self.reader.interval(t), None
            if info.status == "settled":
                self._finish(t, progress)
                return
            if info.trade_count != len(trades):
                raise SettlementFailed(
                    t,
                    "trades_mismatch",
                    f"the commit calldata has {len(trades)} trades, the contract counts "
                    f"{info.trade_count}",
                )
            if heads[info.cursor] != info.remaining_hash:
                raise SettlementFailed(
                    t,
                    "trades_mismatch",
                    f"the replayed trades do not hash to the stored head at cursor {info.cursor}",
                )
            size, budget = self._batch(self._trade_gas, self.config.max_settle_trades)
            start = info.cursor
            stop = min(len(trades), start + size)
            args = settle_chunk_args(trades, indices, start, stop, heads)
            data = self._encode(
                "settle",
                [t, args.first_index, list(args.parties), list(args.trades), args.tail_hash],
            )
            try:
                receipt = self.sender.send(
                    self.market,
                    data,
                    gas_limit=self._gas_limit(self._trade_gas, stop - start, budget),
                    kind="settle",
                    interval=t,
                )
            except (
                chain_errors.ChunkNotAtCursor,
                chain_errors.IntervalAlreadySettled,
                NonceConsumed,
            ):
                continue  # someone else moved the cursor: read it again
            except chain_errors.ReadingWindowOpen as err:
                self._note(t, "reading_window_open", str(err))
                return
            except chain_errors.EnforcedPause as err:
                self._note(t, "paused", f"the market is paused; settlement waits ({err})")
                return
            except OutOfGas:
                if stop - start <= 1:
                    raise SettlementFailed(
                        t, "gas_budget_too_small", "one trade does not fit the gas budget"
                    ) from None
                self._trade_gas.out_of_gas()
                continue
            except LedgerError as err:
                raise SettlementFailed(t, _reason(err), str(err)) from None
            self._trade_gas.observe(int(receipt["gasUsed"]), stop - start)
            self.store.count_tx(t, "settle")
            self._emit(
                progress,
                f"interval {t}: settled trades {start}..{stop - 1} of {len(trades)} in "
                f"{_hex(receipt['transactionHash'])} ({int(receipt['gasUsed']):,} gas)",
            )
            if stop == len(trades):
                # A mined chunk that reached the last trade left the interval Settled.
                self._finish(t, progress)
                return
        raise SettlementFailed(t, "no_progress", "settlement made no progress in 10,000 attempts")

    # -- views -----------------------------------------------------------------------------

    def interval_status(self, t: int) -> dict[str, Any]:
        """The service's own view of interval ``t``: state, readings by status, last error."""
        row = self.store.get_interval(t)
        counts = self.store.reading_counts(t)
        return {
            "state": row.state if row else None,
            "readings": {
                s: counts.get(s, 0) for s in (QUEUED, ONCHAIN, SUPERSEDED, REJECTED, MISSED)
            },
            "readingTransactions": row.reading_txs if row else 0,
            "settleTransactions": row.settle_txs if row else 0,
            "error": (
                {"code": row.error_code, "detail": row.error_detail}
                if row and row.error_code
                else None
            ),
        }

    def report(self, t: int, *, escrow: bool = True) -> SettlementReport:
        """The reconciliation report of interval ``t`` from on-chain events (see
        :mod:`settlement.report`); UnknownInterval if it was never committed."""
        events = self._chain(
            f"reading the events of interval {t}",
            lambda: self.reader.interval_events(t, escrow=escrow),
        )
        if not events.committed and events.state.status == "none":
            raise UnknownInterval(f"interval {t} was never committed")
        return build_report(events)

    def intervals(self) -> list[IntervalRow]:
        """Every interval the service knows, ascending."""
        return self.store.intervals()


_UINT_BITS = {f"uint{8 * k}": 8 * k for k in range(1, 33)}


def _word(kind: str, value: Any) -> bytes:
    """One 32-byte ABI word of a static ``uintN``, ``address`` or ``bytes32`` value (checked
    as eth-abi checks it: in range, not too long)."""
    bits = _UINT_BITS.get(kind)
    if bits is not None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
            raise ValueError(f"{value!r} is not a {kind}")
        return value.to_bytes(32, "big")
    if kind == "address":
        raw = bytes.fromhex(value[2:]) if isinstance(value, str) and value[:2] == "0x" else b""
        if len(raw) != 20:
            raise ValueError(f"{value!r} is not an address")
        return bytes(12) + raw
    if kind == "bytes32" and isinstance(value, bytes | bytearray) and len(value) <= 32:
        return bytes(value).ljust(32, b"\0")  # eth-abi pads a shorter value on the right
    raise ValueError(f"{value!r} is not a {kind}")


def _tuple_fields(kind: str) -> list[str] | None:
    """The field types of a static tuple array type ``(a,b,...)[]``, else None."""
    if not (kind.startswith("(") and kind.endswith(")[]")) or "(" in kind[1:]:
        return None
    fields = kind[1:-3].split(",")
    if all(f in _UINT_BITS or f in ("address", "bytes32") for f in fields):
        return fields
    return None


def encode_static_args(types: Sequence[str], args: Sequence[Any]) -> bytes:
    """ABI encoding of ``args`` (what ``eth_abi.encode(types, args)`` gives) for arguments
    that are ``uintN``, ``address`` and ``bytes32`` values and dynamic arrays of tuples of
    those (the readings and settle chunks), word by word; any other type goes to eth-abi.

    Addresses may be lower-case hex (eth-abi wants checksummed ones and so costs a keccak
    per address). Out-of-range values raise ValueError, as eth-abi refuses them.
    """
    if len(types) != len(args):
        raise ValueError(f"{len(args)} arguments for {len(types)} types")
    shapes = [_tuple_fields(kind) for kind in types]
    if any(
        shape is None and kind not in _UINT_BITS and kind not in ("address", "bytes32")
        for kind, shape in zip(types, shapes, strict=True)
    ):
        return abi_encode(list(types), list(args))
    head: list[bytes] = []
    tail: list[bytes] = []
    offset = 32 * len(types)
    for kind, shape, value in zip(types, shapes, args, strict=True):
        if shape is None:
            head.append(_word(kind, value))
            continue
        head.append(offset.to_bytes(32, "big"))
        rows = list(value)
        part = [len(rows).to_bytes(32, "big")]
        for row in rows:
            if len(row) != len(shape):
                raise ValueError(f"{row!r} does not have the fields of {kind}")
            part.extend(_word(f, v) for f, v in zip(shape, row, strict=True))
        tail.extend(part)
        offset += 32 * len(part)
    return b"".join(head + tail)


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


def normalized_signature(signature: Any) -> str:
    """A checked 65-byte signature as lower-case ``0x`` hex with ``v`` in {27, 28}."""
    raw = signing.parse_signature(signature)
    return "0x" + raw[:64].hex() + format(raw[64] + 27, "02x")


def _reason(err: LedgerError) -> str:
    return err.solidity_name or err.code


def _hex(value: Any) -> str:
    if isinstance(value, str):
        return value if value.startswith("0x") else "0x" + value
    return "0x" + bytes(value).hex()


class SettlementRunner:
    """Calls :meth:`SettlementService.tick` every ``poll_seconds`` on a thread of its own.

    When the chain stops answering it waits with exponential backoff (up to
    ``max_backoff_seconds``) and says so once; when it answers again it resumes from chain
    state. ``before_tick`` runs before each tick (``wattledger serve`` uses it to keep the
    embedded chain's clock moving); ``on_progress`` receives each progress line.
    """

    def __init__(
        self,
        service: SettlementService,
        poll_seconds: float = 2.0,
        *,
        max_backoff_seconds: float = 30.0,
        on_progress: Callable[[str], None] | None = None,
        before_tick: Callable[[], None] | None = None,
    ) -> None:
        self.service = service
        self.poll_seconds = poll_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.on_progress = on_progress or (lambda line: log.info("%s", line))
        service.on_progress = self.on_progress
        self.before_tick = before_tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run the loop on a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="settlement", daemon=True)
        self._thread.start()

    def stop(self, timeout_seconds: float = 30.0) -> None:
        """Ask the loop to stop after the current transaction, and wait for it."""
        self._stop.set()
        self.service.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)

    def run(self) -> None:
        """The loop itself, in the calling thread, until :meth:`stop`."""
        delays = None
        unavailable = False
        while not self._stop.is_set():
            try:
                if self.before_tick is not None:
                    self.before_tick()
                self.service.tick()  # reports progress through on_progress as it goes
                if unavailable:
                    log.warning("the chain answers again; settlement resumed")
                unavailable, delays, wait = False, None, self.poll_seconds
            except Exception as err:
                delays = delays or backoff_delays(self.poll_seconds, 2.0, self.max_backoff_seconds)
                wait = next(delays)
                if isinstance(err, ChainUnavailable):
                    if not unavailable:
                        log.warning("the chain is unavailable (%s); waiting for it", err.message)
                    unavailable = True
                else:
                    log.exception("settlement tick failed; retrying in %.1f s", wait)
            self._stop.wait(wait)


__all__ = [
    "DEFAULT_MAX_READING_WH",
    "ParsedReading",
    "SettlementConfig",
    "SettlementRunner",
    "SettlementService",
    "compact_signature",
    "normalized_signature",
    "parse_reading",
    "reading_digest",
    "reading_json",
]
