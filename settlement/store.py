"""The settlement service's durable state: SQLite in WAL mode, one file per deployment.

Two tables of its own, and the settlement account's transaction journal
(:mod:`settlement.journal`) in the same file:

``readings``
    Every accepted meter reading, written *before* ``POST /meter-readings`` (or ``:batch``,
    whose readings share one transaction) answers, with its signature, so a reading that was
    acknowledged survives a crash until it is on-chain. The
    primary key ``(interval, participant)`` is the contract's own rule (one reading per
    participant per interval), so a duplicate is refused by the store as well.
    A reading's ``status``:

    * ``queued``: accepted, not yet seen on-chain;
    * ``offchain``: accepted and kept here, not sent on-chain: its participant sold nothing
      in the interval, so settlement reads nothing of it (the contract settles on sellers'
      exports only; a buyer's import is for reporting). It is published, signed, by
      ``GET /intervals/{t}/readings`` for the audit; should the participant turn out to be
      a seller after all, it goes on-chain like a queued one;
    * ``onchain``: a ``ReadingSubmitted`` event carries exactly these values;
    * ``superseded``: another reading for the participant reached the chain first (relayed
      by someone else) with other values;
    * ``rejected``: the contract refused it (the meter key was rotated, the participant was
      deregistered) — ``reason`` says how;
    * ``missed``: the reading deadline passed before it could be submitted.

``intervals``
    What the service knows about each committed interval: deadline, trade count, its state
    (``waiting`` for delivery to end, ``reading`` window open, ``settling``, ``settled``,
    ``failed``), the last error and the transactions it took. It is a cache of chain state
    for reporting: every decision is re-made from the chain.

``txs``
    A write-ahead journal of the service's own transactions
    (:class:`~settlement.journal.TxJournal`): each signed transaction is recorded *before* it
    is broadcast.

Durability and threads follow :mod:`market.store`: ``journal_mode=WAL``,
``synchronous=FULL`` (a returned commit survives a power cut), one writer connection and one
reader connection, each behind a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import WattledgerError
from settlement.journal import JOURNAL_SCHEMA, TxJournal

SCHEMA_VERSION = 1

QUEUED = "queued"
ONCHAIN = "onchain"
SUPERSEDED = "superseded"
REJECTED = "rejected"
MISSED = "missed"
OFFCHAIN = "offchain"
READING_STATUSES = (QUEUED, ONCHAIN, OFFCHAIN, SUPERSEDED, REJECTED, MISSED)
PENDING = (QUEUED, OFFCHAIN)
"""The statuses of a reading that is not on-chain and may still go there."""

WAITING = "waiting"
READING = "reading"
SETTLING = "settling"
SETTLED = "settled"
FAILED = "failed"
INTERVAL_STATES = (WAITING, READING, SETTLING, SETTLED, FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readings (
    interval          INTEGER NOT NULL,
    participant       TEXT NOT NULL,
    imported_wh       TEXT NOT NULL,
    exported_wh       TEXT NOT NULL,
    signature         TEXT NOT NULL,
    meter             TEXT NOT NULL,
    participant_index INTEGER NOT NULL,
    received_at       INTEGER NOT NULL,
    status            TEXT NOT NULL,
    reason            TEXT,
    tx_hash           TEXT,
    block_number      INTEGER,
    PRIMARY KEY (interval, participant)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_by_status ON readings (status, interval);
CREATE TABLE IF NOT EXISTS intervals (
    interval      INTEGER PRIMARY KEY,
    state         TEXT NOT NULL,
    trade_count   INTEGER NOT NULL,
    deadline      INTEGER NOT NULL,
    reading_txs   INTEGER NOT NULL DEFAULT 0,
    settle_txs    INTEGER NOT NULL DEFAULT 0,
    error_code    TEXT,
    error_detail  TEXT,
    updated_at    INTEGER NOT NULL DEFAULT 0,
    commit_block  INTEGER
);
"""


class ReadingStoreError(WattledgerError):
    """Raised when the reading store cannot be opened or written, or belongs elsewhere."""

    code = "reading_store_error"


