"""What the operator did with each order: the ``receipts``, ``cancels`` and ``late_orders``
checks, and ``uncommitted``.

The market gives every accepted order and cancel a receipt signed by the operator's key
(``OrderReceipt`` / ``CancelReceipt``, :mod:`ledger.eip712`), and publishes them with the
interval's set, beside the interval's cancelled orders and the orders refused at gate
closure. The receipts bind the operator to the arrival sequence and times it states, so the
audit can hold the publication and the commit to them:

``receipts``
    Every published order, cancelled order, cancel and refused order has a receipt whose
    signature recovers to the operator: the account that sent the interval's
    ``commitInterval`` (the contract lets only the OPERATOR role holder commit), or, for an
    interval not committed, any account that committed this market. The ``seq`` published
    for each order equals its receipt's, no two receipts state one ``seq``, and seq order
    agrees with ``receivedAt`` order.
``cancels``
    Each published cancel is its participant's signed ``Cancel`` of that order (a cancel the
    participant did not sign would let the operator drop an order), and an order whose
    cancel the operator received before the gate closed (``receivedAt`` before
    ``closedAt``) is not in the book, let alone filled.
``late_orders``
    No order the operator received at or after the gate closed (``receivedAt`` not before
    ``closedAt``) is in the clearing.
``uncommitted``
    (:func:`check_uncommitted`) an interval whose published set has orders was committed
    on-chain: once the interval has ended the contract refuses its commit, so a set
    published and never committed is a book the operator cleared off the record.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from audit.checks.book import PublishedSet
from audit.checks.violations import (
    CANCELS,
    LATE_ORDERS,
    RECEIPTS,
    UNCOMMITTED,
    CheckLog,
    hex_of,
    is_uint,
    short,
)
from audit.evidence import PublishedBook
from ledger import eip712 as signing
from ledger.errors import BadSignature, InputError
from ledger.records import Trade


@dataclass(frozen=True, slots=True)
class Stated:
    """One receipt whose signature is the operator's: what it states."""

    kind: str
    """``order`` or ``cancel``."""
    order_id: str
    seq: int
    received_at: int


@dataclass
class ReceiptTimes:
    """The receipts of one interval that verified, for the other checks."""

    orders: dict[str, Stated] = field(default_factory=dict)
    """Order id → its verified ``OrderReceipt``."""
    cancels: dict[str, Stated] = field(default_factory=dict)
    """Order id → the verified ``CancelReceipt`` of a cancel its participant signed."""


def _bytes32(value: Any) -> bytes | None:
    try:
        return signing.parse_bytes32(value, "id")
    except InputError:
        return None


def _receipt(
    what: str,
    receipt: Any,
    digest_of: Any,
    operators: Collection[str],
    problems: list[str],
) -> tuple[int, int] | None:
    """``(seq, receivedAt)`` of a published receipt whose signature is an operator's, else
    None with the problem noted. ``digest_of(seq, received_at)`` is its EIP-712 digest."""
    if not isinstance(receipt, Mapping):
        problems.append(f"{what}: no operator receipt published")
        return None
    raw_seq: Any = receipt.get("seq")
    raw_at: Any = receipt.get("receivedAt")
    if not (is_uint(raw_seq) and is_uint(raw_at) and raw_seq < 2**64 and raw_at < 2**64):
        problems.append(f"{what}: receipt seq {raw_seq!r} or receivedAt {raw_at!r} is not a uint64")
        return None
    seq, received_at = int(raw_seq), int(raw_at)
    try:
        signer = signing.recover(digest_of(seq, received_at), receipt.get("signature"))
    except BadSignature as err:
        problems.append(f"{what}: receipt signature is invalid: {err.message}")
        return None
    if not operators:
        return seq, received_at  # nobody committed yet: no operator to compare with
    if signer not in {o.lower() for o in operators}:
        problems.append(
            f"{what}: receipt signed by {signer}, not by the operator "
            f"({', '.join(sorted(operators))})"
        )
        return None
    return seq, received_at


