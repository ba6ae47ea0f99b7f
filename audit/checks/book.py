"""The published order set against the chain: the ``signatures`` and ``book_root`` checks.

``signatures``: every published order is a well-formed ``Order`` message for its interval,
its id is its EIP-712 digest under the market's domain as the chain defines it, its
signature recovers to its participant, registered when the interval was committed, it is
signed for node ``root`` in a market without a grid, and no id or ``seq`` appears twice.
``book_root``: the Merkle root of the published ids equals the committed ``bookRoot`` (event
and ``intervalInfo``) and the root the publication states."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from audit.checks.violations import (
    BOOK_ROOT,
    SIGNATURES,
    CheckLog,
    address_key,
    hex_of,
    is_uint,
    short,
)
from audit.evidence import PublishedBook, PublishedOrder, SignatureAnswer
from ledger import eip712 as signing
from ledger.errors import BadSignature, InputError
from ledger.events import IntervalCommitted
from ledger.merkle import EMPTY_ROOT, MerkleTree
from ledger.records import IntervalInfo
from ledger.units import PricePerWh, Wh
from market.orders import DROPPED, EXPIRED, Order, Side, is_expired


@dataclass
class PublishedSet:
    """The published set as the audit reads it."""

    orders: dict[str, Order] = field(default_factory=dict)
    """Every well-formed order by its recomputed id (bad signatures included)."""
    fills: dict[str, int] | None = None
    ids: list[bytes] = field(default_factory=list)
    """Every published id that is 32 bytes of hex, as bytes (for the root)."""
    expired: set[str] = field(default_factory=set)
    """Orders whose ``expiry`` is before the published ``closedAt``: in the set and its
    root, but not in the clearing (:func:`market.orders.is_expired`)."""
    marked_expired: set[str] = field(default_factory=set)
    """Orders the publication marks ``expired``."""
    marked_dropped: set[str] = field(default_factory=set)
    """Orders the publication marks ``dropped`` (their participant defaulted at commit)."""
    dropped_parties: set[str] = field(default_factory=set)
    """The defaulters the audit accepted (:mod:`audit.checks.defaulters`), checksum: their
    orders do not enter the clearing that was committed."""
    nodes: dict[str, str] = field(default_factory=dict)
    """Each well-formed order's signed grid node, by id."""

    def unexpired_orders(self) -> list[Order]:
        """The orders that enter the clearing of the set: every well-formed one but the
        expired."""
        return [o for oid, o in self.orders.items() if oid not in self.expired]

    def live_orders(self) -> list[Order]:
        """The orders that enter the clearing that was committed: the unexpired ones but
        those of the dropped parties."""
        return [o for o in self.unexpired_orders() if o.participant not in self.dropped_parties]


def check_signatures(
    book: PublishedBook,
    domain: signing.Domain,
    registered_before: Callable[[str], bool],
    checks: CheckLog,
    signature_answer: Callable[[str, str, int], SignatureAnswer] | None = None,
    commit_block: int | None = None,
) -> PublishedSet:
    """The ``signatures`` check; returns the well-formed orders for the other checks.

    An order whose signature does not recover to its participant passes only as a contract
    account's: the publication names the block (``signatureBlock``, before the commit's
    ``commit_block``) at which the market found it accepted, and ``signature_answer`` (the
    chain, :attr:`audit.evidence.LedgerEvidence.signature_answers`) says the participant
    held code there and accepted the order as ``commitInterval`` asks."""
    t = book.interval
    separator = domain.separator
    out = PublishedSet(fills={})
    problems: list[str] = []
    published_domain = book.domain
    if isinstance(published_domain, Mapping):
        expected = domain.as_json()
        shown = {k: published_domain.get(k) for k in expected}
        if {k: str(v).lower() for k, v in shown.items()} != {
            k: str(v).lower() for k, v in expected.items()
        }:
            problems.append(f"published domain {shown} differs from the chain's {expected}")
    seen_ids: set[str] = set()
    seen_seq: dict[int, str] = {}
    for i, entry in enumerate(book.orders):
        label = f"order {i} ({short(str(entry.id))})"
        message = entry.message
        if not isinstance(message, Mapping):
            problems.append(f"{label}: no signed message")
            continue
        try:
            order_hash = signing.digest(separator, "Order", message)
        except InputError as err:
            problems.append(f"{label}: malformed message: {err.message}")
            continue
        order_id = hex_of(order_hash)
        published_id = str(entry.id).lower()
        if published_id != order_id:
            problems.append(
                f"{label}: id expected {order_id} (the EIP-712 digest) found {entry.id}"
            )
        if order_id in seen_ids:
            problems.append(f"{label}: order {order_id} is published twice")
            continue
        seen_ids.add(order_id)
        out.ids.append(order_hash)
        participant = str(message.get("participant", ""))
        try:
            signer = signing.recover(order_hash, entry.signature)
        except BadSignature as err:
            problems.append(f"{label}: signature is invalid: {err.message}")
        else:
            if signer != participant.lower():
                problem = _contract_signature_problem(
                    entry, participant, order_id, signature_answer, commit_block
                )
                if problem is not None:
                    problems.append(
                        f"{label}: signature recovers to {signer}, not to participant "
                        f"{participant}, {problem}"
                    )
        if str(message.get("interval")) != str(t):
            problems.append(f"{label}: signed for interval {message.get('interval')!r}, not {t}")
        elif not registered_before(participant):
            problems.append(
                f"{label}: participant {participant} was not registered when {t} was committed"
            )
        if not is_uint(entry.seq):
            problems.append(f"{label}: seq {entry.seq!r} is not a non-negative integer")
            continue
        if entry.seq in seen_seq:
            problems.append(f"{label}: seq {entry.seq} is also the seq of {seen_seq[entry.seq]}")
        seen_seq[entry.seq] = short(order_id)
        try:
            side = {signing.SIDE_BUY: Side.BUY, signing.SIDE_SELL: Side.SELL}[int(message["side"])]
            out.orders[order_id] = Order(
                id=order_id,
                side=side,
                quantity_wh=Wh(int(message["quantityWh"])),
                price_per_wh=PricePerWh(int(message["pricePerWh"])),
                seq=entry.seq,
                participant=address_key(participant),
            )
        except (KeyError, ValueError, TypeError, InputError) as err:
            problems.append(f"{label}: not an order of this market: {err}")
            continue
        node = str(message.get("node"))
        out.nodes[order_id] = node
        if book.grid is None and node != signing.DEFAULT_NODE:
            problems.append(
                f"{label}: signed for node {node!r}; the market clears on no grid, its one "
                f"node is {signing.DEFAULT_NODE!r}"
            )
        _mark_expiry(out, order_id, entry, message, book.closed_at)
        if out.fills is not None:
            if entry.filled_wh is None:
                out.fills = None
            elif not is_uint(entry.filled_wh):
                problems.append(f"{label}: filledWh {entry.filled_wh!r} is not a quantity")
                out.fills = None
            else:
                out.fills[order_id] = int(entry.filled_wh)
    checks.fail_all(SIGNATURES, problems)
    return out


