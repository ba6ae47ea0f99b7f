"""The durable order store: SQLite in WAL mode, one file per market deployment.

Everything the market service must not forget lives here: accepted orders with their
signatures and arrival sequence, every used nonce, cancels, each interval's gate closure
(frozen order set, book root, clearing result, commit transaction), and each participant's
registration request (:mod:`market.registrar`). The service keeps hot
copies in memory and rebuilds them from the store at start (:meth:`OrderStore.open_orders`,
:meth:`OrderStore.used_nonces`, :meth:`OrderStore.max_seq`).

Durability
    ``journal_mode=WAL`` with ``synchronous=FULL``: SQLite syncs the WAL to disk at every
    commit, so a transaction that returned has survived a process kill (SIGKILL) *and* an OS
    crash or power cut. ``synchronous=NORMAL`` would be enough for a process kill only; the
    API promises that a ``201`` order is durable, and an operator cannot tell a customer that
    the order it was told was accepted vanished in a power cut. The cost of FULL is one fsync
    per commit (about 1.7 ms on the development machine); the API amortises it with group
    commit (many orders per transaction, see ``market.http.group_commit``), so throughput
    does not suffer.

Threads
    One writer connection behind a lock and one reader connection behind another, both
    ``check_same_thread=False``; WAL lets the reader run while the writer commits. Amounts
    that can exceed SQLite's signed 64-bit integers (nonce, expiry) are stored as decimal text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ledger.errors import WattledgerError
from ledger.grid_nodes import DEFAULT_NODE
from market.orders import DROPPED as DROPPED_STATUS
from market.orders import EXPIRED as EXPIRED_STATUS
from market.sqlite_store import SqliteStore

SCHEMA_VERSION = 2
"""2: orders carry their signed grid ``node`` (an order id of version 1 hashes no node)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orders (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    participant  TEXT NOT NULL,
    interval     INTEGER NOT NULL,
    side         INTEGER NOT NULL,
    quantity_wh  INTEGER NOT NULL,
    price_per_wh INTEGER NOT NULL,
    nonce        TEXT NOT NULL,
    expiry       TEXT NOT NULL,
    signature    TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    status       TEXT NOT NULL,
    filled_wh    INTEGER,
    cancel       TEXT,
    receipt      TEXT,
    node         TEXT NOT NULL DEFAULT 'root'
);
CREATE INDEX IF NOT EXISTS orders_by_interval ON orders (interval, status);
CREATE INDEX IF NOT EXISTS orders_by_participant ON orders (participant, seq);
CREATE INDEX IF NOT EXISTS orders_open ON orders (status) WHERE status = 'open';
CREATE TABLE IF NOT EXISTS nonces (
    signer TEXT NOT NULL,
    nonce  TEXT NOT NULL,
    PRIMARY KEY (signer, nonce)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS intervals (
    interval     INTEGER PRIMARY KEY,
    state        TEXT NOT NULL,
    closed_at    INTEGER NOT NULL,
    book_root    TEXT NOT NULL,
    clearing     TEXT,
    commit_tx    TEXT,
    commit_block INTEGER
);
CREATE TABLE IF NOT EXISTS registrations (
    participant  TEXT PRIMARY KEY,
    meter        TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    expiry       TEXT NOT NULL,
    digest       TEXT NOT NULL,
    signature    TEXT NOT NULL,
    status       TEXT NOT NULL,
    reason       TEXT,
    tx_hash      TEXT,
    received_at  INTEGER NOT NULL,
    decided_at   INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS grid_documents (
    interval     INTEGER PRIMARY KEY,
    document     BLOB NOT NULL,
    signature    TEXT NOT NULL,
    received_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS participant_nodes (
    participant  TEXT PRIMARY KEY,
    node         TEXT NOT NULL
) WITHOUT ROWID;
"""

OPEN = "open"
"""Accepted and waiting for its interval's gate closure."""
CANCELLED = "cancelled"
"""Cancelled by its participant before gate closure."""
EXCLUDED = "excluded"
"""Left out at gate closure because its participant's collateral no longer covered it."""
CLOSED = "closed"
"""Part of its interval's frozen, published book (``filled_wh`` says how much traded)."""
EXPIRED = EXPIRED_STATUS
"""Its ``expiry`` was before its interval's gate closure: published with the frozen book
(and under its ``bookRoot``), but left out of the clearing (``filled_wh`` 0)."""
DROPPED = DROPPED_STATUS
"""Its participant defaulted between gate closure and commit (its free balance no longer
covered what its trades lock, :mod:`market.defaulters`): published with the frozen book (and
under its ``bookRoot``), but left out of the re-clearing that was committed (``filled_wh`` 0)."""

ORDER_STATUSES = (OPEN, CANCELLED, EXCLUDED, CLOSED, EXPIRED, DROPPED)
PUBLISHED_STATUSES = (CLOSED, EXPIRED, DROPPED)
"""The statuses of the orders of an interval's published set (the leaves of its root)."""

FROZEN = "frozen"
"""Interval state: order set frozen and published; commit pending."""
COMMITTED = "committed"
"""Interval state: cleared and committed on-chain."""
EMPTY = "empty"
"""Interval state: closed with an empty published set (no order, or every order left out for
collateral); nothing is committed on-chain. An interval whose gate has passed with no open
order is answered as ``empty`` without a record (:mod:`market.views`)."""


class StoreError(WattledgerError):
    """Raised when the order store cannot be opened or written, or belongs elsewhere."""

    code = "store_error"


class StoredOrder(NamedTuple):
    """One accepted order as stored. ``id`` is its EIP-712 order hash (``0x`` hex).

    A named tuple rather than a dataclass on purpose: the service holds every open order in
    memory, and a tuple of plain values is one the garbage collector stops tracking, so a
    full collection does not walk the whole book (tens of milliseconds for 30,000 slotted
    dataclass orders, a pause every request waiting then sees).
    """

    id: str
    seq: int
    participant: str
    interval: int
    side: int
    quantity_wh: int
    price_per_wh: int
    nonce: int
    expiry: int
    signature: str
    received_at: int
    status: str = OPEN
    filled_wh: int | None = None
    cancel: dict[str, Any] | None = None
    """The accepted cancel: ``{"cancel": message, "signature", "at", "digest", "receipt":
    {"seq", "receivedAt", "signature"}}`` (the operator's ``CancelReceipt``)."""
    receipt: str | None = None
    """The operator's signature of the order's ``OrderReceipt`` (``id``, ``seq``,
    ``received_at``); None only for an order stored before receipts existed."""
    node: str = DEFAULT_NODE
    """The grid node the order is signed for (a field of the signed ``Order``)."""


REGISTRATION_PENDING = "pending"
"""Registration request held for the registrar's review."""
REGISTRATION_REGISTERING = "registering"
"""Registration request approved; its ``registerParticipant`` transaction is not confirmed."""
REGISTRATION_REGISTERED = "registered"
"""Registration request approved and the participant registered on-chain."""
REGISTRATION_REFUSED = "refused"
"""Registration request refused (``reason`` says why); a new request may follow."""


@dataclass(frozen=True, slots=True)
class StoredRegistration:
    """A participant's latest registration request (one row per participant).

    ``digest`` is the EIP-712 digest of the signed ``Registration`` (``0x`` hex), which
    identifies the request: the same signed message sent again is the same request.
    """

    participant: str
    meter: str
    nonce: int
    expiry: int
    digest: str
    signature: str
    status: str
    reason: str | None
    tx_hash: str | None
    received_at: int
    decided_at: int | None


_REGISTRATION_COLUMNS = (
    "participant, meter, nonce, expiry, digest, signature, status, reason, tx_hash, "
    "received_at, decided_at"
)


@dataclass(frozen=True, slots=True)
class IntervalRecord:
    """One interval's gate closure as stored."""

    interval: int
    state: str
    closed_at: int
    book_root: str
    clearing: dict[str, Any] | None
    commit_tx: str | None
    commit_block: int | None


_ORDER_COLUMNS = (
    "id, seq, participant, interval, side, quantity_wh, price_per_wh, nonce, expiry, "
    "signature, received_at, status, filled_wh, cancel, receipt, node"
)
_INSERT_ORDER = (
    "INSERT INTO orders (id, seq, participant, interval, side, quantity_wh, price_per_wh, "
    "nonce, expiry, signature, received_at, status, receipt, node) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_NONCE = "INSERT INTO nonces (signer, nonce) VALUES (?, ?)"


def _order(row: Sequence[Any]) -> StoredOrder:
    return StoredOrder(
        id=row[0],
        seq=row[1],
        participant=row[2],
        interval=row[3],
        side=row[4],
        quantity_wh=row[5],
        price_per_wh=row[6],
        nonce=int(row[7]),
        expiry=int(row[8]),
        signature=row[9],
        received_at=row[10],
        status=row[11],
        filled_wh=row[12],
        cancel=json.loads(row[13]) if row[13] else None,
        receipt=row[14],
        node=row[15],
    )


def _interval(row: Sequence[Any]) -> IntervalRecord:
    return IntervalRecord(
        interval=row[0],
        state=row[1],
        closed_at=row[2],
        book_root=row[3],
        clearing=json.loads(row[4]) if row[4] else None,
        commit_tx=row[5],
        commit_block=row[6],
    )


class OrderStore(SqliteStore):
    """SQLite (WAL, ``synchronous=FULL``) store of orders, nonces and gate closures."""

    kind = "order store"
    error = StoreError
    schema = _SCHEMA
    schema_version = SCHEMA_VERSION

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._add_columns()

    def _add_columns(self) -> None:
        """Give a store made before receipts existed its ``receipt`` column (its orders keep
        none: no receipt was signed for them), and one made before orders named their node
        its ``node`` column (so it opens and :meth:`bind_deployment` can refuse it: its
        schema version is older)."""
        with self._transaction() as cur:
            columns = {row[1] for row in cur.execute("PRAGMA table_info(orders)").fetchall()}
            if "receipt" not in columns:
                cur.execute("ALTER TABLE orders ADD COLUMN receipt TEXT")
            if "node" not in columns:
                cur.execute("ALTER TABLE orders ADD COLUMN node TEXT NOT NULL DEFAULT 'root'")

    def insert_orders(self, orders: Sequence[StoredOrder]) -> None:
        """Store accepted orders and their nonces in one durable transaction.

        Raises StoreError (nothing stored) on a duplicate id, seq or nonce, or a disk error.
        """
        with self._transaction() as cur:
            cur.executemany(
                _INSERT_ORDER,
                [
                    (
                        o.id,
                        o.seq,
                        o.participant,
                        o.interval,
                        o.side,
                        o.quantity_wh,
                        o.price_per_wh,
                        str(o.nonce),
                        str(o.expiry),
                        o.signature,
                        o.received_at,
                        o.status,
                        o.receipt,
                        o.node,
                    )
                    for o in orders
                ],
            )
            cur.executemany(_INSERT_NONCE, [(o.participant, str(o.nonce)) for o in orders])

    def cancel_order(self, order_id: str, signer: str, nonce: int, cancel: dict[str, Any]) -> None:
        """Mark an open order cancelled and use the cancel's nonce, in one transaction."""
        with self._transaction() as cur:
            cur.execute(_INSERT_NONCE, (signer, str(nonce)))
            cur.execute(
                "UPDATE orders SET status = ?, cancel = ? WHERE id = ? AND status = ?",
                (CANCELLED, json.dumps(cancel, sort_keys=True), order_id, OPEN),
            )
            if cur.rowcount != 1:
                raise StoreError(f"order {order_id} is not open")

    def save_registration(self, record: StoredRegistration) -> None:
        """Store ``record`` as its participant's registration request (replacing a refused
        one) and use its nonce, in one durable transaction; StoreError (nothing stored) when
        the nonce was used."""
        r = record
        with self._transaction() as cur:
            cur.execute(_INSERT_NONCE, (r.participant, str(r.nonce)))
            cur.execute(
                f"INSERT OR REPLACE INTO registrations ({_REGISTRATION_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    r.participant,
                    r.meter,
                    str(r.nonce),
                    str(r.expiry),
                    r.digest,
                    r.signature,
                    r.status,
                    r.reason,
                    r.tx_hash,
                    r.received_at,
                    r.decided_at,
                ),
            )

    def update_registration(
        self,
        participant: str,
        status: str,
        *,
        reason: str | None = None,
        tx_hash: str | None = None,
        decided_at: int | None = None,
    ) -> None:
        """Set the status (and reason, transaction, decision time) of a stored request."""
        with self._transaction() as cur:
            cur.execute(
                "UPDATE registrations SET status = ?, reason = ?, tx_hash = ?, decided_at = ? "
                "WHERE participant = ?",
                (status, reason, tx_hash, decided_at, participant),
            )
            if cur.rowcount != 1:
                raise StoreError(f"no registration request of {participant}")

    def get_registration(self, participant: str) -> StoredRegistration | None:
        """The registration request of ``participant`` (lower-case ``0x``), or None."""
        rows = self._read(
            f"SELECT {_REGISTRATION_COLUMNS} FROM registrations WHERE participant = ?",
            (participant,),
        )
        if not rows:
            return None
        row = rows[0]
        return StoredRegistration(
            participant=row[0],
            meter=row[1],
            nonce=int(row[2]),
            expiry=int(row[3]),
            digest=row[4],
            signature=row[5],
            status=row[6],
            reason=row[7],
            tx_hash=row[8],
            received_at=row[9],
            decided_at=row[10],
        )

    def use_nonce(self, signer: str, nonce: int) -> None:
        """Use ``signer``'s ``nonce`` (operator actions); StoreError if already used."""
        with self._transaction() as cur:
            cur.execute(_INSERT_NONCE, (signer, str(nonce)))

    def freeze_interval(
        self,
        interval: int,
        closed_at: int,
        book_root: str,
        included: Sequence[str],
        excluded: Sequence[str],
        clearing: dict[str, Any],
        fills: dict[str, int],
        expired: Sequence[str] = (),
    ) -> None:
        """Record gate closure of ``interval`` in one transaction.

        The frozen order set (``included``) becomes ``closed`` with its fill, except the
        ``expired`` ones among it (``expired``, fill 0); left-out orders ``excluded``; the
        interval gets its book root and clearing result, in state ``frozen`` (``empty``
        without orders) until :meth:`record_commit`.
        """
        state = FROZEN if included else EMPTY
        dead = set(expired)
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO intervals (interval, state, closed_at, book_root, clearing) "
                "VALUES (?,?,?,?,?)",
                (interval, state, closed_at, book_root, json.dumps(clearing, sort_keys=True)),
            )
            cur.executemany(
                "UPDATE orders SET status = 'closed', filled_wh = ? WHERE id = ? "
                "AND status = 'open'",
                [(fills.get(i, 0), i) for i in included if i not in dead],
            )
            cur.executemany(
                "UPDATE orders SET status = 'expired', filled_wh = 0 WHERE id = ? "
                "AND status = 'open'",
                [(i,) for i in included if i in dead],
            )
            cur.executemany(
                "UPDATE orders SET status = 'excluded' WHERE id = ? AND status = 'open'",
                [(i,) for i in excluded],
            )

    def record_defaults(
        self,
        interval: int,
        clearing: dict[str, Any],
        fills: dict[str, int],
        dropped: Sequence[str],
    ) -> None:
        """Record the re-clearing of a frozen ``interval`` without its defaulters, in one
        transaction: the ``dropped`` orders (``closed`` ones of the published set) become
        ``dropped`` with fill 0, every other ``closed`` order gets its fill from ``fills`` (0
        when absent), and the interval's clearing is replaced by ``clearing``."""
        gone = set(dropped)
        with self._transaction() as cur:
            cur.execute(
                "UPDATE intervals SET clearing = ? WHERE interval = ? AND state = ?",
                (json.dumps(clearing, sort_keys=True), interval, FROZEN),
            )
            if cur.rowcount != 1:
                raise StoreError(f"interval {interval} is not frozen")
            cur.executemany(
                "UPDATE orders SET status = 'dropped', filled_wh = 0 WHERE id = ? "
                "AND interval = ? AND status = 'closed'",
                [(i, interval) for i in gone],
            )
            cur.execute(
                "UPDATE orders SET filled_wh = 0 WHERE interval = ? AND status = 'closed'",
                (interval,),
            )
            cur.executemany(
                "UPDATE orders SET filled_wh = ? WHERE id = ? AND interval = ? "
                "AND status = 'closed'",
                [(fill, i, interval) for i, fill in fills.items() if i not in gone],
            )

    def record_commit(self, interval: int, commit_tx: str | None, commit_block: int | None) -> None:
        """Record that ``interval`` was committed on-chain (transaction and block if known)."""
        with self._transaction() as cur:
            cur.execute(
                "UPDATE intervals SET state = ?, commit_tx = ?, commit_block = ? "
                "WHERE interval = ?",
                (COMMITTED, commit_tx, commit_block, interval),
            )

    # -- reading -----------------------------------------------------------------------------

    def max_seq(self) -> int:
        """The highest arrival sequence number stored, of an order or of a cancel (both take
        their place in one sequence); 0 when empty."""
        orders = int(self._read("SELECT COALESCE(MAX(seq), 0) FROM orders")[0][0])
        cancels = self._read(
            "SELECT COALESCE(MAX(CAST(json_extract(cancel, '$.receipt.seq') AS INTEGER)), 0) "
            "FROM orders WHERE cancel IS NOT NULL"
        )[0][0]
        return max(orders, int(cancels or 0))

    def used_nonces(self) -> Iterator[tuple[str, int]]:
        """Every ``(signer, nonce)`` ever used."""
        for signer, nonce in self._read("SELECT signer, nonce FROM nonces"):
            yield signer, int(nonce)

    def open_orders(self) -> list[StoredOrder]:
        """All orders still open, in arrival order."""
        return [
            _order(r)
            for r in self._read(
                f"SELECT {_ORDER_COLUMNS} FROM orders WHERE status = 'open' ORDER BY seq"
            )
        ]

    def get_order(self, order_id: str) -> StoredOrder | None:
        """The order with hash ``order_id``, or None."""
        rows = self._read(f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id = ?", (order_id,))
        return _order(rows[0]) if rows else None

    def orders_of(
        self, participant: str, status: str | None = None, interval: int | None = None
    ) -> list[StoredOrder]:
        """``participant``'s orders in arrival order, optionally filtered."""
        sql = f"SELECT {_ORDER_COLUMNS} FROM orders WHERE participant = ?"
        args: list[Any] = [participant]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if interval is not None:
            sql += " AND interval = ?"
            args.append(interval)
        return [_order(r) for r in self._read(sql + " ORDER BY seq", args)]

    def interval_orders(self, interval: int, status: str = CLOSED) -> list[StoredOrder]:
        """Orders of ``interval`` with ``status`` in arrival order (default: the frozen book)."""
        return [
            _order(r)
            for r in self._read(
                f"SELECT {_ORDER_COLUMNS} FROM orders WHERE interval = ? AND status = ? "
                "ORDER BY seq",
                (interval, status),
            )
        ]

    def cancelled_orders(self, interval: int) -> list[StoredOrder]:
        """The orders of ``interval`` whose participants' cancels the market accepted (every
        order with a stored cancel, whatever became of it), in the order the cancels
        arrived."""
        rows = self._read(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE interval = ? AND cancel IS NOT NULL "
            "ORDER BY seq",
            (interval,),
        )
        orders = [_order(r) for r in rows]
        return sorted(orders, key=lambda o: ((o.cancel or {}).get("receipt") or {}).get("seq", 0))

    def published_orders(self, interval: int) -> list[StoredOrder]:
        """The published set of a closed ``interval`` (``closed``, ``expired`` and ``dropped``
        orders) in arrival order: the leaves of its book root."""
        return [
            _order(r)
            for r in self._read(
                f"SELECT {_ORDER_COLUMNS} FROM orders WHERE interval = ? "
                "AND status IN ('closed', 'expired', 'dropped') ORDER BY seq",
                (interval,),
            )
        ]

    def get_interval(self, interval: int) -> IntervalRecord | None:
        """The gate closure record of ``interval``, or None while its gate is open."""
        rows = self._read(
            "SELECT interval, state, closed_at, book_root, clearing, commit_tx, commit_block "
            "FROM intervals WHERE interval = ?",
            (interval,),
        )
        return _interval(rows[0]) if rows else None

    def intervals_in_state(self, state: str) -> list[int]:
        """Intervals whose record is in ``state``, ascending."""
        return [
            r[0]
            for r in self._read(
                "SELECT interval FROM intervals WHERE state = ? ORDER BY interval", (state,)
            )
        ]

    def save_grid_document(
        self, interval: int, document: bytes, signature: str, received_at: int
    ) -> None:
        """Store ``interval``'s signed grid document (canonical bytes and the grid operator's
        signature), replacing an earlier one: the caller refuses once the gate has closed."""
        with self._transaction() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO grid_documents (interval, document, signature, "
                "received_at) VALUES (?, ?, ?, ?)",
                (interval, document, signature, received_at),
            )

    def grid_document(self, interval: int) -> tuple[bytes, str] | None:
        """``interval``'s stored grid document and signature, or None."""
        rows = self._read(
            "SELECT document, signature FROM grid_documents WHERE interval = ?", (interval,)
        )
        return (bytes(rows[0][0]), str(rows[0][1])) if rows else None

    def save_node(self, participant: str, node: str) -> None:
        """Record ``participant``'s (lower-case ``0x``) grid node, replacing an earlier one."""
        with self._transaction() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO participant_nodes (participant, node) VALUES (?, ?)",
                (participant, node),
            )

    def nodes(self) -> dict[str, str]:
        """Every recorded participant's grid node (lower-case ``0x`` address → node id)."""
        rows = self._read("SELECT participant, node FROM participant_nodes")
        return {str(p): str(n) for p, n in rows}

    def last_closed_interval(self) -> int | None:
        """The highest interval whose gate has closed, or None."""
        value = self._read("SELECT MAX(interval) FROM intervals")[0][0]
        return None if value is None else int(value)


__all__ = [
    "CANCELLED",
    "CLOSED",
    "COMMITTED",
    "DROPPED",
    "EMPTY",
    "EXCLUDED",
    "EXPIRED",
    "FROZEN",
    "OPEN",
    "ORDER_STATUSES",
    "PUBLISHED_STATUSES",
    "REGISTRATION_PENDING",
    "REGISTRATION_REFUSED",
    "REGISTRATION_REGISTERED",
    "REGISTRATION_REGISTERING",
    "IntervalRecord",
    "OrderStore",
    "StoreError",
    "StoredOrder",
    "StoredRegistration",
]
