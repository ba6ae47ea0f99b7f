"""Order intake: signed orders and cancels checked, reserved, stored and opened.

Intake (``POST /orders``)
    An order is the EIP-712 ``Order`` message of :mod:`ledger.eip712` plus its signature.
    It is accepted when, in this order of checks: every field is in range
    (:func:`market.signed_messages.parse_order`); the signature recovers to
    ``participant``; the participant is registered on-chain; ``expiry`` has not passed; the
    interval's gate is still open and the interval is at most ``max_ahead_intervals`` ahead
    of the current one; the participant has not used the nonce; the order does not cross
    the participant's own opposite order (:meth:`market.book.OpenBook.check_self_cross`);
    and the participant's collateral covers it (:mod:`market.collateral`). ``expiry`` bounds
    when the signed message may be *submitted* (like an ERC-2612 permit deadline): an
    accepted order stays in the book until its gate closes or it is cancelled.

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
from dataclasses import dataclass

from ledger import eip712 as signing
from ledger.errors import RequestError
from market.book import OpenBook
from market.clock import Clock
from market.collateral import Collateral
from market.gate_closure import GateSchedule
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
    ServiceUnavailable,
    SignerMismatch,
)
from market.receipts import ReceiptSigner
from market.signed_messages import (
    ParsedOrder,
    SignedMessage,
    is_address,
    parse_cancel,
    parse_close_gate,
    parse_order,
)
from market.store import OrderStore, StoredOrder, StoreError


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
    ``max_batch_orders``: most orders in one request. ``nonces`` holds every
    ``(signer, nonce)`` used, ``seq`` the last arrival sequence number given (orders and
    cancels share the sequence): both are rebuilt from the store at start and guarded by
    ``lock`` (the market's one lock). ``receipts`` signs the operator's receipt of every
    accepted order and cancel (:mod:`market.receipts`).
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
    ) -> None:
        self.store = store
        self.receipts = receipts
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

    # -- participants first seen ------------------------------------------------------------

    def unknown_participants(self, signed: Sequence[SignedMessage]) -> set[str]:
        """Participants of ``signed`` whose registration or free balance has not been read
        from the chain yet (intake would read them, a blocking call, on first sight)."""
        unknown = set()
        for item in signed:
            participant = item.message.get("participant")
            if is_address(participant):
                key = "0x" + str(participant)[2:].lower()
                if not self.collateral.is_known(key):
                    unknown.add(key)
        return unknown

    # -- orders -----------------------------------------------------------------------------

    def prepare_orders(self, signed: Sequence[SignedMessage]) -> Prepared:
        """Check orders and reserve their nonces, sequence numbers and collateral.

        All or nothing: a single bad order raises its own error; in a batch of more than one,
        :class:`BatchRejected` lists every bad order by index. Nothing is reserved then.
        """
        limit = self.max_batch_orders
        if len(signed) > limit:
            raise BatchTooLarge(f"{len(signed)} orders in one batch; at most {limit}")
        if not signed:
            raise InvalidRequest("a batch needs at least one order")
        now = self.clock.now()
        checked = self._authenticate_all(signed, now)
        prepared = Prepared(orders=[], locks=[])
        errors: list[tuple[int, RequestError]] = []
        with self._lock:
            # The window is checked on the clock read under the lock: a reader that found the
            # interval's gate passed and its book idle (an empty interval, market.views) took
            # the lock before, so no order can enter it after that answer.
            now = self.clock.now()
            seq_before = self.seq
            try:
                for entry in checked:
                    if len(entry) == 2:
                        errors.append(entry)
                        continue
                    index, parsed, order_hash, signature = entry
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
            raise _refusal(errors, len(signed))
        return prepared

    def _authenticate_all(
        self, signed: Sequence[SignedMessage], now: int
    ) -> list[tuple[int, ParsedOrder, bytes, str] | tuple[int, RequestError]]:
        """The checks that need no shared state, for each order: fields, signature,
        registration, expiry; then the free balance of every participant not seen yet is
        read (outside the lock: a chain call)."""
        checked: list[tuple[int, ParsedOrder, bytes, str] | tuple[int, RequestError]] = []
        for index, item in enumerate(signed):
            try:
                parsed, order_hash, signature = self._authenticate(item)
                self.collateral.check_registered(parsed.participant)
                if parsed.expiry <= now:
                    raise OrderExpired(f"expiry {parsed.expiry} is not after now ({now})")
                checked.append((index, parsed, order_hash, signature))
            except RequestError as err:
                checked.append((index, err))
        free = self.collateral.free
        for entry in checked:
            if len(entry) == 4 and entry[1].participant not in free:
                self.collateral.free_balance(entry[1].participant)
        return checked

    def _authenticate(self, signed: SignedMessage) -> tuple[ParsedOrder, bytes, str]:
        """Field checks and signature recovery (no shared state; runs outside the lock);
        the order, its hash and its signature in canonical form (65 bytes, v 27/28)."""
        parsed = parse_order(signed.message)
        order_hash = parsed.digest(self._separator)
        signer, signature = signing.recover_canonical(order_hash, signed.signature)
        if signer != parsed.participant:
            raise SignerMismatch(
                f"the signature is by {signer}, not by participant {parsed.participant}",
                hint="Sign with the participant's key, over the domain GET /market publishes.",
            )
        return parsed, order_hash, signature

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
        if signer != participant:
            raise SignerMismatch(f"the signature is by {signer}, not by {participant}")
        if cancel.order_id != order_id.lower():
            raise InvalidRequest("orderHash in the cancel differs from the order id in the path")
        now = self.clock.now()
        if cancel.expiry <= now:
            raise OrderExpired(f"expiry {cancel.expiry} is not after now ({now})")
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
            if order.interval in self.book.closing or order.interval in self.book.closed:
                raise IntervalClosed(f"interval {order.interval}: its gate has closed")
            # The receipt's time is read under the lock, as an order's is, so that seq order
            # and receivedAt order agree; a cancel is taken until the gate closure time, as
            # an order is, however late the tick that freezes the book runs.
            now = self.clock.now()
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


__all__ = ["Intake", "Prepared"]