class DuplicateKey(ReadingStoreError):
    """Raised when a reading for the same participant and interval is already stored.

    ``interval`` and ``participant`` name the reading that collided (None when unknown), so
    a caller that wrote many at once can say which one it was.
    """

    code = "reading_store_duplicate"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        interval: int | None = None,
        participant: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.interval = interval
        self.participant = participant


@dataclass(frozen=True, slots=True)
class StoredReading:
    """One accepted reading. Addresses are lower-case ``0x`` hex; energy in Wh."""

    interval: int
    participant: str
    imported_wh: int
    exported_wh: int
    signature: str
    meter: str
    participant_index: int
    received_at: int
    status: str = QUEUED
    reason: str | None = None
    tx_hash: str | None = None
    block_number: int | None = None


@dataclass(frozen=True, slots=True)
class IntervalRow:
    """The service's record of one committed interval."""

    interval: int
    state: str
    trade_count: int
    deadline: int
    reading_txs: int
    settle_txs: int
    error_code: str | None
    error_detail: str | None
    updated_at: int
    commit_block: int | None = None


_READING_COLUMNS = (
    "interval, participant, imported_wh, exported_wh, signature, meter, participant_index, "
    "received_at, status, reason, tx_hash, block_number"
)
_INTERVAL_COLUMNS = (
    "interval, state, trade_count, deadline, reading_txs, settle_txs, error_code, "
    "error_detail, updated_at, commit_block"
)


_ADD_INTERVAL = (
    "INSERT OR IGNORE INTO intervals (interval, state, trade_count, deadline, updated_at) "
    "VALUES (?, ?, ?, ?, ?)"
)


def _reading(row: Sequence[Any]) -> StoredReading:
    return StoredReading(
        interval=row[0],
        participant=row[1],
        imported_wh=int(row[2]),
        exported_wh=int(row[3]),
        signature=row[4],
        meter=row[5],
        participant_index=row[6],
        received_at=row[7],
        status=row[8],
        reason=row[9],
        tx_hash=row[10],
        block_number=row[11],
    )


def _interval(row: Sequence[Any]) -> IntervalRow:
    return IntervalRow(*row)


def _reading_row(reading: StoredReading) -> tuple[Any, ...]:
    return (
        reading.interval,
        reading.participant,
        str(reading.imported_wh),
        str(reading.exported_wh),
        reading.signature,
        reading.meter,
        reading.participant_index,
        reading.received_at,
        reading.status,
        reading.reason,
        reading.tx_hash,
        reading.block_number,
    )


class _Ticket:
    """Readings of one caller waiting for the group commit that writes them (all or none),
    with the intervals (``interval -> (trade_count, deadline)``) to add unless known."""

    def __init__(
        self, readings: Sequence[StoredReading], intervals: Mapping[int, tuple[int, int]], now: int
    ) -> None:
        self.readings = readings
        self.intervals = intervals
        self.now = now
        self.done = threading.Event()
        self.error: ReadingStoreError | None = None

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