def _mark_expiry(
    out: PublishedSet,
    order_id: str,
    entry: PublishedOrder,
    message: Mapping[str, Any],
    closed_at: Any,
) -> None:
    """Note whether the order is expired by the rule (expiry not after ``closedAt``, when the
    publication states one) and whether the publication marks it so."""
    if entry.status == EXPIRED:
        out.marked_expired.add(order_id)
    elif entry.status == DROPPED:
        out.marked_dropped.add(order_id)
    if is_uint(closed_at):
        try:
            if is_expired(int(message["expiry"]), int(closed_at)):
                out.expired.add(order_id)
        except (KeyError, ValueError, TypeError):
            pass


def _contract_signature_problem(
    entry: PublishedOrder,
    participant: str,
    order_id: str,
    signature_answer: Callable[[str, str, int], SignatureAnswer] | None,
    commit_block: int | None,
) -> str | None:
    """Why ``entry`` is not accepted as a contract account's order (None when it is)."""
    block = entry.signature_block
    if not is_uint(block):
        return "and no signatureBlock names where its contract account accepted it"
    if commit_block is not None and block >= commit_block:
        return f"and its signatureBlock {block} is not before the commit's block {commit_block}"
    if signature_answer is None:
        return f"and the chain was not asked at its signatureBlock {block}"
    try:
        key = address_key(participant)
    except ValueError:
        return "and its participant is no address"
    answer = signature_answer(key, order_id, block)
    if not answer.contract:
        return f"and {participant} held no code at its signatureBlock {block}"
    if not answer.accepts:
        return f"and {participant}'s isValidSignature did not accept it at block {block}"
    return None


def check_book_root(
    book: PublishedBook,
    parsed: PublishedSet,
    commit: IntervalCommitted,
    state: IntervalInfo | None,
    checks: CheckLog,
) -> None:
    """The ``book_root`` check of one committed interval (``state``: its ``intervalInfo``)."""
    root = MerkleTree.of(parsed.ids).root if parsed.ids else EMPTY_ROOT
    if len(parsed.ids) != len(book.orders):
        checks.fail(
            BOOK_ROOT,
            f"only {len(parsed.ids)} of {len(book.orders)} published orders have a usable id",
        )
    if root != commit.book_root:
        checks.fail(
            BOOK_ROOT,
            f"root of the {len(parsed.ids)} published orders expected {hex_of(commit.book_root)} "
            f"(committed bookRoot) found {hex_of(root)}",
        )
    stated = book.book_root
    if stated is not None and str(stated).lower() != hex_of(root):
        checks.fail(
            BOOK_ROOT,
            f"the publication states bookRoot {stated}, its orders' root is {hex_of(root)}",
        )
    if state is not None and state.book_root != commit.book_root:
        checks.fail(
            BOOK_ROOT,
            f"intervalInfo bookRoot {hex_of(state.book_root)} differs from the committed event's "
            f"{hex_of(commit.book_root)}",
        )


__all__ = [
    "PublishedSet",
    "check_book_root",
    "check_signatures",
]
