"""Gate closure of an interval: freeze its book, clear it, publish it, commit it on-chain.

Gate closure of interval ``t`` (``gate_closure_seconds`` before ``t`` starts)
    Freeze ``t``'s open orders (intake for ``t`` stops first and waits for orders already
    being written, :meth:`market.book.OpenBook.freeze`), drop uncovered ones, build the book
    root (:mod:`ledger.merkle`), clear the book (:func:`market.clearing.clear`), store all of
    it durably (from then on ``GET /intervals/{t}/orders`` publishes the set with
    signatures), then call ``commitInterval(t, bookRoot, trades)``. A failed or interrupted
    commit leaves ``t`` ``frozen``; :meth:`GateClosure.tick` and :meth:`GateClosure.recover`
    finish it, and nothing is committed twice (the ledger's committed root is checked first).
    ``t`` is stored and published as ``committed`` only once its commit is final
    (:mod:`chain.finality`); until then it stays ``frozen``, and a commit a reorganisation
    dropped is found missing at the head and sent again.

Uncovered orders
    A participant can withdraw at any time, so gate closure re-reads the free balances of
    the interval's participants at one moment and leaves out (``excluded``) the orders of
    any participant who could no longer cover them all, or who is no longer registered: a
    commit the contract would refuse for collateral cannot be sent (DESIGN §5). Why each
    was left out is stored with the clearing (``excludedReasons``) and published with the
    interval's set (``refused``, beside the orders).

Expired orders
    The gate of an interval closes at its gate closure time, or earlier when the operator
    closes it (the interval record's ``closed_at``, published as ``closedAt``): intake
    refuses its orders from then on, however late the tick that freezes the book runs. An
    order whose ``expiry`` is before that moment is dead: it stays in the published set and
    under the ``bookRoot`` with status ``expired``, enters neither the clearing nor the
    collateral re-check, and its reservation is released like every frozen order's. An expiry
    at the gate closure itself is still live (valid until the gate closes). The audit
    re-clears the published set by the same rule (:func:`market.orders.is_expired`).

Empty intervals
    An interval whose gate passes with no open order (none came, or all were cancelled) needs
    no freezing: nothing can enter it any more, so :mod:`market.views` answers it as
    ``empty`` (empty set, volume 0) from the store and the book alone, with no record and no
    loop over past intervals. Nothing is committed on-chain for it, as for an interval whose
    every order was left out: a commit would anchor no signed order, and the contract refuses
    commits of intervals that have ended, so past empty intervals could not be committed
    anyway. An interval with at least one published order (one that does not cross, or only
    expired ones) is committed with its root and no trades.

Defaulters at commit
    The clearing is published before its commit lands, and a participant may withdraw in
    between: ``commitInterval`` would then revert ``InsufficientCollateral`` as a whole, and
    every other party's trades would be lost. So before each commit is sent, and again when
    one reverts for collateral, the free balances of every party of the set are read at one
    block; every party that can no longer cover what its trades lock is a defaulter, its
    orders become ``dropped``, and the rest of the set is cleared again, round after round
    until no party is short (:mod:`market.defaulters`, whose rule the audit re-derives). The
    re-clearing is stored and published (``defaulters``: round, block, participant, free and
    needed base units) before the commit that carries it is sent. The book root is unchanged:
    it commits the whole frozen set, dropped orders included.

Contract accounts
    An order whose signature is not its participant's ECDSA one is a contract account's
    (ERC-1271). At gate closure the account is asked at the head, as ``commitInterval`` asks
    it (``acceptsSignature``): a refuser is left out (``refused_signature``), and the block
    each accepted order was accepted at is stored and published (``signatureBlocks``). Each
    round before a commit asks again, at the round's block, for every such order the round's
    clearing fills, and a refuser is a defaulter like a party short of collateral (reason
    ``refused_signature``, with the order). A commit that reverts ``BadOrderSignature`` is
    met the same way; when the party it names still accepts when asked (the view is
    called from the market itself, so only an account that looks at the transaction's
    origin or gas can answer differently), the commit waits for the next tick.

The stored clearing
    :func:`clearing_document` is what the store keeps and ``GET /intervals/{t}/clearing``
    publishes; the trades committed on-chain are read back from it
    (:func:`committed_trades`), so a commit retried after a restart sends exactly what was
    published.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledger import eip712 as signing
from ledger.addresses import checksum_address
from ledger.errors import BadSignature
from ledger.merkle import MerkleTree
from ledger.records import SignedOrder, Trade
from market.book import OpenBook
from market.clearing import ClearingResult, clear
from market.clock import Clock
from market.collateral import Collateral, worst_case_lock_base_units
from market.defaulters import (
    INSUFFICIENT_COLLATERAL,
    REFUSED_SIGNATURE,
    commit_locks,
    shortfalls,
)
from market.grid_clearing import GridClearingResult, GridTrade, clear_grid
from market.grid_operator import GridOperator
from market.http.errors import IntervalNotClosed, ServiceUnavailable
from market.ledger_port import IntervalTiming, Ledger, LedgerCallFailed
from market.orders import Order, Side, is_expired
from market.store import CLOSED, FROZEN, IntervalRecord, OrderStore, StoredOrder, StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GateSchedule:
    """When each interval's gate closes: ``gate_closure_seconds`` before it starts."""

    timing: IntervalTiming
    gate_closure_seconds: int

    def gate_closure_at(self, interval: int) -> int:
        """Unix time (seconds) at which ``interval``'s gate closes."""
        return self.timing.start(interval) - self.gate_closure_seconds

    def current_interval(self, now_seconds: int) -> int:
        """The interval being delivered at ``now_seconds``."""
        return self.timing.current(now_seconds)