def check_receipts(
    book: PublishedBook,
    domain: signing.Domain,
    operators: Collection[str],
    checks: CheckLog,
) -> ReceiptTimes:
    """The ``receipts`` check (and the cancels' signatures, ``cancels``); returns the
    receipts that verified."""
    separator = domain.separator
    out = ReceiptTimes()
    problems: list[str] = []
    cancel_problems: list[str] = []
    if not operators:
        checks.notes.append("receipts: no commit names the operator; signers not compared")

    def order_receipt(what: str, order_id: Any, seq: Any, receipt: Any) -> None:
        raw = _bytes32(order_id)
        if raw is None:
            return  # an unusable id fails `signatures`
        stated = _receipt(
            what,
            receipt,
            functools.partial(signing.order_receipt_digest, separator, raw),
            operators,
            problems,
        )
        if stated is None:
            return
        if stated[0] != seq:
            problems.append(f"{what}: published seq {seq!r}, its receipt's seq {stated[0]}")
        key = hex_of(raw)
        known = out.orders.get(key)
        if known is not None and (known.seq, known.received_at) != stated:
            problems.append(f"{what}: published with two different receipts")
        out.orders[key] = Stated("order", key, *stated)

    for i, entry in enumerate(book.orders):
        order_receipt(f"order {i} ({short(str(entry.id))})", entry.id, entry.seq, entry.receipt)
    for i, refusal in enumerate(book.refused):
        what = f"refused order {i} ({short(str(refusal.id))})"
        order_receipt(what, refusal.id, refusal.seq, refusal.receipt)
    for i, cancel in enumerate(book.cancels):
        what = f"cancelled order {i} ({short(str(cancel.id))})"
        order_receipt(what, cancel.id, cancel.seq, cancel.receipt)
        raw = _bytes32(cancel.id)
        message = cancel.message
        signed = cancel.cancel
        if raw is None or not isinstance(message, Mapping) or not isinstance(signed, Mapping):
            cancel_problems.append(f"{what}: the order or its cancel is not published whole")
            continue
        try:
            order_id = signing.digest(separator, "Order", message)
            cancel_digest = signing.digest(separator, "Cancel", signed)
        except InputError as err:
            cancel_problems.append(f"{what}: malformed message: {err.message}")
            continue
        participant = str(message.get("participant", "")).lower()
        reasons = []
        if order_id != raw:
            reasons.append(f"its id is not the order's digest {hex_of(order_id)}")
        if str(signed.get("orderHash", "")).lower() != hex_of(raw):
            reasons.append(f"the cancel names order {signed.get('orderHash')}")
        if str(signed.get("participant", "")).lower() != participant:
            reasons.append(f"the cancel's participant is not the order's {participant}")
        if str(cancel.cancel_digest).lower() != hex_of(cancel_digest):
            reasons.append(f"cancelDigest expected {hex_of(cancel_digest)}")
        try:
            signer = signing.recover(cancel_digest, cancel.cancel_signature)
        except BadSignature as err:
            reasons.append(f"the cancel's signature is invalid: {err.message}")
        else:
            if signer != participant:
                reasons.append(f"the cancel is signed by {signer}, not by {participant}")
        if reasons:
            cancel_problems.append(
                f"{what}: not its participant's signed cancel: {'; '.join(reasons)}"
            )
            continue
        stated = _receipt(
            f"cancel of order {short(hex_of(raw))}",
            cancel.cancel_receipt,
            functools.partial(signing.cancel_receipt_digest, separator, raw, cancel_digest),
            operators,
            problems,
        )
        if stated is not None:
            out.cancels[hex_of(raw)] = Stated("cancel", hex_of(raw), *stated)

    _check_sequence([*out.orders.values(), *out.cancels.values()], problems)
    checks.fail_all(RECEIPTS, problems)
    checks.fail_all(CANCELS, cancel_problems)
    return out


