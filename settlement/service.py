"""The settlement service: meter readings in, exactly-once on-chain settlement out.

:class:`SettlementService` takes meter-signed readings (``POST /meter-readings`` and
``POST /meter-readings:batch``, see :mod:`settlement.api`), keeps them durably
(:mod:`settlement.store`), puts them on-chain in batches while the interval's reading window
is open, and once the reading deadline has passed calls ``settle`` in chunks until the
interval is ``Settled``. It runs inside ``wattledger serve`` and on its own as
``wattledger settle``; either way a :class:`~settlement.runner.SettlementRunner` calls
:meth:`SettlementService.tick` every few seconds, and tests and simulations call ``tick()``
themselves after moving chain time.

It is a façade over its parts, each in a module of its own:

* :mod:`settlement.intake`: the checks a reading passes before it is stored and acknowledged;
* :mod:`settlement.batching`: queued readings on-chain in gas-sized batches;
* :mod:`settlement.chunks`: ``settle`` chunk by chunk from the cursor;
* :mod:`settlement.chain_port`: all of them see the chain through :class:`SettlementChain`,
  the deployed contract (:class:`~settlement.contract_chain.ContractChain`) or an in-memory
  one for tests (:class:`~settlement.memory_chain.MemoryChain`).

The loop (:meth:`SettlementService.tick`)
    1. Reconcile the transaction journal: wait for (or give up on) transactions that an
       earlier run sent but did not see mined.
    2. Discover committed intervals from ``IntervalCommitted`` events (a block cursor is kept).
    3. For each interval not yet settled or failed, read ``intervalInfo`` and act on chain time:

       * ``waiting``: delivery has not ended. Nothing to do.
       * ``reading``: the window is open. Read which readings are on-chain (``ReadingSubmitted``
         events), mark those, keep the readings of participants that sold nothing in the
         interval off-chain (``offchain``: settlement does not read them; they are published
         by ``GET /intervals/{t}/readings``), and submit the sellers' sorted by participant
         index in batches sized to a fraction of the block gas limit, re-reading the chain
         before each batch (:mod:`settlement.batching`).
       * ``settling``: the deadline has passed. Sellers' readings still queued are
         ``missed``. Read the cursor, send the chunk from the cursor (trades replayed from
         the commit calldata, chunk sized to the gas budget), and repeat until the interval
         is ``Settled``.
       * ``settled``; ``failed`` (a permanent error, recorded with its reason).

Finality (:mod:`chain.finality`)
    The service acts on the chain's head but takes a step as done only once the final block
    holds it: intervals are discovered from final commits, a reading is marked ``onchain``
    once its event's block is final, an interval ``settled`` once it is settled at the final
    block. What to send is always read from the head, so a reading batch or a settle chunk
    that a reorganisation dropped is found missing and sent again, once (the contract's own
    refusals stay the backstop).

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
    the runner retries with exponential backoff. A base fee above the fee cap
    (:class:`~settlement.errors.FeeAboveCap`) sends nothing: it is noted on the interval,
    said as a progress line, and retried on the next pass. Paused markets and early windows
    are noted on the interval and retried. A revert that cannot succeed later
    (``TradesMismatch``, a chunk out of range, undecodable commit calldata, ...) marks that
    interval ``failed`` with the reason, and the service carries on with the others. A
    reading the contract refuses (the meter was rotated or the participant deregistered
    after acceptance) is marked ``rejected`` with the reason and the rest of its batch goes
    on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chain.errors import ChainUnavailable
from chain.reader import ChainClock
from ledger import eip712 as signing
from ledger.contract_errors import LedgerError
from ledger.records import IntervalInfo, Reading
from market.clock import Clock
from settlement.batching import ReadingBatcher
from settlement.chain_port import SettlementChain
from settlement.chain_reader import ChainReader
from settlement.chunks import ChunkSettler
from settlement.config import SettlementConfig
from settlement.contract_chain import ContractChain
from settlement.errors import (
    FeeAboveCap,
    SettlementFailed,
    TransactionNotMined,
    UnknownInterval,
)
from settlement.intake import ReadingIntake, read_chain
from settlement.reconciliation import build_report
from settlement.report import SettlementReport
from settlement.store import (
    FAILED,
    MISSED,
    OFFCHAIN,
    ONCHAIN,
    QUEUED,
    READING,
    REJECTED,
    SETTLED,
    SETTLING,
    SUPERSEDED,
    WAITING,
    IntervalRow,
    ReadingStore,
    ReadingStoreError,
    StoredReading,
)
from settlement.tick import Tick, revert_reason
from settlement.tx import NonceConsumed, TxSender

log = logging.getLogger("wattledger.settle")

SCAN_STEP_BLOCKS = 5_000
"""Blocks per scan for ``IntervalCommitted`` events."""


class SettlementService:
    """Readings intake, batched submission and chunked settlement for one market deployment.

    ``reader`` reads the chain, ``sender`` sends from the settlement account, ``store``
    keeps readings, interval states and the transaction journal. ``clock`` defaults to
    on-chain time. Thread-safe: intake runs on the API's threads while one thread ticks.
    :meth:`over` builds one on any :class:`~settlement.chain_port.SettlementChain`.
    """

    reader: ChainReader
    """The chain reader (a service built by :meth:`over` has none)."""
    sender: TxSender
    """The settlement account's sender (a service built by :meth:`over` has none)."""

    def __init__(
        self,
        reader: ChainReader,
        store: ReadingStore,
        sender: TxSender,
        config: SettlementConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.reader = reader
        self.sender = sender
        self.client = reader.client
        chain_time = clock is None or (isinstance(clock, ChainClock) and clock.reader is reader)
        self._compose(
            ContractChain(reader, sender), store, config, clock or ChainClock(reader), chain_time
        )

    @classmethod
    def over(
        cls,
        chain: SettlementChain,
        store: ReadingStore,
        config: SettlementConfig | None = None,
        clock: Clock | None = None,
    ) -> SettlementService:
        """A service on ``chain`` (a :class:`~settlement.memory_chain.MemoryChain` in tests),
        on chain time unless ``clock`` is given."""
        service = cls.__new__(cls)
        service._compose(chain, store, config, clock or chain, clock is None)
        return service

    def _compose(
        self,
        chain: SettlementChain,
        store: ReadingStore,
        config: SettlementConfig | None,
        clock: Clock,
        chain_time: bool,
    ) -> None:
        self.chain = chain
        self.store = store
        self.config = config or SettlementConfig()
        self.clock = clock
        self._chain_time = chain_time
        """Whether ``clock`` tells chain time, which a tick reads with the latest block."""
        self.chain_id = chain.chain_id
        self.market = chain.market
        store.bind_deployment(self.chain_id, self.market)
        self.domain = signing.Domain(self.chain_id, self.market)
        self._committed: dict[int, IntervalInfo] = {}
        self.intake = ReadingIntake(
            chain, store, self.config, self.domain.separator, self._committed
        )
        self.batcher = ReadingBatcher(chain, store, self.config)
        self.chunks = ChunkSettler(chain, store, self.config, self.intake.known_meter)
        for row in store.intervals():
            if row.commit_block is not None:
                chain.remember_commit(row.interval, row.commit_block)
        self._tick_lock = threading.Lock()
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
        """Check signed readings ``(message, signature)`` and store them durably, all or none
        (:meth:`settlement.intake.ReadingIntake.accept`); return them in request order."""
        return self.intake.accept(items)

    # -- the loop ----------------------------------------------------------------------------

    def tick(self) -> list[str]:
        """Do everything that is due now; return one progress line per step taken.

        Raises :class:`ChainUnavailable` when the node stops answering (nothing is lost: the
        next tick resumes from chain state).
        """
        with self._tick_lock:
            self.chain.reconcile()
            if self._chain_time:
                now, latest, block_gas_limit = self.chain.chain_time()
            else:
                now, latest, block_gas_limit = self.clock.now(), self.chain.latest_block(), None
            tick = Tick(
                self.chain,
                self.store,
                now,
                self.config.gas_fraction,
                self.stopping,
                block_gas_limit,
                self.on_progress,
            )
            self._discover(now, latest)
            for row in self.store.intervals((WAITING, READING, SETTLING)):
                if self.stopping.is_set():
                    break
                self._advance_guarded(row, tick)
            return tick.progress

    def _advance_guarded(self, row: IntervalRow, tick: Tick) -> None:
        """Advance one interval; its failure is recorded and does not stop the others."""
        t = row.interval
        try:
            self._advance(row, tick)
        except SettlementFailed as err:
            self._fail(err, tick)
        except (ChainUnavailable, ReadingStoreError):
            raise
        except FeeAboveCap as err:
            tick.note(t, err.code, err.message)
            tick.emit(f"interval {t}: waiting: {err.message}")
        except (NonceConsumed, TransactionNotMined) as err:
            tick.note(t, err.code, err.message)
            tick.emit(f"interval {t}: {err.message}; retrying")
        except LedgerError as err:
            self._fail(SettlementFailed(t, revert_reason(err), str(err)), tick)
        except Exception as err:  # a bug must not stop the other intervals
            log.exception("interval %d: unexpected error", t)
            tick.note(t, "internal_error", f"{type(err).__name__}: {err}")

    def _discover(self, now: int, latest: int) -> None:
        """Add intervals committed since the last scan up to the final block when the
        latest is ``latest`` (``IntervalCommitted`` events)."""
        scanned = self.store.get_meta("scan_block")
        start = self.chain.start_block if scanned is None else int(scanned) + 1
        final = self.chain.final_block(latest)  # only final commits: they cannot vanish
        while start <= final:
            stop = min(final, start + SCAN_STEP_BLOCKS - 1)
            for c in self.chain.committed_intervals(start, stop):
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

    def _advance(self, row: IntervalRow, tick: Tick) -> None:
        t, now = row.interval, tick.now
        info = self._status(t, now)
        if info.status == "settled":
            if self.chunks.settled_final(t):
                self._finish(t, tick)
            return
        if info.status == "none":
            raise SettlementFailed(
                t,
                "interval_not_committed",
                "the chain has no commit for this interval any more (a different or reset chain?)",
            )
        _, end = self.chain.window(t)
        if now < end:
            self._set_state(row, WAITING, now)
            return
        if now < info.deadline:
            self._set_state(row, READING, now)
            self.batcher.submit(t, tick)
            return
        self._set_state(row, SETTLING, now)
        late = self.batcher.sync(t)
        if late:
            self.store.mark_readings(
                t,
                [r.participant for r in late],
                MISSED,
                reason="the reading deadline passed before the reading could be submitted",
            )
            tick.emit(f"interval {t}: {len(late)} readings missed the deadline")
        if self.chunks.settle(t, tick, info):
            self._finish(t, tick)

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
        info = self.chain.interval(t)
        if info.status == "committed":
            self._committed[t] = info
        return info

    def _set_state(self, row: IntervalRow, state: str, now: int) -> None:
        if row.state != state:
            self.store.set_interval_state(row.interval, state, now)
            log.info("interval %d: %s", row.interval, state)

    def _fail(self, err: SettlementFailed, tick: Tick) -> None:
        self.store.set_interval_state(
            err.interval, FAILED, tick.now, error_code=err.reason, error_detail=err.detail
        )
        log.error("interval %d FAILED (%s): %s", err.interval, err.reason, err.detail)
        self._forget(err.interval)
        tick.emit(f"interval {err.interval}: FAILED ({err.reason}): {err.detail}")

    def _finish(self, t: int, tick: Tick) -> None:
        leftover = self.batcher.sync(t)
        if leftover:
            self.store.mark_readings(
                t,
                [r.participant for r in leftover],
                MISSED,
                reason="the interval was settled before the reading was submitted",
            )
        self.store.set_interval_state(t, SETTLED, tick.now)
        row = self.store.get_interval(t)
        txs = f"{row.reading_txs} reading and {row.settle_txs} settle transactions" if row else ""
        tick.emit(f"interval {t}: settled ({txs} from this service)")
        log.info("interval %d: settled", t)
        self._forget(t)

    def _forget(self, t: int) -> None:
        """Drop what is cached about ``t`` (a retry re-derives everything from the chain)."""
        self.chunks.forget(t)
        self.batcher.forget(t)
        self._committed.pop(t, None)

    def retry_failed(self, interval: int | None = None) -> list[int]:
        """Put failed intervals (or one) back in the loop; return those reset."""
        reset = []
        for row in self.store.intervals((FAILED,)):
            if interval is None or row.interval == interval:
                self.store.set_interval_state(row.interval, WAITING, self.clock.now())
                reset.append(row.interval)
        return reset

    # -- views -----------------------------------------------------------------------------

    def interval_status(self, t: int) -> dict[str, Any]:
        """The service's own view of interval ``t``: state, readings by status, last error."""
        row = self.store.get_interval(t)
        counts = self.store.reading_counts(t)
        return {
            "state": row.state if row else None,
            "readings": {
                s: counts.get(s, 0)
                for s in (QUEUED, ONCHAIN, OFFCHAIN, SUPERSEDED, REJECTED, MISSED)
            },
            "readingTransactions": row.reading_txs if row else 0,
            "settleTransactions": row.settle_txs if row else 0,
            "costs": [c.to_json() for c in self.store.costs(t)],
            "error": (
                {"code": row.error_code, "detail": row.error_detail}
                if row and row.error_code
                else None
            ),
        }

    def report(self, t: int, *, escrow: bool = True) -> SettlementReport:
        """The reconciliation report of interval ``t`` from on-chain events (see
        :mod:`settlement.report`); UnknownInterval if it was never committed."""
        events = read_chain(
            f"reading the events of interval {t}",
            lambda: self.chain.interval_events(t, escrow=escrow),
        )
        if not events.committed and events.state.status == "none":
            raise UnknownInterval(f"interval {t} was never committed")
        off_chain = {
            r.participant: Reading(r.participant, t, r.imported_wh, r.exported_wh)
            for r in self.store.readings(t, OFFCHAIN)
        }
        return build_report(events, off_chain)

    def published_readings(self, t: int) -> list[StoredReading]:
        """Every reading of interval ``t`` the service accepted, whatever became of it, by
        participant index: what ``GET /intervals/{t}/readings`` publishes. The ``offchain``
        ones are the only copy of those readings anyone publishes; each carries the meter
        key's signature, so the audit checks them as it checks the ones on-chain."""
        return self.store.readings(t)

    def intervals(self) -> list[IntervalRow]:
        """Every interval the service knows, ascending."""
        return self.store.intervals()


__all__ = ["SettlementService"]
