"""Order intake: signed orders and cancels checked, reserved, stored and opened.

Intake (``POST /orders``)
    An order is the EIP-712 ``Order`` message of :mod:`ledger.eip712` plus its signature.
    It is accepted when, in this order of checks: every field is in range
    (:func:`market.signed_messages.parse_order`); ``quantityWh`` is at least
    ``min_order_wh``; the signature recovers to ``participant``, or ``participant`` is a
    registered contract account whose ERC-1271 ``isValidSignature`` accepts it (see below);
    ``expiry`` has not passed;
    the participant is registered on-chain, and the order is at its participant's grid node
    (:mod:`market.grid_operator`; a market without a grid has one node, ``root``); the
    interval's gate is still open and the interval is at most ``max_ahead_intervals``
    ahead of the current one; the participant
    has not used the nonce; it has fewer than ``max_orders_per_interval`` open orders in the
    interval; the order does not cross the participant's own opposite order
    (:meth:`market.book.OpenBook.check_self_cross`); and the participant's collateral covers
    it (:mod:`market.collateral`). ``expiry`` bounds when the signed message may be
    *submitted* (like an ERC-2612 permit deadline): an accepted order stays in the book
    until its gate closes or it is cancelled.

Nothing unsigned reaches the chain
    The checks up to ``expiry`` need neither the chain nor the market's state
    (:meth:`Intake.authenticate`). A request with an order that fails one of them is refused
    at once, listing those orders, without reading the chain for any of its orders: a batch
    of junk signatures costs its signature recoveries and nothing else. Registrations and
    free balances are read only for participants that signed their orders, only when not
    cached, and for participants the chain never confirmed, within a budget of reads per
    second (:mod:`market.lookup_budget`).

Contract accounts (ERC-1271)
    ``commitInterval`` accepts a contract account's order when the account's
    ``isValidSignature`` does (within the market's 50,000 gas), and intake asks the same
    (:meth:`Intake.verify_contract_signatures`, cancels too). An order that recovers to its
    participant never causes that read. One that does not is asked of the chain only when
    its participant is known, without a read, to be registered and not known to lack code
    (:meth:`market.collateral.Collateral.may_be_contract`), only when every order of the
    request passed the other checks above, and each ask spends a lookup of the budget:
    junk signatures naming fresh addresses are refused ``signer_mismatch`` without a read,
    as before. A chain that fails the ask answers ``chain_unavailable``, a spent budget
    ``chain_busy``.

Bounds against splitting
    One key could split its energy into thousands of 1 Wh orders, each a trade to commit
    and settle on-chain. ``min_order_wh`` (default 10 Wh) and ``max_orders_per_interval``
    (default 16 open orders of one participant in one interval, cancelled ones not counted)
    bound how many trades one participant can make of an interval; both are published in
    ``GET /market`` (``bounds``).

Two steps, so that the API can store many requests in one transaction
    :meth:`Intake.prepare_orders` checks a request's orders and reserves their nonces,
    sequence numbers and collateral (:class:`Prepared`); :meth:`Intake.commit_prepared`
    stores any number of prepared requests durably at once and opens their orders, or
    :meth:`Intake.abort_prepared` releases them.

Nonces
    Each signer's nonces are single-use and unordered (any unused ``uint64``), shared by its
    orders and cancels (and the operator's ``CloseGate`` messages). Unordered nonces let a
    participant, or a VPP signing for many, submit concurrently without sequencing
    requests; a replayed message always reuses its nonce.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from ledger import eip712 as signing
from ledger.errors import RequestError
from market.book import OpenBook
from market.clock import Clock
from market.collateral import Collateral
from market.gate_closure import GateSchedule
from market.grid_operator import GridOperator, check_single_node
from market.http.errors import (
    BatchRejected,
    BatchTooLarge,
    IntervalClosed,
    IntervalTooFar,
    InvalidRequest,
    NonceUsed,
    NotOperator,
    NotYourOrder,
    OrderExpired,
    OrderNotFound,
    OrderNotOpen,
    OrderTooSmall,
    ServiceUnavailable,
    SignerMismatch,
    TooManyOrders,
)
from market.receipts import ReceiptSigner
from market.signed_messages import (
    ParsedOrder,
    SignedMessage,
    parse_cancel,
    parse_close_gate,
    parse_order,
)
from market.store import OrderStore, StoredOrder, StoreError


@dataclass
class Authenticated:
    """A request of ``count`` orders after :meth:`Intake.authenticate`: those that passed
    (index, order, hash, canonical signature) and the refusals by index."""

    count: int
    orders: list[tuple[int, ParsedOrder, bytes, str]] = field(default_factory=list)
    errors: list[tuple[int, RequestError]] = field(default_factory=list)
    unverified: list[tuple[int, ParsedOrder, bytes, str, str]] = field(default_factory=list)
    """Orders whose signature recovers to another key (the last item) for a participant
    that may be a contract account: :meth:`Intake.verify_contract_signatures` asks it."""


@dataclass
class Prepared:
    """Orders that passed every check and hold their reservations, not yet stored.

    Finish with :meth:`Intake.commit_prepared` (store, then make them open) or
    :meth:`Intake.abort_prepared` (release everything).
    """

    orders: list[StoredOrder]
    locks: list[int]
    done: bool = False


class Intake:
    """Checks signed orders, cancels and the operator's ``CloseGate`` messages against the
    book, the nonces and the collateral; stores what passes.

    ``max_ahead_intervals``: how many intervals past the current one accept orders;
    ``max_batch_orders``: most orders in one request; ``min_order_wh``: the smallest order
    taken; ``max_orders_per_interval``: most open orders of one participant in one
    interval. ``nonces`` holds every ``(signer, nonce)`` used, ``seq`` the last arrival
    sequence number given (orders and cancels share the sequence): both are rebuilt from the
    store at start and guarded by ``lock`` (the market's one lock). ``receipts`` signs the
    operator's receipt of every accepted order and cancel (:mod:`market.receipts`).
    ``grid``: the grid operator's role when the market clears on a grid (its node registry
    decides where an order may be); None: one node, ``root``.
    """

    def __init__(
        self,
        store: OrderStore,
        clock: Clock,
        schedule: GateSchedule,
        book: OpenBook,
        collateral: Collateral,
        domain: signing.Domain,
        operator: str,
        lock: threading.RLock,
        *,
        receipts: ReceiptSigner,
        max_ahead_intervals: int,
        max_batch_orders: int,
        min_order_wh: int = 1,
        max_orders_per_interval: int = 2**63,
        grid: GridOperator | None = None,
    ) -> None:
        self.store = store
        self.grid = grid
        self.receipts = receipts
        self.min_order_wh = min_order_wh
        self.max_orders_per_interval = max_orders_per_interval
        self.clock = clock
        self.schedule = schedule
        self.max_ahead_intervals = max_ahead_intervals
        self.max_batch_orders = max_batch_orders
        self.book = book
        self.collateral = collateral
        self._separator = domain.separator
        self._operator = operator.lower()
        self._lock = lock
        self.seq = store.max_seq()
        self.nonces: set[tuple[str, int]] = set(store.used_nonces())

    # -- orders -----------------------------------------------------------------------------

    def authenticate(self, signed: Sequence[SignedMessage]) -> Authenticated:
        """The checks of a request's orders that need neither the chain nor the market's
        state, each order's in this order: fields, minimum size, signature (recovered and
        compared with ``participant``), expiry. CPU only: nothing here reads the chain, so an
        order set nobody signed costs its signature recoveries and no more. An order signed
        by another key for a participant that may be a contract account is set aside
        (:attr:`Authenticated.unverified`) for :meth:`verify_contract_signatures`."""
        limit = self.max_batch_orders
        if len(signed) > limit:
            raise BatchTooLarge(f"{len(signed)} orders in one batch; at most {limit}")
        if not signed:
            raise InvalidRequest("a batch needs at least one order")
        now = self.clock.now()
        checked = Authenticated(count=len(signed))
        for index, item in enumerate(signed):
            try:
                parsed, order_hash, signature, signer = self._authenticate(item)
                if parsed.expiry <= now:
                    raise OrderExpired(f"expiry {parsed.expiry} is not after now ({now})")
            except RequestError as err:
                checked.errors.append((index, err))
                continue
            if signer == parsed.participant:
                checked.orders.append((index, parsed, order_hash, signature))
            else:
                checked.unverified.append((index, parsed, order_hash, signature, signer))
        return checked

    def verify_contract_signatures(self, checked: Authenticated) -> None:
        """Ask the chain whether each order of ``checked.unverified`` is its contract
        account's (:meth:`market.collateral.Collateral.contract_accepts`): accepted ones join
        ``checked.orders``, refused ones are ``signer_mismatch``. Nothing is read when the
        request is refused anyway (an order failed :meth:`authenticate`). Blocking: for a
        worker thread. Raises ChainBusy when the lookup budget is spent and
        ChainUnavailableProblem when the chain fails."""
        if not checked.unverified or checked.errors:
            return
        for index, parsed, order_hash, signature, signer in checked.unverified:
            participant = parsed.participant
            if self.collateral.contract_accepts(participant, order_hash, signature):
                checked.orders.append((index, parsed, order_hash, signature))
            else:
                checked.errors.append((index, _not_accepted(signer, participant)))
        checked.unverified = []
        checked.orders.sort(key=lambda entry: entry[0])
        checked.errors.sort(key=lambda entry: entry[0])

    def unknown_participants(self, checked: Authenticated) -> set[str]:
        """Signers of ``checked`` whose registration or free balance has not been read from
        the chain yet (intake would read them, a blocking call, on first sight); none when
        the request is refused anyway (an order failed :meth:`authenticate`)."""
        if checked.errors:
            return set()
        known = self.collateral.is_known
        signers = {parsed.participant for _, parsed, _, _ in checked.orders}
        return {participant for participant in signers if not known(participant)}

    def prepare_orders(
        self, signed: Sequence[SignedMessage], checked: Authenticated | None = None
    ) -> Prepared:
        """Check orders and reserve their nonces, sequence numbers and collateral.

        ``checked``: :meth:`authenticate` of ``signed`` when the caller ran it already.
        All or nothing: a single bad order raises its own error; in a batch of more than one,
        :class:`BatchRejected` lists every bad order by index. Nothing is reserved then. A
        request with an order that fails :meth:`authenticate` is refused before anything is
        read from the chain (listing the orders that failed it); the others' registrations
        and balances are read only when every order is signed by its participant.
        """
        if checked is None:
            checked = self.authenticate(signed)
        self.verify_contract_signatures(checked)
        if checked.errors:
            raise _refusal(checked.errors, checked.count)
        errors = self._look_up(checked)
        refused = {index for index, _ in errors}
        prepared = Prepared(orders=[], locks=[])
        with self._lock:
            # The window is checked on the clock read under the lock: a reader that found the
            # interval's gate passed and its book idle (an empty interval, market.views) took
            # the lock before, so no order can enter it after that answer.
            now = self.clock.now()
            seq_before = self.seq
            try:
                for index, parsed, order_hash, signature in checked.orders:
                    if index in refused:
                        continue
                    try:
                        order, lock = self._reserve(parsed, order_hash, now, signature)
                    except RequestError as err:
                        errors.append((index, err))
                        continue
                    prepared.orders.append(order)
                    prepared.locks.append(lock)
            except BaseException:
                self._release(prepared)
                raise
            if errors:
                self._release(prepared)
                self.seq = seq_before  # a refused request leaves no trace, not even a gap
        if errors:
            errors.sort(key=lambda entry: entry[0])
            raise _refusal(errors, checked.count)
        return prepared

    def _look_up(self, checked: Authenticated) -> list[tuple[int, RequestError]]:
        """Each signer's registration and grid node (:meth:`GridOperator.check_node
        <market.grid_operator.GridOperator.check_node>`), then the free balance of every
        registered signer not seen yet: chain reads for participants not in the caches
        (outside the lock), within the lookup budget. The refusals by index."""
        errors: list[tuple[int, RequestError]] = []
        registered = []
        grid = self.grid
        for index, parsed, _, _ in checked.orders:
            try:
                self.collateral.check_registered(parsed.participant)
                if grid is None:
                    check_single_node(parsed.node)
                else:
                    grid.check_node(parsed.participant, parsed.node)
            except RequestError as err:
                errors.append((index, err))
                continue
            registered.append(parsed.participant)
        free = self.collateral.free
        for participant in registered:
            if participant not in free:
                self.collateral.free_balance(participant)
        return errors

    def _authenticate(self, signed: SignedMessage) -> tuple[ParsedOrder, bytes, str, str]:
        """Field checks, the minimum size and signature recovery (no shared state; runs
        outside the lock); the order, its hash, its signature in canonical form (65
        bytes, v 27/28) and its signer: another key than ``participant`` only when
        ``participant`` may be a contract account (SignerMismatch otherwise)."""
        parsed = parse_order(signed.message)
        if parsed.quantity_wh < self.min_order_wh:
            raise OrderTooSmall(
                f"quantityWh: {parsed.quantity_wh} Wh is below the market's minimum order "
                f"of {self.min_order_wh} Wh",
                hint="GET /market states the bounds (bounds.minQuantityWh).",
            )
        order_hash = parsed.digest(self._separator)
        signer, signature = signing.recover_canonical(order_hash, signed.signature)
        if signer != parsed.participant and not self.collateral.may_be_contract(parsed.participant):
            raise SignerMismatch(
                f"the signature is by {signer}, not by participant {parsed.participant}",
                hint="Sign with the participant's key, over the domain GET /market publishes.",
            )
        return parsed, order_hash, signature, signer

    def _check_window(self, interval: int, now: int) -> None:
        book = self.book
        if interval in book.closed or interval in book.closing:
            raise IntervalClosed(f"interval {interval}: its gate has closed")
        gate_closure_at = self.schedule.gate_closure_at(interval)
        if now >= gate_closure_at:
            raise IntervalClosed(f"interval {interval}: its gate closed at {gate_closure_at}")
        ahead = self.max_ahead_intervals
        latest = self.schedule.current_interval(now) + ahead
        if interval > latest:
            raise IntervalTooFar(
                f"interval {interval} is more than {ahead} "
                f"intervals ahead; the latest open interval is {latest}"
            )

    def _reserve(
        self, parsed: ParsedOrder, order_hash: bytes, now: int, signature: str
    ) -> tuple[StoredOrder, int]:
        """Stateful checks and reservation of one order; caller holds the lock."""
        self._check_window(parsed.interval, now)
        participant = parsed.participant
        if (participant, parsed.nonce) in self.nonces:
            raise NonceUsed(f"nonce {parsed.nonce} of {participant} was already used")
        cap = self.max_orders_per_interval
        if self.book.own_order_count(participant, parsed.interval) >= cap:
            raise TooManyOrders(
                f"{participant} already has {cap} open orders in interval {parsed.interval}, "
                f"the most one participant may have",
                hint="Cancel an open order of the interval first, or place fewer, larger "
                "orders (GET /market: bounds.maxOrdersPerInterval).",
            )
        self.book.check_self_cross(participant, parsed.interval, parsed.side, parsed.price_per_wh)
        lock = self.collateral.lock_base_units(parsed.side, parsed.quantity_wh, parsed.price_per_wh)
        self.collateral.check_covers(participant, lock, self.book.reserved.get(participant, 0))
        self.seq += 1
        order = StoredOrder(
            id="0x" + order_hash.hex(),
            seq=self.seq,
            participant=participant,
            interval=parsed.interval,
            side=parsed.side,
            quantity_wh=parsed.quantity_wh,
            price_per_wh=parsed.price_per_wh,
            nonce=parsed.nonce,
            expiry=parsed.expiry,
            signature=signature,
            received_at=now,
            node=parsed.node,
        )
        self.nonces.add((participant, parsed.nonce))
        self.book.reserve(order, lock)
        return order, lock

    def _release(self, prepared: Prepared) -> None:
        """Undo the reservations of ``prepared``; caller holds the lock."""
        for order, lock in zip(prepared.orders, prepared.locks, strict=True):
            self.nonces.discard((order.participant, order.nonce))
            self.book.release(order, lock)
        prepared.done = True
        self.book.drained.notify_all()

    def sign_receipts(self, prepared: Prepared) -> None:
        """Give each order of ``prepared`` the operator's signed ``OrderReceipt`` of its id,
        ``seq`` and ``received_at`` (no shared state: runs outside the lock)."""
        sign = self.receipts.order
        prepared.orders = [
            o._replace(receipt=sign(o.id, o.seq, o.received_at).signature)
            if o.receipt is None
            else o
            for o in prepared.orders
        ]

    def commit_prepared(self, batches: Sequence[Prepared]) -> None:
        """Sign the receipts of the orders of ``batches``, store them in one durable
        transaction and open them.

        On a store failure every batch is released and :class:`ServiceUnavailable` raised.
        """
        for prepared in batches:
            self.sign_receipts(prepared)
        rows = [o for p in batches for o in p.orders]
        try:
            self.store.insert_orders(rows)
        except StoreError as err:
            self.abort_prepared(batches)
            raise ServiceUnavailable(f"the order store failed: {err.message}") from None
        book = self.book
        with self._lock:
            for prepared in batches:
                book.open_reserved(prepared.orders, prepared.locks)
                prepared.done = True
            book.drained.notify_all()

    def abort_prepared(self, batches: Sequence[Prepared]) -> None:
        """Release the reservations of prepared batches that will not be stored."""
        with self._lock:
            for prepared in batches:
                if not prepared.done:
                    self._release(prepared)

    # -- cancels ----------------------------------------------------------------------------

    def cancel_order(self, order_id: str, signed: SignedMessage) -> StoredOrder:
        """Cancel an open order with its participant's signed ``Cancel`` message."""
        cancel = parse_cancel(signed.message)
        participant, nonce = cancel.participant, cancel.nonce
        cancel_digest = cancel.digest(self._separator)
        signer, signature = signing.recover_canonical(cancel_digest, signed.signature)
        own = signer == participant
        if not own and not self.collateral.may_be_contract(participant):
            raise SignerMismatch(f"the signature is by {signer}, not by {participant}")
        if cancel.order_id != order_id.lower():
            raise InvalidRequest("orderHash in the cancel differs from the order id in the path")
        now = self.clock.now()
        if cancel.expiry <= now:
            raise OrderExpired(f"expiry {cancel.expiry} is not after now ({now})")
        if not own and not self.collateral.contract_accepts(participant, cancel_digest, signature):
            raise _not_accepted(signer, participant)
        with self._lock:
            order = self.book.open.get(order_id.lower())
            if order is None:
                stored = self.store.get_order(order_id.lower())
                if stored is None:
                    raise OrderNotFound(f"no order {order_id}")
                if stored.participant != participant:
                    raise NotYourOrder(f"order {order_id} belongs to another participant")
                raise OrderNotOpen(f"order {order_id} is {stored.status}")
            if order.participant != participant:
                raise NotYourOrder(f"order {order_id} belongs to another participant")
            now = self.clock.now()  # read under the lock, as for orders (prepare_orders)
            if order.interval in self.book.closing or order.interval in self.book.closed:
                raise IntervalClosed(f"interval {order.interval}: its gate has closed")
            # The receipt's time is read under the lock (above), as an order's is, so that seq
            # order and receivedAt order agree. The gate closes at its second whether or not
            # gate closure has run yet: a cancel after it would be a free option on the
            # cleared price.
            gate_closure_at = self.schedule.gate_closure_at(order.interval)
            if now >= gate_closure_at:
                raise IntervalClosed(
                    f"interval {order.interval}: its gate closed at {gate_closure_at}"
                )
            if (participant, nonce) in self.nonces:
                raise NonceUsed(f"nonce {nonce} of {participant} was already used")
            self.seq += 1
            receipt = self.receipts.cancel(order.id, cancel_digest, self.seq, now)
            record = {
                "cancel": cancel.as_json(),
                "signature": signature,
                "at": now,
                "digest": "0x" + cancel_digest.hex(),
                "receipt": receipt.as_json(),
            }
            try:
                self.store.cancel_order(order.id, participant, nonce, record)
            except StoreError as err:
                self.seq -= 1  # nothing was accepted: no gap in the sequence
                raise ServiceUnavailable(f"the order store failed: {err.message}") from None
            self.nonces.add((participant, nonce))
            self.book.remove_open(order.id)
            return order._replace(status="cancelled", cancel=record)

    # -- the operator -----------------------------------------------------------------------

    def accept_close_gate(self, interval: int, signed: SignedMessage) -> None:
        """Check a ``CloseGate`` message for ``interval`` signed by the operator key, and use
        its nonce; raise the matching RequestError otherwise."""
        close = parse_close_gate(signed.message)
        signer = signing.recover(close.digest(self._separator), signed.signature)
        if signer != self._operator:
            raise NotOperator(f"{signer} is not the market operator")
        if close.interval != interval:
            raise InvalidRequest("interval in the message differs from the path")
        now = self.clock.now()
        if close.expiry <= now:
            raise OrderExpired(f"expiry {close.expiry} is not after now ({now})")
        with self._lock:
            if (signer, close.nonce) in self.nonces:
                raise NonceUsed(f"nonce {close.nonce} of the operator was already used")
            try:
                self.store.use_nonce(signer, close.nonce)
            except StoreError as err:
                raise ServiceUnavailable(f"the order store failed: {err.message}") from None
            self.nonces.add((signer, close.nonce))


def _not_accepted(signer: str, participant: str) -> SignerMismatch:
    """The refusal of a signature by ``signer`` that contract account ``participant`` (or
    an account found to be none) does not accept."""
    return SignerMismatch(
        f"the signature is by {signer}, not by participant {participant}, and {participant} "
        "does not accept it (ERC-1271 isValidSignature)",
        hint="Sign with the participant's key, or with a key its contract account accepts, "
        "over the domain GET /market publishes.",
    )


def _refusal(errors: list[tuple[int, RequestError]], count: int) -> RequestError:
    """The error that refuses a request of ``count`` orders with ``errors`` by index: the
    order's own error for a single order, else :class:`BatchRejected` listing them all."""
    if count == 1:
        return errors[0][1]
    first = errors[0][1]
    return BatchRejected(
        f"{len(errors)} of {count} orders refused; none was stored "
        f"(first: order {errors[0][0]}: {first.message})",
        extra={
            "errors": [
                {"index": i, "code": e.code, "status": e.status, "detail": e.message}
                for i, e in errors
            ]
        },
    ).with_status(first.status)


__all__ = ["Authenticated", "Intake", "Prepared"]