class ReadingStore(TxJournal):
    """SQLite (WAL, ``synchronous=FULL``) store of readings, interval states and the tx journal.

    Energy and fees are stored as decimal text: a uint64 reading or a fee in wei can exceed
    SQLite's signed 64-bit integers.
    """

    kind = "reading store"
    error = ReadingStoreError
    duplicate = DuplicateKey
    schema = _SCHEMA + JOURNAL_SCHEMA
    schema_version = SCHEMA_VERSION

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._group = threading.Condition()
        self._queue: list[_Ticket] = []
        self._group_busy = False

    # -- meta -----------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A value of the ``meta`` table, or None."""
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the ``meta`` table."""
        self._write("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- readings ---------------------------------------------------------------------------

    def insert_reading(self, reading: StoredReading) -> None:
        """Store an accepted reading durably; DuplicateKey if one is already stored."""
        self.insert_readings([reading])

    def insert_readings(
        self,
        readings: Sequence[StoredReading],
        intervals: Mapping[int, tuple[int, int]] | None = None,
        now: int = 0,
    ) -> None:
        """Store accepted readings durably in one transaction, all or none.

        ``intervals`` (``interval -> (trade_count, deadline)``) are added in state
        ``waiting`` with ``updated_at = now`` unless known, in the same transaction, so an
        accepted reading never lacks its interval's row. DuplicateKey, naming the reading,
        if any of them is stored already (or repeated); then none is stored.

        Group commit: readings arriving together from many request threads are written in
        one transaction (one fsync) by whichever thread finds the writer free; each caller
        returns only once the transaction holding its readings has committed. A duplicate
        rolls back to its caller's savepoint and fails that caller alone.
        """
        ticket = _Ticket(readings, intervals or {}, now)
        with self._group:
            self._queue.append(ticket)
            while not ticket.done.is_set() and self._group_busy:
                self._group.wait()
            if ticket.done.is_set():
                ticket.raise_error()
                return
            self._group_busy = True
        try:
            while True:
                with self._group:
                    batch, self._queue = self._queue, []
                    if not batch:
                        break
                self._write_group(batch)
        finally:
            with self._group:
                self._group_busy = False
                self._group.notify_all()
        ticket.raise_error()

    def _write_group(self, batch: list[_Ticket]) -> None:
        sql = f"INSERT INTO readings ({_READING_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                for k, ticket in enumerate(batch):
                    conn.execute(f"SAVEPOINT r{k}")
                    current: StoredReading | None = None
                    try:
                        for t, (trade_count, deadline) in ticket.intervals.items():
                            conn.execute(
                                _ADD_INTERVAL, (t, WAITING, trade_count, deadline, ticket.now)
                            )
                        for current in ticket.readings:
                            conn.execute(sql, _reading_row(current))
                    except sqlite3.IntegrityError as err:
                        conn.execute(f"ROLLBACK TO r{k}")
                        ticket.error = DuplicateKey(
                            f"reading store: {err}",
                            interval=None if current is None else current.interval,
                            participant=None if current is None else current.participant,
                        )
                    conn.execute(f"RELEASE r{k}")
                conn.execute("COMMIT")
            except sqlite3.Error as err:
                self._rollback()
                for ticket in batch:
                    ticket.error = ReadingStoreError(f"reading store write failed: {err}")
            except BaseException as err:
                self._rollback()
                for ticket in batch:
                    ticket.error = ReadingStoreError(f"reading store write failed: {err!r}")
                raise
            finally:
                with self._group:
                    for ticket in batch:
                        ticket.done.set()
                    self._group.notify_all()

    def get_reading(self, interval: int, participant: str) -> StoredReading | None:
        """The stored reading of ``participant`` for ``interval``, or None."""
        rows = self._read(
            f"SELECT {_READING_COLUMNS} FROM readings WHERE interval = ? AND participant = ?",
            (interval, participant),
        )
        return _reading(rows[0]) if rows else None

    def readings_of(self, interval: int, participants: Sequence[str]) -> dict[str, StoredReading]:
        """The stored readings of ``participants`` for ``interval``, by participant."""
        found: dict[str, StoredReading] = {}
        for k in range(0, len(participants), 500):  # SQLite's limit on bound parameters
            chunk = participants[k : k + 500]
            rows = self._read(
                f"SELECT {_READING_COLUMNS} FROM readings WHERE interval = ? "
                f"AND participant IN ({','.join('?' * len(chunk))})",
                (interval, *chunk),
            )
            found.update((r.participant, r) for r in map(_reading, rows))
        return found

    def readings(
        self, interval: int, status: str | Sequence[str] | None = None
    ) -> list[StoredReading]:
        """Readings of ``interval`` (optionally with ``status``, or any of several) by
        participant index."""
        sql = f"SELECT {_READING_COLUMNS} FROM readings WHERE interval = ?"
        args: list[Any] = [interval]
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            args.extend(statuses)
        return [_reading(r) for r in self._read(sql + " ORDER BY participant_index", args)]

    def reading_counts(self, interval: int) -> dict[str, int]:
        """Number of readings of ``interval`` per status."""
        rows = self._read(
            "SELECT status, COUNT(*) FROM readings WHERE interval = ? GROUP BY status",
            (interval,),
        )
        return {str(s): int(n) for s, n in rows}

    def intervals_with_queued(self) -> list[int]:
        """Intervals that have queued readings, ascending."""
        rows = self._read(
            "SELECT DISTINCT interval FROM readings WHERE status = ? ORDER BY interval", (QUEUED,)
        )
        return [int(r[0]) for r in rows]

    def mark_readings(
        self,
        interval: int,
        participants: Iterable[str],
        status: str,
        *,
        reason: str | None = None,
        tx_hash: str | None = None,
        block_number: int | None = None,
        only_queued: bool = True,
    ) -> int:
        """Set the status (and reason, transaction) of readings; return how many changed.

        With ``only_queued`` (the default) only readings still :data:`PENDING` (``queued``
        or ``offchain``) change, so a reading's final status is never overwritten."""
        sql = (
            "UPDATE readings SET status = ?, reason = ?, tx_hash = COALESCE(?, tx_hash), "
            "block_number = COALESCE(?, block_number) WHERE interval = ? AND participant = ?"
        )
        if only_queued:
            sql += f" AND status IN ('{QUEUED}', '{OFFCHAIN}')"
        return self._write_many(
            (sql, (status, reason, tx_hash, block_number, interval, p)) for p in participants
        )

    # -- intervals --------------------------------------------------------------------------

    def upsert_interval(
        self,
        interval: int,
        trade_count: int,
        deadline: int,
        now: int,
        commit_block: int | None = None,
    ) -> bool:
        """Add a committed interval in state ``waiting`` unless known; True when added.

        ``commit_block`` (where its ``IntervalCommitted`` event is) is filled in when known.
        """
        changed = self._write_many(
            [
                (
                    "INSERT OR IGNORE INTO intervals (interval, state, trade_count, deadline, "
                    "updated_at, commit_block) VALUES (?, ?, ?, ?, ?, ?)",
                    (interval, WAITING, trade_count, deadline, now, commit_block),
                ),
            ]
        )
        if not changed and commit_block is not None:
            self._write(
                "UPDATE intervals SET commit_block = ? WHERE interval = ? AND commit_block IS NULL",
                (commit_block, interval),
            )
        return changed == 1

    def get_interval(self, interval: int) -> IntervalRow | None:
        """The service's record of ``interval``, or None."""
        rows = self._read(
            f"SELECT {_INTERVAL_COLUMNS} FROM intervals WHERE interval = ?", (interval,)
        )
        return _interval(rows[0]) if rows else None

    def intervals(self, states: Sequence[str] | None = None) -> list[IntervalRow]:
        """Intervals (optionally only those in ``states``), ascending."""
        sql = f"SELECT {_INTERVAL_COLUMNS} FROM intervals"
        args: list[Any] = []
        if states:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            args.extend(states)
        return [_interval(r) for r in self._read(sql + " ORDER BY interval", args)]

    def set_interval_state(
        self,
        interval: int,
        state: str,
        now: int,
        *,
        error_code: str | None = None,
        error_detail: str | None = None,
    ) -> None:
        """Move ``interval`` to ``state``; the error columns are replaced (None clears them)."""
        self._write(
            "UPDATE intervals SET state = ?, error_code = ?, error_detail = ?, updated_at = ? "
            "WHERE interval = ?",
            (state, error_code, error_detail, now, interval),
        )

    def note_interval_error(self, interval: int, code: str, detail: str, now: int) -> None:
        """Record a temporary problem of ``interval`` without changing its state."""
        self._write(
            "UPDATE intervals SET error_code = ?, error_detail = ?, updated_at = ? "
            "WHERE interval = ?",
            (code, detail, now, interval),
        )

    def count_tx(self, interval: int, kind: str) -> None:
        """Count one mined transaction of ``kind`` (``readings`` or ``settle``) for ``interval``."""
        column = "reading_txs" if kind == "readings" else "settle_txs"
        self._write(f"UPDATE intervals SET {column} = {column} + 1 WHERE interval = ?", (interval,))


__all__ = [
    "FAILED",
    "INTERVAL_STATES",
    "MISSED",
    "OFFCHAIN",
    "ONCHAIN",
    "PENDING",
    "QUEUED",
    "READING",
    "READING_STATUSES",
    "REJECTED",
    "SETTLED",
    "SETTLING",
    "SUPERSEDED",
    "WAITING",
    "DuplicateKey",
    "IntervalRow",
    "ReadingStore",
    "ReadingStoreError",
    "StoredReading",
]
