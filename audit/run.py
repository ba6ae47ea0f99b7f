"""Running an audit: read the chain and the published sets, then check them.

The edge of the audit: :mod:`audit.chain_source` reads the chain's record and
:mod:`audit.order_sources` the published order sets; :func:`audit.report.audit_evidence`
(pure) checks them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from eth_utils.address import is_address, to_checksum_address

from audit.chain_source import (
    CreationSource,
    LedgerReader,
    read_block_times,
    read_ledger,
    read_signature_answers,
    web3_of,
)
from audit.checks.violations import is_uint
from audit.evidence import (
    AuditError,
    ClearingRules,
    MissingBook,
    MissingReadings,
    PublishedBook,
    PublishedReadings,
)
from audit.order_sources import OrderSourceLike, order_source
from audit.reading_sources import ReadingSourceLike, reading_source
from audit.report import AuditReport, audit_evidence, select_intervals
from ledger.errors import WattledgerError
from market.defaulters import REFUSED_SIGNATURE


def audit_market(
    chain: Any,
    market_address: str,
    source: OrderSourceLike,
    from_t: int | None = None,
    to_t: int | None = None,
    *,
    block: int | None = None,
    from_block: int = 0,
    rules: ClearingRules | None = None,
    reader: LedgerReader | None = None,
    progress: Callable[[str], None] | None = None,
    creation: CreationSource | None = None,
    readings: ReadingSourceLike | None = None,
) -> AuditReport:
    """Audit a market: the library entry (the ``wattledger audit`` command calls it too).

    ``chain`` is a :class:`chain.connection.Chain`, a ``Web3`` or a JSON-RPC URL.
    ``source`` is where the published order sets come from: a market API base URL, a
    :class:`market.client.MarketClient`, a directory of ``<t>.json`` files (with an optional
    ``market.json``), a mapping ``{t: GET /intervals/{t}/orders body}``, or an
    :class:`audit.order_sources.OrderSource`. ``block`` pins the audit to a block (default:
    the latest); ``from_block`` is where the event scan starts (the market's deployment
    block, to read fewer logs). ``rules`` overrides the mechanism the source declares.
    ``reader`` replaces the chain reader (tests use it to tamper with the events the audit
    reads). ``creation`` names the market's creation transaction (and the constructor
    arguments its deployment record states), which the ``code`` check then verifies.
    ``readings`` is where the settlement service's published readings come from (its base
    URL, a client, a folder of ``<t>.json``, a mapping ``{t: GET /intervals/{t}/readings
    body}``): the readings kept off-chain, which the ``readings`` check verifies; without
    it that check is not run (settlement does not depend on them, see
    :mod:`audit.checks.readings`). Raises :class:`AuditError` when the evidence cannot be read.
    """
    say = progress or (lambda _msg: None)
    w3 = web3_of(chain)
    orders = order_source(source)
    chosen_rules = rules or orders.rules()
    if chosen_rules is None:
        chosen_rules = ClearingRules(source=f"DESIGN default; {orders.description} declares none")
    try:
        ledger = (reader or read_ledger)(
            w3,
            market_address,
            block=block,
            from_block=from_block,
            progress=say,
            logs=getattr(chain, "logs", None),  # a chain.connection.Chain reads its own logs
            creation=creation,
        )
    except WattledgerError:
        raise
    except Exception as err:  # the node failed part-way (RPC, timeout, pruned state)
        raise AuditError(
            f"Reading the market's record from the chain failed: {type(err).__name__}: "
            f"{str(err)[:300]}."
        ) from err
    chosen = select_intervals(ledger.commits, from_t, to_t)
    books: dict[int, PublishedBook | MissingBook] = {}
    for n, t in enumerate(chosen, 1):
        say(f"fetching the published order set of interval {t} ({n}/{len(chosen)})")
        books[t] = orders.book(t)
    published: dict[int, PublishedReadings | MissingReadings] | None = None
    if readings is not None:
        source_of_readings = reading_source(readings)
        published = {}
        for n, t in enumerate(chosen, 1):
            say(f"fetching the published readings of interval {t} ({n}/{len(chosen)})")
            published[t] = source_of_readings.readings(t)
    named = [
        d["block"] + 1
        for book in books.values()
        if isinstance(book, PublishedBook)
        for d in book.defaulters
        if isinstance(d, dict) and isinstance(d.get("block"), int)
    ]
    if named:
        say(f"reading the times of {len(named)} blocks defaulters were named at")
        try:
            times = read_block_times(w3, named, ledger.block_number)
        except Exception as err:  # the node failed part-way
            raise AuditError(
                f"Reading block times from the chain failed: {type(err).__name__}: "
                f"{str(err)[:300]}."
            ) from err
        ledger = dataclasses.replace(ledger, block_times=times)
    asked = signature_questions(b for b in books.values() if isinstance(b, PublishedBook))
    if asked:
        say(f"asking {len(asked)} contract-account signatures at the blocks they are named at")
        try:
            answers = read_signature_answers(w3, market_address, asked, ledger.block_number)
        except Exception as err:  # the node failed part-way
            raise AuditError(
                f"Reading signatures from the chain failed: {type(err).__name__}: {str(err)[:300]}."
            ) from err
        ledger = dataclasses.replace(ledger, signature_answers=answers)
    scanned = scan_range(chosen, from_t, to_t, _last_closed(orders))
    if scanned is not None:
        low, high = scanned
        say(f"scanning intervals {low}..{high} for published sets without a commit")
        for t in range(low, high + 1):
            if t not in books:
                books[t] = orders.book(t)
    return audit_evidence(
        ledger, books, chosen_rules, from_t, to_t, say, scanned, readings=published
    )


def signature_questions(books: Iterable[PublishedBook]) -> list[tuple[str, str, str, int]]:
    """``(participant, order id, signature, block)`` for every order the published sets name
    a block for: an order with a ``signatureBlock`` (a contract account's), and the order a
    ``refused_signature`` defaulter names, at the defaulter's block. Malformed entries are
    skipped (the checks report them)."""
    asked: list[tuple[str, str, str, int]] = []
    for book in books:
        signed: dict[str, tuple[str, str]] = {}
        for order in book.orders:
            message = order.message if isinstance(order.message, Mapping) else {}
            participant, signature = message.get("participant"), order.signature
            if not isinstance(participant, str) or not is_address(participant):
                continue
            if not isinstance(order.id, str) or not isinstance(signature, str):
                continue
            key = to_checksum_address(participant)
            signed[order.id.lower()] = (key, signature)
            if is_uint(order.signature_block):
                asked.append((key, order.id.lower(), signature, int(order.signature_block)))
        for d in book.defaulters:
            oid, block = d.get("order"), d.get("block")
            if d.get("reason") != REFUSED_SIGNATURE or not isinstance(oid, str):
                continue
            if is_uint(block) and oid.lower() in signed:
                participant, signature = signed[oid.lower()]
                asked.append((participant, oid.lower(), signature, int(block)))
    return asked


DEFAULT_SCAN = 96
"""Closed intervals before the last one the audit scans for a published set without a commit
when no ``--from`` is given (a day of 15-minute intervals), besides every interval from the
first committed one on."""
MAX_SCAN = 2_000
"""Most intervals one audit scans for published sets without a commit: each costs a request
(``GET /intervals/{t}/orders``); audit a longer history in ranges (``--from``/``--to``)."""


def _last_closed(orders: Any) -> int | None:
    last = getattr(orders, "last_closed_interval", None)
    return None if last is None else last()


def scan_range(
    committed: list[int], from_t: int | None, to_t: int | None, last_closed: int | None
) -> tuple[int, int] | None:
    """The intervals ``[low, high]`` the ``uncommitted`` check scans, or None: up to ``to_t``
    (else the last interval whose gate the source says has closed, else the last committed);
    from ``from_t`` (else the first committed interval or :data:`DEFAULT_SCAN` intervals
    before the end, whichever is earlier); at most :data:`MAX_SCAN` intervals, the latest."""
    high = to_t if to_t is not None else last_closed
    if high is None:
        high = committed[-1] if committed else None
    if high is None:
        return None
    if from_t is not None:
        low = from_t
    else:
        low = high - DEFAULT_SCAN + 1
        if committed:
            low = min(low, committed[0])
    low = max(low, high - MAX_SCAN + 1)
    return (low, high) if low <= high else None


__all__ = ["DEFAULT_SCAN", "MAX_SCAN", "audit_market", "scan_range", "signature_questions"]