def book_tree(orders: Sequence[StoredOrder]) -> MerkleTree:
    """The Merkle tree of a frozen book, one leaf per order hash in arrival order; its root
    is the ``bookRoot`` committed on-chain."""
    return MerkleTree.of([bytes.fromhex(o.id[2:]) for o in orders])


def clearing_order(order: StoredOrder) -> Order:
    """A stored order as the clearing engine takes it."""
    return Order(
        id=order.id,
        side=Side.BUY if order.side == signing.SIDE_BUY else Side.SELL,
        quantity_wh=order.quantity_wh,  # type: ignore[arg-type]
        price_per_wh=order.price_per_wh,  # type: ignore[arg-type]
        seq=order.seq,
        participant=order.participant,
    )


def grid_outcome(result: GridClearingResult, nodes: dict[str, str]) -> dict[str, Any]:
    """The stored and published outcome of a clearing on a grid (docs/grid.md §7): the
    document's root, node prices and flows, fee revenue and congestion rent, and the node each
    cleared participant was at (the registry as the clearing used it)."""
    grid = result.grid
    return {
        "gridRoot": grid.grid_root_hex,
        "nodePrices": {
            n.id: None if p is None else str(p)
            for n, p in zip(grid.nodes, result.node_prices, strict=True)
        },
        "flowsWh": {
            n.id: z
            for i, (n, z) in enumerate(zip(grid.nodes, result.flows_wh, strict=True))
            if i != grid.root_index
        },
        "feeRevenue": str(result.fee_revenue_base_units),
        "congestionRent": str(result.congestion_rent_base_units),
        "nodes": dict(sorted(nodes.items())),
    }


