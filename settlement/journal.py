"""The settlement account's write-ahead transaction journal: the ``txs`` table.

:class:`~settlement.tx.TxSender` records each signed transaction (nonce, hash, fees) *before*
it is broadcast, so after a crash the next process knows what may still be in flight and
waits for it (or replaces it) before it reads the chain and decides anything. This is what
makes a kill between "send" and "mark" safe. A transaction is ``sent`` until its receipt is
seen (``mined``) or another transaction with its nonce is mined (``dropped``).

A mined transaction keeps the gas it used and the price per gas it paid (the receipt's
``effectiveGasPrice``: base fee plus the tip it got), so what settlement cost is known per
transaction and per interval (:meth:`TxJournal.costs`).

The table lives in the reading store's SQLite file (:class:`settlement.store.ReadingStore`
is a :class:`TxJournal`), so one ``--db`` holds all the service's state. Fees in wei are
stored as decimal text: they can exceed SQLite's signed 64-bit integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
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
    gas_used      INTEGER,
    gas_price_paid TEXT
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
    gas_price_paid: int | None = None
    """The receipt's ``effectiveGasPrice`` (wei per gas), once mined."""

    @property
    def fee_paid_wei(self) -> int | None:
        """What the transaction cost its sender, once mined: gas used times the price paid."""
        if self.gas_used is None or self.gas_price_paid is None:
            return None
        return self.gas_used * self.gas_price_paid


@dataclass(frozen=True, slots=True)
class TxCosts:
    """What the mined transactions of one kind (``readings``, ``settle``) cost: their number,
    gas used, and fees paid in wei (``unpriced``: mined ones whose price was not recorded,
    journalled before prices were)."""

    kind: str
    transactions: int
    gas_used: int
    fees_paid_wei: int
    max_gas_price_paid: int
    unpriced: int = 0

    def to_json(self) -> dict[str, int | str]:
        """The costs as JSON (wei as decimal strings: they exceed 2**53)."""
        return {
            "kind": self.kind,
            "transactions": self.transactions,
            "gasUsed": self.gas_used,
            "feesPaidWei": str(self.fees_paid_wei),
            "maxGasPricePaidWei": str(self.max_gas_price_paid),
            "unpriced": self.unpriced,
        }


_TX_COLUMNS = (
    "hash, sender, nonce, kind, interval, gas_limit, max_fee, priority_fee, gas_price, "
    "sent_at, state, block_number, status, gas_used, gas_price_paid"
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
        gas_price_paid=_opt_int(row[14]),
    )


class TxJournal(SqliteStore):
    """The ``txs`` journal of a SQLite store whose schema includes :data:`JOURNAL_SCHEMA`
    (and the write helpers such a store's own tables use too)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        # A journal written before prices were recorded lacks the column: add it.
        columns = {row[1] for row in self._read("PRAGMA table_info(txs)")}
        if "gas_price_paid" not in columns:
            self._write("ALTER TABLE txs ADD COLUMN gas_price_paid TEXT")

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
            f"INSERT OR REPLACE INTO txs ({_TX_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                _opt_str(tx.gas_price_paid),
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

    def mark_tx_mined(
        self,
        tx_hash: str,
        block_number: int,
        status: int,
        gas_used: int,
        gas_price_paid: int | None = None,
    ) -> None:
        """Record that ``tx_hash`` was mined, with the gas it used and the price per gas it
        paid (the receipt's ``effectiveGasPrice``; None when the node gave none)."""
        self._write(
            "UPDATE txs SET state = ?, block_number = ?, status = ?, gas_used = ?, "
            "gas_price_paid = ? WHERE hash = ?",
            (TX_MINED, block_number, status, gas_used, _opt_str(gas_price_paid), tx_hash),
        )

    def costs(self, interval: int) -> list[TxCosts]:
        """What interval ``interval``'s mined transactions cost, per kind (in the order the
        kinds were first sent)."""
        totals: dict[str, list[int]] = {}
        for tx in self.txs(interval):
            if tx.state != TX_MINED or tx.gas_used is None:
                continue
            row = totals.setdefault(tx.kind, [0, 0, 0, 0, 0])
            row[0] += 1
            row[1] += tx.gas_used
            if tx.gas_price_paid is None:
                row[4] += 1
            else:
                row[2] += tx.gas_used * tx.gas_price_paid
                row[3] = max(row[3], tx.gas_price_paid)
        return [TxCosts(kind, *row) for kind, row in totals.items()]

    def mark_txs_dropped(self, sender: str, nonce: int, keep: str | None = None) -> None:
        """Mark every unconfirmed transaction of ``sender`` at ``nonce`` (except ``keep``) dropped:
        another transaction with that nonce was mined."""
        self._write(
            "UPDATE txs SET state = ? WHERE sender = ? AND nonce = ? AND state = ? "
            "AND hash IS NOT ?",
            (TX_DROPPED, sender, nonce, TX_SENT, keep),
        )


__all__ = [
    "JOURNAL_SCHEMA",
    "TX_DROPPED",
    "TX_MINED",
    "TX_SENT",
    "TxCosts",
    "TxJournal",
    "TxRecord",
]