def _check_sequence(stated: Sequence[Stated], problems: list[str]) -> None:
    """No two receipts state one seq, and seq order agrees with receivedAt order."""
    by_seq: dict[int, Stated] = {}
    for s in stated:
        other = by_seq.get(s.seq)
        if other is not None:
            problems.append(
                f"seq {s.seq} is stated by the receipts of the {other.kind} of "
                f"{short(other.order_id)} and the {s.kind} of {short(s.order_id)}"
            )
        by_seq[s.seq] = s
    ordered = sorted(by_seq.values(), key=lambda s: s.seq)
    for before, after in itertools.pairwise(ordered):
        if after.received_at < before.received_at:
            problems.append(
                f"seq {after.seq} ({after.kind} of {short(after.order_id)}) was received at "
                f"{after.received_at}, before seq {before.seq} ({before.kind} of "
                f"{short(before.order_id)}) at {before.received_at}: seq order is not "
                "arrival order"
            )


def _filled(trades: Sequence[Trade]) -> dict[str, int]:
    filled: dict[str, int] = {}
    for t in trades:
        for raw in (t.buy_order_id, t.sell_order_id):
            key = hex_of(raw)
            filled[key] = filled.get(key, 0) + t.quantity_wh
    return filled


def check_cancels(
    book: PublishedBook,
    parsed: PublishedSet,
    times: ReceiptTimes,
    trades: Sequence[Trade],
    checks: CheckLog,
) -> None:
    """The ``cancels`` check: no order cancelled before the gate closed is in the book."""
    closed_at = book.closed_at
    if not is_uint(closed_at):
        if times.cancels:
            checks.fail(CANCELS, f"closedAt {closed_at!r} is not published: cancels not judged")
        return
    filled = _filled(trades)
    problems = []
    for order_id, cancel in sorted(times.cancels.items()):
        if cancel.received_at >= closed_at or order_id not in parsed.orders:
            continue
        text = (
            f"order {order_id} was cancelled at {cancel.received_at} (receipt seq "
            f"{cancel.seq}), before the gate closed at {closed_at}, yet it is in the book"
        )
        if filled.get(order_id):
            text += f" and {filled[order_id]} Wh of it were committed"
        problems.append(text)
    checks.fail_all(CANCELS, problems)


def check_late_orders(
    book: PublishedBook,
    parsed: PublishedSet,
    times: ReceiptTimes,
    trades: Sequence[Trade],
    checks: CheckLog,
) -> None:
    """The ``late_orders`` check: no order received at or after the gate closure clears."""
    closed_at = book.closed_at
    if not is_uint(closed_at):
        return
    filled = _filled(trades)
    problems = []
    for order in parsed.live_orders():
        stated = times.orders.get(order.id)
        if stated is None or stated.received_at < closed_at:
            continue
        text = (
            f"order {order.id} was received at {stated.received_at} (receipt seq "
            f"{stated.seq}), at or after the gate closed at {closed_at}, yet it is in the "
            "clearing"
        )
        if filled.get(order.id):
            text += f" and {filled[order.id]} Wh of it were committed"
        problems.append(text)
    checks.fail_all(LATE_ORDERS, problems)


def check_uncommitted(book: PublishedBook, ended: bool | None, checks: CheckLog) -> bool:
    """The ``uncommitted`` check of an interval with no commit on-chain: its published set
    must be empty. ``ended``: whether the interval has ended at the audited block (then the
    contract refuses its commit; before, the commit may still be on its way: a note). True
    when the interval failed."""
    if not book.orders:
        return False
    what = (
        f"the market published {len(book.orders)} orders (bookRoot {book.book_root}, gate "
        f"closed at {book.closed_at}, state {book.state}) but nothing is committed on-chain"
    )
    if ended is False:
        checks.notes.append(f"{what} yet; the interval has not ended, its commit may follow")
        return False
    checks.fail(UNCOMMITTED, what + ("" if ended else "; the interval's end is unknown"))
    return True


__all__ = [
    "ReceiptTimes",
    "Stated",
    "check_cancels",
    "check_late_orders",
    "check_receipts",
    "check_uncommitted",
]
