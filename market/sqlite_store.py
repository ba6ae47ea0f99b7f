"""The SQLite plumbing the two durable stores share: orders (:mod:`market.store`) and meter
readings (:mod:`settlement.store`).

One database file in WAL mode with ``synchronous=FULL``: a committed write survives a power
cut, not only a killed process. Writes go through one connection behind a lock, in
``BEGIN IMMEDIATE`` … ``COMMIT`` transactions rolled back on any exception; reads go through
a second connection behind its own lock, so a read never waits for a writer's fsync. A
``meta`` table, which every subclass's schema must create, binds the file to one deployment
(schema version, chain id, market address), so a store is never reused against another
chain or market by mistake.

A subclass names itself (``kind``, used in messages), its exception class (``error``, and
``duplicate`` for constraint violations, when they mean something of their own) and its
``schema``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from ledger.errors import WattledgerError


class SqliteStore:
    """A WAL-mode SQLite file with one writer and one reader connection; see the module."""

    kind: ClassVar[str] = "store"
    error: ClassVar[type[WattledgerError]] = WattledgerError
    duplicate: ClassVar[type[WattledgerError] | None] = None
    """Raised for a constraint violation (``sqlite3.IntegrityError``); None: ``error``."""
    schema: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._writer = self._connect()
            with self._writer:
                self._writer.executescript(self.schema)
            self._reader = self._connect()
        except sqlite3.Error as err:
            raise self.error(
                f"Cannot open the {self.kind} {self.path}: {err}",
                hint="Check that the folder exists and is writable.",
            ) from None
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def close(self) -> None:
        """Close both connections."""
        with self._write_lock, self._read_lock:
            self._writer.close()
            self._reader.close()

    def pragma(self, name: str) -> Any:
        """The value of a PRAGMA on the writer connection (tests and diagnostics)."""
        with self._write_lock:
            return self._writer.execute(f"PRAGMA {name}").fetchone()[0]

    # -- writing -----------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        """``with self._transaction() as cur:`` one durable write transaction."""
        return _Transaction(self)

    def _rollback(self) -> None:
        """Roll the writer back (the caller holds the write lock)."""
        if self._writer.in_transaction:
            self._writer.execute("ROLLBACK")

    def _write_failed(self, err: sqlite3.Error) -> WattledgerError:
        if isinstance(err, sqlite3.IntegrityError) and self.duplicate is not None:
            return self.duplicate(f"{self.kind}: {err}")
        return self.error(f"{self.kind} write failed: {err}")

    def bind_deployment(self, chain_id: int, market_address: str) -> None:
        """Record which deployment this store belongs to; refuse another one's store."""
        want = {
            "schema": str(self.schema_version),
            "chain_id": str(chain_id),
            "market": market_address.lower(),
        }
        with self._transaction() as cur:
            have = dict(cur.execute("SELECT key, value FROM meta").fetchall())
            for key, value in want.items():
                if key in have and have[key] != value:
                    raise self.error(
                        f"The {self.kind} {self.path} belongs to {key} {have[key]}, not {value}.",
                        hint="Use another --db file for this chain or market deployment.",
                    )
            cur.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", list(want.items())
            )

    # -- reading -----------------------------------------------------------------------------

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._read_lock:
            try:
                return self._reader.execute(sql, args).fetchall()
            except sqlite3.Error as err:
                raise self.error(f"{self.kind} read failed: {err}") from None


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` on a store's writer, rolled back on any exception;
    SQLite errors come out as the store's own exception class."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def __enter__(self) -> sqlite3.Cursor:
        store = self._store
        store._write_lock.acquire()
        try:
            store._writer.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            store._write_lock.release()
            raise store._write_failed(err) from None
        except BaseException:
            store._write_lock.release()
            raise
        return store._writer.cursor()

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, _tb: Any
    ) -> None:
        store = self._store
        try:
            if kind is None:
                try:
                    store._writer.execute("COMMIT")
                except sqlite3.Error as commit_err:
                    store._rollback()
                    raise store.error(f"{store.kind} commit failed: {commit_err}") from None
            else:
                store._rollback()
                if isinstance(err, sqlite3.Error):
                    raise store._write_failed(err) from err
        finally:
            store._write_lock.release()


__all__ = ["SqliteStore"]