def clearing_document(
    result: ClearingResult | GridClearingResult,
    included: Sequence[StoredOrder],
    excluded: Sequence[StoredOrder],
    penalty_price_per_wh: int,
    expired: Sequence[StoredOrder] = (),
    reasons: dict[str, str] | None = None,
    signature_blocks: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The clearing of a frozen book as stored and published (big integers as strings):
    mechanism, price, volume, trades with both parties, the penalty price the commit
    snapshots, the ids of the ``excluded`` and ``expired`` orders (``included``: the
    orders cleared), and why each excluded order was left out (``reasons``, by id:
    ``unregistered``, ``insufficient_collateral: ...`` or ``refused_signature: ...``), and
    for each order of a contract account (its signature is not its ECDSA one) the block at
    which its ``isValidSignature`` accepted it (``signatureBlocks``, by id). A clearing on a
    grid adds each trade's ``sellPricePerWh``; its ``grid`` outcome is the caller's to add."""
    owner = {o.id: o.participant for o in included}
    on_grid = isinstance(result, GridClearingResult)
    blocks = {"signatureBlocks": dict(signature_blocks)} if signature_blocks else {}
    return {
        **blocks,
        "mechanism": result.mechanism,
        "k": list(result.k) if result.k else None,
        "price": None if result.price is None else str(result.price),
        "volumeWh": int(result.volume_wh),
        "trades": [
            {
                "buyOrder": t.buy,
                "sellOrder": t.sell,
                "buyer": owner[t.buy],
                "seller": owner[t.sell],
                "quantityWh": int(t.quantity_wh),
                "pricePerWh": str(t.price_per_wh),
                **(
                    {"sellPricePerWh": str(t.sell_price_per_wh)} if isinstance(t, GridTrade) else {}
                ),
            }
            for t in result.trades
        ],
        "penaltyPricePerWh": str(penalty_price_per_wh),
        "excluded": [o.id for o in excluded],
        "expired": [o.id for o in expired],
        "excludedReasons": {o.id: (reasons or {}).get(o.id, "") for o in excluded},
        **({"onGrid": True} if on_grid else {}),
    }


def recleared_document(
    clearing: dict[str, Any],
    result: ClearingResult | GridClearingResult,
    remaining: Sequence[StoredOrder],
    penalty_price_per_wh: int,
    defaulters: Sequence[dict[str, Any]],
    dropped: Sequence[str],
    grid: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``clearing`` (a stored :func:`clearing_document`) with the re-clearing ``result`` of the
    ``remaining`` orders in place of its result, and the ``defaulters`` (one entry per
    dropped party: ``round``, ``block``, ``participant``, ``freeBaseUnits``,
    ``neededBaseUnits``, ``reason``) and the ids of their ``dropped`` orders."""
    fresh = clearing_document(result, remaining, [], penalty_price_per_wh)
    kept = ("mechanism", "k", "price", "volumeWh", "trades", "penaltyPricePerWh")
    return {
        **clearing,
        **{key: fresh[key] for key in kept},
        **({"grid": grid} if grid is not None else {}),
        "defaulters": list(defaulters),
        "dropped": list(dropped),
    }


def committed_trades(clearing: dict[str, Any]) -> list[Trade]:
    """The trades of a stored :func:`clearing_document`, as the contract's records."""
    return [
        Trade(
            buyer=checksum_address(t["buyer"]),
            seller=checksum_address(t["seller"]),
            quantity_wh=int(t["quantityWh"]),
            price_per_wh=int(t["pricePerWh"]),
            buy_order_id=bytes.fromhex(t["buyOrder"][2:]),
            sell_order_id=bytes.fromhex(t["sellOrder"][2:]),
            sell_price_per_wh=int(t["sellPricePerWh"]) if "sellPricePerWh" in t else None,
        )
        for t in clearing["trades"]
    ]


def committed_grid_root(clearing: dict[str, Any]) -> bytes:
    """The ``gridRoot`` a stored clearing commits (zero when it cleared on no grid)."""
    grid = clearing.get("grid")
    if not grid:
        return bytes(32)
    return bytes.fromhex(str(grid["gridRoot"]).removeprefix("0x"))


def signed_orders(book: Sequence[StoredOrder], trades: Sequence[Trade]) -> dict[bytes, SignedOrder]:
    """The signed orders (by order id) that ``trades`` fill, from the frozen ``book``: what
    the contract checks each committed trade against."""
    filled = {bytes(t.buy_order_id) for t in trades} | {bytes(t.sell_order_id) for t in trades}
    out = {}
    for o in book:
        order_id = bytes.fromhex(o.id[2:])
        if order_id in filled:
            out[order_id] = SignedOrder(
                participant=checksum_address(o.participant),
                interval=o.interval,
                side=o.side,
                quantity_wh=o.quantity_wh,
                price_per_wh=o.price_per_wh,
                nonce=o.nonce,
                expiry=o.expiry,
                signature=o.signature,
                order_id=order_id,
                node=o.node,
            )
    return out


class GateClosure:
    """Closes gates on time or on demand, and commits each closed interval exactly once.

    ``mechanism`` and ``k`` are passed to :func:`market.clearing.clear`. One gate closes at
    a time; intake goes on meanwhile for every other interval.
    """

    def __init__(
        self,
        store: OrderStore,
        ledger: Ledger,
        clock: Clock,
        schedule: GateSchedule,
        book: OpenBook,
        collateral: Collateral,
        lock: threading.RLock,
        *,
        mechanism: str,
        k: tuple[int, int],
        grid: GridOperator | None = None,
    ) -> None:
        self.store = store
        self.grid = grid
        self.ledger = ledger
        self.clock = clock
        self.schedule = schedule
        self.book = book
        self.collateral = collateral
        self.mechanism = mechanism
        self.k = k
        self._lock = lock
        self._close_lock = threading.Lock()

    def due_intervals(self) -> list[int]:
        """Intervals with open orders whose gate closure time has come."""
        now = self.clock.now()
        candidates = self.book.intervals()
        return sorted(t for t in candidates if self.schedule.gate_closure_at(t) <= now)

    def tick(self) -> list[int]:
        """Close every due interval and retry unfinished commits; return intervals closed."""
        closed = []
        for interval in self.due_intervals():
            self.close_gate(interval)
            closed.append(interval)
        for interval in self.store.intervals_in_state(FROZEN):
            self.commit_frozen(interval)
        return closed

    def recover(self) -> list[int]:
        """Finish the commit of every interval left ``frozen``; return those committed."""
        return [i for i in self.store.intervals_in_state(FROZEN) if self.commit_frozen(i)]

    def close_gate(self, interval: int, *, early: bool = False) -> IntervalRecord:
        """Freeze, publish, clear and commit ``interval``; return its stored record.

        Before the gate closure time this raises IntervalNotClosed unless ``early`` (an
        operator action). Closing an interval that is already closed returns its record.
        Raises ServiceUnavailable when the store fails; a failed on-chain commit leaves the
        interval ``frozen`` and is retried by :meth:`tick`.
        """
        with self._close_lock:
            existing = self.store.get_interval(interval)
            if existing is not None:
                return existing
            now = self.clock.now()
            gate_closure_at = self.schedule.gate_closure_at(interval)
            if not early and now < gate_closure_at:
                raise IntervalNotClosed(
                    f"interval {interval}: its gate closes at {gate_closure_at}, it is {now}"
                )
            orders = self.book.freeze(interval)
            try:
                # The gate closed at its time, or earlier when the operator closed it: intake
                # refused the interval's orders from then on, however late the tick runs.
                self._freeze(interval, min(now, gate_closure_at), orders)
            finally:
                with self._lock:
                    self.book.closing.discard(interval)
            self.commit_frozen(interval)
            record = self.store.get_interval(interval)
            assert record is not None
            return record

    def _freeze(self, interval: int, now: int, orders: list[StoredOrder]) -> None:
        """Set aside the orders expired at ``now`` (when the gate closed), leave out uncovered
        ones, clear the rest and store the frozen interval."""
        penalty = self.collateral.read_terms().penalty_price_per_wh
        expired = [o for o in orders if is_expired(o.expiry, now)]
        live = [o for o in orders if not is_expired(o.expiry, now)]
        needs: dict[str, int] = {}
        for order in live:
            lock = worst_case_lock_base_units(
                order.side, order.quantity_wh, order.price_per_wh, penalty
            )
            needs[order.participant] = needs.get(order.participant, 0) + lock
        fresh, short = self.collateral.uncovered(needs) if needs else ({}, {})
        signature_blocks = self._contract_signatures(interval, live, short)
        cleared = [o for o in live if o.participant not in short]
        excluded = [o for o in live if o.participant in short]
        if excluded:
            log.warning(
                "interval %d: left out %d orders of %d participants no longer registered or "
                "whose free balance no longer covers them",
                interval,
                len(excluded),
                len(short),
            )
        dead = {o.id for o in expired}
        published = [o for o in orders if o.id in dead or o.participant not in short]
        tree = book_tree(published)
        result, outcome = self._clear(interval, cleared, now)
        try:
            self.store.freeze_interval(
                interval,
                now,
                "0x" + tree.root.hex(),
                [o.id for o in published],
                [o.id for o in excluded],
                clearing_document(
                    result,
                    cleared,
                    excluded,
                    penalty,
                    expired,
                    reasons={o.id: short[o.participant] for o in excluded},
                    signature_blocks=signature_blocks,
                )
                | outcome,
                {k: int(v) for k, v in result.fills.items()},
                expired=[o.id for o in expired],
            )
        except StoreError as err:
            raise ServiceUnavailable(f"the order store failed: {err.message}") from None
        with self._lock:
            self.book.close(interval, orders)
            self.collateral.remember(fresh, set(short))

    def _clear(
        self, interval: int, orders: Sequence[StoredOrder], now: int | None = None
    ) -> tuple[ClearingResult | GridClearingResult, dict[str, Any]]:
        """Clear ``orders`` of ``interval``, and what the stored clearing adds for a grid.

        Without a grid: :func:`market.clearing.clear`. On a grid: the document in force at
        gate closure (frozen then, ``now`` given) with each order at the node it is signed
        for (:func:`market.grid_clearing.clear_grid`; intake took it only at its
        participant's recorded node); no document, no clearing: nothing trades and ``grid``
        is null. An order whose node is not in the document does not clear (it cannot be
        placed) and is named in ``grid.unplaced``."""
        book = [clearing_order(o) for o in orders]
        if self.grid is None:
            return clear(book, mechanism=self.mechanism, k=self.k), {}
        document = (
            self.grid.freeze(interval, now) if now is not None else self.grid.document(interval)
        )
        if document is None:
            log.warning("interval %d: no grid document at gate closure, nothing clears", interval)
            return clear([], mechanism=self.mechanism, k=self.k), {"grid": None}
        grid = document.grid
        placed, at, unplaced, used = [], [], [], {}
        for stored, order in zip(orders, book, strict=True):
            if stored.node in grid.index:
                placed.append(order)
                at.append(stored.node)
                used[stored.participant] = stored.node
            else:
                unplaced.append(order.id)
        result = clear_grid(placed, grid, at, self.mechanism, self.k)
        outcome = grid_outcome(result, used)
        if unplaced:
            outcome["unplaced"] = unplaced
        return result, {"grid": outcome}

    def commit_frozen(self, interval: int) -> bool:
        """Commit a frozen interval on-chain unless it already is; True once its commit is
        final (:mod:`chain.finality`), and only then is it stored (and published) as
        committed. A commit mined but not final leaves the interval ``frozen``; a later
        :meth:`tick` finds it final, or finds that a reorganisation dropped it and sends it
        again (what to send is read from the chain: nothing twice)."""
        record = self.store.get_interval(interval)
        if record is None or record.state != FROZEN or record.clearing is None:
            return False
        root = bytes.fromhex(record.book_root[2:])
        clearing = record.clearing
        try:
            onchain = self.ledger.committed_root(interval)
            if onchain is not None:
                if onchain != root:
                    log.error(
                        "interval %d: on-chain book root %s differs from the stored %s",
                        interval,
                        onchain.hex(),
                        root.hex(),
                    )
                    return False
                final = self.ledger.final_commit(interval)
                if final is None:
                    return False  # mined, not final yet: the next tick looks again
                self.store.record_commit(interval, final.tx_hash, final.block_number)
                return True
            # Each collateral revert is met by a fresh read that drops at least one party,
            # unless the party covered itself again meanwhile; either way the attempts end.
            attempts = 2 + len({o.participant for o in self._live_set(interval)})
            book = self.store.interval_orders(interval)  # a re-clearing fills a subset of it
            refusal: LedgerCallFailed | None = None
            for _ in range(attempts):
                clearing = self._drop_defaulters(interval, clearing)
                if refusal is not None and not _dropped(clearing, refusal):
                    # The party the contract named accepts when asked as the contract asks
                    # (an order it never signed, or an account that tells the market's call
                    # from any other): nothing to drop it for; the commit waits.
                    raise refusal
                refusal = None
                trades = committed_trades(clearing)
                try:
                    orders = signed_orders(book, trades)
                    grid_root = committed_grid_root(clearing)
                    # Only a grid interval names its root: a ledger port without a grid
                    # keeps the four-argument call.
                    extra = {"grid_root": grid_root} if any(grid_root) else {}
                    receipt = self.ledger.commit_interval(interval, root, trades, orders, **extra)
                    break
                except LedgerCallFailed as err:
                    if err.revert not in ("InsufficientCollateral", "BadOrderSignature"):
                        raise
                    if err.revert == "BadOrderSignature":
                        refusal = err
                    # A party no longer covers its trades, or a contract account refuses an
                    # order it accepted (BadOrderSignature names it): the next round reads
                    # the balances and asks the contract accounts again, at a newer block.
                    log.warning(
                        "interval %d: commit reverted %s (%s), reading the parties' balances "
                        "and signatures again: %s",
                        interval,
                        err.revert,
                        err.details.get("participant", ""),
                        err,
                    )
            else:
                log.error(
                    "interval %d: commit kept reverting for collateral or signatures, will retry",
                    interval,
                )
                return False
        except LedgerCallFailed as err:
            log.error("interval %d: commit failed, will retry: %s", interval, err)
            return False
        except StoreError as err:
            log.error("interval %d: storing its re-clearing failed, will retry: %s", interval, err)
            return False
        penalty = clearing.get("penaltyPricePerWh", self.collateral.terms.penalty_price_per_wh)
        self.collateral.spend(trades, int(penalty))
        if not receipt.final:
            log.info(
                "interval %d: commit mined in block %s (%s); published once final",
                interval,
                receipt.block_number,
                receipt.tx_hash,
            )
            return False
        self.store.record_commit(interval, receipt.tx_hash, receipt.block_number)
        return True

    def _contract_signatures(
        self, interval: int, live: Sequence[StoredOrder], short: dict[str, str]
    ) -> dict[str, int]:
        """Ask every contract account of ``live`` (an order whose signature is not its
        participant's ECDSA one) whether it accepts its orders, at the head: a refuser joins
        ``short`` (left out, reason ``refused_signature``); the block of each accepted order
        is returned by id, published so that the audit can ask again there."""
        foreign = [o for o in live if o.participant not in short and not _own_signature(o)]
        if not foreign:
            return {}
        block, _ = self.ledger.balances_at_head(sorted({o.participant for o in foreign}))
        accepted: dict[str, int] = {}
        for o in foreign:
            if o.participant in short:
                continue
            digest = bytes.fromhex(o.id[2:])
            if self.ledger.accepts_signature(o.participant, digest, o.signature, block):
                accepted[o.id] = block
            else:
                short[o.participant] = f"{REFUSED_SIGNATURE}: order {o.id} at block {block}"
                log.warning(
                    "interval %d: contract account %s refuses its order %s at block %d; "
                    "left out its orders",
                    interval,
                    o.participant,
                    o.id,
                    block,
                )
        owner = {o.id: o.participant for o in foreign}
        return {oid: b for oid, b in accepted.items() if owner[oid] not in short}

    def _refusals(
        self,
        block: int,
        trades: Sequence[tuple[str, str, str, str]],
        foreign: dict[str, StoredOrder],
        answers: dict[str, bool],
    ) -> dict[str, str]:
        """The parties of ``trades`` (``(buyer, seller, buy order id, sell order id)``) that
        refuse at ``block`` an order of theirs the trades fill, each with the first such
        order; only ``foreign`` orders (signatures that are not their party's ECDSA one) are
        asked, each once (``answers`` keeps what was asked)."""
        refused: dict[str, str] = {}
        for buyer, seller, buy, sell in trades:
            for party, oid in ((buyer, buy), (seller, sell)):
                order = foreign.get(oid)
                if order is None or party in refused:
                    continue
                if oid not in answers:
                    digest = bytes.fromhex(oid[2:])
                    answers[oid] = self.ledger.accepts_signature(
                        order.participant, digest, order.signature, block
                    )
                if not answers[oid]:
                    refused[party] = oid
        return refused

    def _live_set(self, interval: int) -> list[StoredOrder]:
        """The orders of ``interval``'s published set that are still cleared (``closed``:
        neither expired nor dropped), in arrival order."""
        return [o for o in self.store.published_orders(interval) if o.status == CLOSED]

    def _drop_defaulters(self, interval: int, clearing: dict[str, Any]) -> dict[str, Any]:
        """``clearing`` when every party of its trades covers what they lock; else the
        re-clearing without the defaulters (:mod:`market.defaulters`), stored before it is
        returned. One read of every party of the set's balances, at one block, serves all
        the rounds (a re-clearing may give trades to a party that had none).

        Raises LedgerCallFailed when the chain cannot be read, StoreError when the store
        cannot be written: the commit waits for the next try."""
        trades = committed_trades(clearing)
        if not trades:
            return clearing
        penalty = self.ledger.terms_for(interval).penalty_price_per_wh
        live = self._live_set(interval)
        block, read = self.ledger.balances_at_head(sorted({o.participant for o in live}))
        free = {p: b.free for p, b in read.items()}
        with self._lock:
            self.collateral.remember(free, set())
        defaulters = list(clearing.get("defaulters", []))
        dropped = {str(d["participant"]) for d in defaulters}
        foreign = {o.id: o for o in live if not _own_signature(o)}
        answers: dict[str, bool] = {}
        short = shortfalls(commit_locks(_parties(trades), penalty), free)
        refused = self._refusals(block, _order_parties(trades), foreign, answers)
        if not short and not refused:
            return clearing
        rounds = max((int(d["round"]) for d in defaulters), default=0)
        while short or refused:
            rounds += 1
            for party in sorted(set(short) | set(refused)):
                entry: dict[str, Any] = {"round": rounds, "block": block, "participant": party}
                if party in short:
                    balance, needed = short[party]
                    entry |= {
                        "freeBaseUnits": str(balance),
                        "neededBaseUnits": str(needed),
                        "reason": INSUFFICIENT_COLLATERAL,
                    }
                else:
                    entry |= {"order": refused[party], "reason": REFUSED_SIGNATURE}
                defaulters.append(entry)
            dropped |= set(short) | set(refused)
            remaining = [o for o in live if o.participant not in dropped]
            result, outcome = self._clear(interval, remaining)
            owner = {o.id: o.participant for o in remaining}
            cleared = [
                (owner[t.buy], owner[t.sell], t.quantity_wh, t.price_per_wh) for t in result.trades
            ]
            locks = commit_locks(cleared, penalty)
            short = shortfalls(locks, free)
            filled = [(owner[t.buy], owner[t.sell], t.buy, t.sell) for t in result.trades]
            refused = self._refusals(block, filled, foreign, answers)
        gone = [o.id for o in live if o.participant in dropped]
        every_dropped = [*clearing.get("dropped", []), *gone]
        log.warning(
            "interval %d: %d parties could no longer cover their trades or refused their "
            "signatures at block %d; dropped "
            "their %d orders and cleared the rest again (%d rounds)",
            interval,
            len(dropped),
            block,
            len(gone),
            rounds,
        )
        recleared = recleared_document(
            clearing, result, remaining, penalty, defaulters, every_dropped, outcome.get("grid")
        )
        fills = {o.id: int(result.fills.get(o.id, 0)) for o in remaining}
        self.store.record_defaults(interval, recleared, fills, gone)
        return recleared


def _dropped(clearing: dict[str, Any], refusal: LedgerCallFailed) -> bool:
    """Whether the party a ``BadOrderSignature`` revert names is a defaulter of
    ``clearing``."""
    party = str(refusal.details.get("participant", "")).lower()
    return any(str(d["participant"]).lower() == party for d in clearing.get("defaulters", []))


def _own_signature(order: StoredOrder) -> bool:
    """Whether ``order``'s signature is its participant's ECDSA one (the contract then asks
    no contract account)."""
    try:
        return signing.recover(bytes.fromhex(order.id[2:]), order.signature) == order.participant
    except BadSignature:
        return False


def _order_parties(trades: Sequence[Trade]) -> list[tuple[str, str, str, str]]:
    """``(buyer, seller, buy order id, sell order id)`` of each trade, parties in lower case
    and ids ``0x`` hex (as the store keys them)."""
    return [
        (
            t.buyer.lower(),
            t.seller.lower(),
            "0x" + bytes(t.buy_order_id).hex(),
            "0x" + bytes(t.sell_order_id).hex(),
        )
        for t in trades
    ]


def _parties(trades: Sequence[Trade]) -> list[tuple[str, str, int, int]]:
    """``(buyer, seller, quantity_wh, price_per_wh)`` of each trade, parties in lower case
    (as the store keys participants)."""
    return [(t.buyer.lower(), t.seller.lower(), t.quantity_wh, t.price_per_wh) for t in trades]


__all__ = [
    "GateClosure",
    "GateSchedule",
    "book_tree",
    "clearing_document",
    "clearing_order",
    "committed_trades",
    "grid_outcome",
    "recleared_document",
    "signed_orders",
]
