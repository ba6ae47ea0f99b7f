"""The settlement account's write-ahead transaction journal: the ``txs`` table.

:class:`~settlement.tx.TxSender` records each signed transaction (nonce, hash, fees) *before*
it is broadcast, so after a crash the next process knows what may still be in flight and
waits for it (or replaces it) before it reads the chain and decides anything. This is what
makes a kill between "send" and "mark" safe. A transaction is ``sent`` until its receipt is
seen (``mined``) or another transaction with its nonce is mined (``dropped``).

The table lives in the reading store's SQLite file (:class:`settlement.store.ReadingStore`
is a :class:`TxJournal`), so one ``--db`` holds all the service's state. Fees in wei are
stored as decimal text: they can exceed SQLite's signed 64-bit integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from market.sqlite_store import SqliteStore

TX_SENT = "sent"
TX_MINED = "mined"
TX_DROPPED = "dropped"

JOURNAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS txs (
    hash          TEXT PRIMARY KEY,
    sender        TEXT NOT NULL,
    nonce         INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    interval      INTEGER,
    gas_limit     INTEGER NOT NULL,
    max_fee       TEXT,
    priority_fee  TEXT,
    gas_price     TEXT,
    sent_at       REAL NOT NULL,
    state         TEXT NOT NULL,
    block_number  INTEGER,
    status        INTEGER,
    gas_used      INTEGER
);
CREATE INDEX IF NOT EXISTS txs_by_state ON txs (sender, state, nonce);
"""
"""The journal's table, part of the schema of a store that is a :class:`TxJournal`."""


@dataclass(frozen=True, slots=True)
class TxRecord:
    """One signed transaction of the service's journal (fees in wei, as ints)."""

    hash: str
    sender: str
    nonce: int
    kind: str
    interval: int | None
    gas_limit: int
    max_fee: int | None
    priority_fee: int | None
    gas_price: int | None
    sent_at: float
    state: str = TX_SENT
    block_number: int | None = None
    status: int | None = None
    gas_used: int | None = None


_TX_COLUMNS = (
    "hash, sender, nonce, kind, interval, gas_limit, max_fee, priority_fee, gas_price, "
    "sent_at, state, block_number, status, gas_used"
)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_str(value: int | None) -> str | None:
    return None if value is None else str(value)


def _tx(row: Sequence[Any]) -> TxRecord:
    return TxRecord(
        hash=row[0],
        sender=row[1],
        nonce=row[2],
        kind=row[3],
        interval=row[4],
        gas_limit=row[5],
        max_fee=_opt_int(row[6]),
        priority_fee=_opt_int(row[7]),
        gas_price=_opt_int(row[8]),
        sent_at=row[9],
        state=row[10],
        block_number=row[11],
        status=row[12],
        gas_used=row[13],
    )


class TxJournal(SqliteStore):
    """The ``txs`` journal of a SQLite store whose schema includes :data:`JOURNAL_SCHEMA`
    (and the write helpers such a store's own tables use too)."""

    def _write(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement in its own transaction; return rows changed."""
        return self._write_many([(sql, args)])

    def _write_many(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> int:
        """Run statements in one ``BEGIN IMMEDIATE`` transaction; return rows changed."""
        with self._transaction() as cur:
            return sum(cur.execute(sql, args).rowcount for sql, args in statements)

    def record_tx(self, tx: TxRecord) -> None:
        """Journal a signed transaction before it is broadcast."""
        self._write(
            f"INSERT OR REPLACE INTO txs ({_TX_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                tx.hash,
                tx.sender,
                tx.nonce,
                tx.kind,
                tx.interval,
                tx.gas_limit,
                _opt_str(tx.max_fee),
                _opt_str(tx.priority_fee),
                _opt_str(tx.gas_price),
                tx.sent_at,
                tx.state,
                tx.block_number,
                tx.status,
                tx.gas_used,
            ),
        )

    def unconfirmed_txs(self, sender: str) -> list[TxRecord]:
        """Journalled transactions of ``sender`` not known to be mined or dropped, by nonce."""
        rows = self._read(
            f"SELECT {_TX_COLUMNS} FROM txs WHERE sender = ? AND state = ? ORDER BY nonce, sent_at",
            (sender, TX_SENT),
        )
        return [_tx(r) for r in rows]

    def txs(self, interval: int | None = None) -> list[TxRecord]:
        """Every journalled transaction (of ``interval``), in the order they were sent."""
        sql = f"SELECT {_TX_COLUMNS} FROM txs"
        args: list[Any] = []
        if interval is not None:
            sql += " WHERE interval = ?"
            args.append(interval)
        return [_tx(r) for r in self._read(sql + " ORDER BY sent_at", args)]

    def mark_tx_mined(self, tx_hash: str, block_number: int, status: int, gas_used: int) -> None:
        """Record that ``tx_hash`` was mined."""
        self._write(
            "UPDATE txs SET state = ?, block_number = ?, status = ?, gas_used = ? WHERE hash = ?",
            (TX_MINED, block_number, status, gas_used, tx_hash),
        )

    def mark_txs_dropped(self, sender: str, nonce: int, keep: str | None = None) -> None:
        """Mark every unconfirmed transaction of ``sender`` at ``nonce`` (except ``keep``) dropped:
        another transaction with that nonce was mined."""
        self._write(
            "UPDATE txs SET state = ? WHERE sender = ? AND nonce = ? AND state = ? "
            "AND hash IS NOT ?",
            (TX_DROPPED, sender, nonce, TX_SENT, keep),
        )


__all__ = ["JOURNAL_SCHEMA", "TX_DROPPED", "TX_MINED", "TX_SENT", "TxJournal", "TxRecord"]
