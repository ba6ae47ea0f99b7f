"""The audit: anyone re-derives and verifies every committed interval from public data.

Nobody has to trust the operator. For each interval committed on-chain the audit takes the
signed order set the market published and the chain's own record, and checks:

``signatures``
    Every published order is a well-formed ``Order`` message for this interval; its id is its
    EIP-712 digest under the market's domain as the *chain* defines it (chain id from the
    node, ``verifyingContract`` the audited address, name and version from the contract's
    EIP-5267 ``eip712Domain()``); its signature recovers to its ``participant``, who was a
    registered participant when the interval was committed; no id appears twice.
``book_root``
    The Merkle root (:mod:`ledger.merkle`) of the published ids equals the ``bookRoot`` of
    ``IntervalCommitted`` and of ``intervalInfo(t)``, and the root the publication states.
``commitment``
    The trades read from the ``commitInterval`` calldata are the committed ones: their count
    is ``tradeCount``, their order ids fold to ``ordersDigest`` and the trade hash chain
    (``TradeChain``) to ``settlementHead``; ``intervalInfo(t)`` agrees with the event.
``defaulters``
    Every party the interval names as a defaulter (dropped at commit for want of collateral,
    :mod:`market.defaulters`) was short at the block it names: its free balance there,
    rebuilt from the market's events, was below what its trades of that round's clearing
    lock; every party short there was named; the block lies between the gate closure and the
    commit; and exactly the defaulters' orders are published ``dropped``.
``reclear``
    :func:`market.clearing.clear` on the published set without the dropped parties, with the
    market's mechanism, gives exactly the committed trades, in commit order: buy and sell
    order ids, buyer and seller, quantity and price, and the published fills.
``properties``
    Every DESIGN §4 property (:mod:`market.properties`) holds on the *committed* result.
``grid``
    For an interval of a market that clears on a grid (docs/grid.md), in place of
    ``reclear`` and ``properties``: the published grid document is the grid operator's
    (EIP-712 signature, ``keccak256`` = the stated ``gridRoot``), re-clearing on it with the
    registered nodes gives exactly the committed trades and their seller prices, P1-P6 hold
    (P6 by the exact dual bound), and re-settling with both prices balances
    (:mod:`audit.checks.grid`). Until the chain records ``gridRoot``, the seller prices, the
    grid operator and the nodes, they are read from the market API (``GET /market``,
    ``GET /intervals/{t}/grid`` and ``/clearing``).
``settlement``
    :mod:`settlement.model` recomputes, from the committed trades, the snapshotted terms and
    the readings accepted on-chain (``ReadingSubmitted``, each re-verified against the meter
    key registered at the time), what each commit locked (``CollateralLocked``), how every
    settled trade settled (``TradeSettled``: delivered, payment, refund, penalty) and each
    party's netted change (``ParticipantSettled``); each trade settles at most once, in
    cursor order, and ``IntervalSettled`` comes exactly when all have.
``readings``
    Only sellers' readings go on-chain; the settlement service keeps the others and publishes
    every reading it accepted (``GET /intervals/{t}/readings``). Each reading of that
    off-chain set is signed by its participant's meter key in force at the commit, is of a
    participant that sold nothing, and no participant has two; each entry published as
    on-chain is the chain's (:mod:`audit.checks.readings`). Run only with a source of
    published readings (``--readings``): settlement does not depend on them.

``receipts``, ``cancels``, ``late_orders``
    What the operator did with each order (:mod:`audit.checks.receipts`): every published
    receipt is signed by the account that committed the interval, each order's ``seq`` is
    its receipt's and seq order is arrival order; no order whose cancel was received before
    the gate closed is in the book; no order received at or after it clears.

and, for every closed interval the audit scans (:func:`audit.run.scan_range`) that has no
commit on-chain:

``uncommitted``
    Its published set is empty, or the interval has not ended yet (its commit may follow).

and, for the market as a whole at the audited block:

``conservation``
    Every participant's free and locked balance, rebuilt from the events alone (deposits,
    withdrawals, locks, settlement releases and credits), equals ``balanceOf``; their sum
    equals ``totalEscrowed()`` and ``deposits - withdrawals``; the token balance of the market
    covers it (a surplus, which anyone can cause by sending tokens directly, is a note).
``code``
    The runtime code at the audited address is the EnergyMarket this audit mirrors (the
    committed artifact), byte for byte outside the exact ranges the compiler reserves for
    immutables, so the settlement rules it re-runs are the ones the chain runs; and, when the
    deployment record (or ``--creation-tx``) names the market's creation transaction, that
    transaction created this address directly with the build's init code and the recorded
    constructor arguments, so the immutables are what the constructor wrote.

Layout: :mod:`audit.evidence` holds what the audit reads, as plain values
(:class:`~audit.evidence.LedgerEvidence`, :class:`~audit.evidence.PublishedBook`);
:mod:`audit.checks` the comparisons; this module runs them (:func:`audit_evidence`, pure) and
builds the :class:`AuditReport`. Reading the chain and the published sets is the edge,
:mod:`audit.chain_source` and :mod:`audit.order_sources`; :func:`audit.run.audit_market` is
the library entry that does both.

What the audit trusts, and why
    * The chain itself, read at one pinned block: it is the ledger of record.
    * The operator's receipts, as far as they go: the ``seq`` and ``receivedAt`` the operator
      signed. The audit holds the publication and the commit to them (a ``seq`` that differs
      from its receipt's, a seq order that is not arrival order, a cancelled or late order in
      the book all fail), but an operator that re-signs a receipt consistently can only be
      caught by the participant holding the original (docs/participants.md).
    * The mechanism and ``k``: the chain does not record them. They are the market's declared
      rule from ``GET /market`` (or ``market.json`` beside archived order sets), or what the
      auditor passes; never the per-interval clearing record, which the operator could bend to
      fit a wrong price.
    * The EnergyMarket build in this checkout: the ``code`` check compares the deployed code
      with it, and the settlement model mirrors it. Audit an older deployment with the
      wattledger version that deployed it.
    * That the published set is the whole book. The root proves the set is what was committed,
      not that no signed order was left out before the root was built: a participant checks
      its own order's inclusion proof (``GET /orders/{id}/proof``), and its order receipt
      proves an order that was accepted and left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from audit.checks.book import PublishedSet, check_book_root, check_signatures
from audit.checks.clearing import check_properties, check_reclear
from audit.checks.commitment import check_commitment
from audit.checks.defaulters import check_defaulters
from audit.checks.grid import check_grid_on_chain, check_published_grid
from audit.checks.market import check_code, check_conservation
from audit.checks.meters import MeterHistory
from audit.checks.readings import Metered, check_readings
from audit.checks.receipts import (
    check_cancels,
    check_late_orders,
    check_receipts,
    check_uncommitted,
)
from audit.checks.settlement import check_settlement
from audit.checks.violations import (
    BOOK_ROOT,
    INTERVAL_CHECKS,
    RECLEAR,
    SIGNATURES,
    CheckLog,
    Violation,
    decimal_text,
)
from audit.evidence import (
    ClearingRules,
    LedgerEvidence,
    MissingBook,
    MissingReadings,
    PublishedBook,
    PublishedReadings,
)
from ledger.events import IntervalEvents
from ledger.records import Terms
from ledger.units import currency_per_kwh_from_price_per_wh

NOT_COMMITTED = "not committed"
"""The settlement state of an interval the audit found published but not committed."""


@dataclass(frozen=True)
class IntervalReport:
    """The audit of one committed interval."""

    interval: int
    violations: tuple[Violation, ...]
    notes: tuple[str, ...]
    trade_count: int
    volume_wh: int
    prices_per_wh: tuple[int, ...]
    """The distinct committed trade prices, ascending."""
    settlement: str
    metered: Metered | None = None
    """The interval's metered energy, from the chain's readings and the published off-chain
    set (None for an interval never committed)."""

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.violations

    @property
    def failed_checks(self) -> tuple[str, ...]:
        """Names of the checks that failed, in report order."""
        failed = {v.check for v in self.violations}
        return tuple(c for c in INTERVAL_CHECKS if c in failed)

    def describe(self) -> str:
        """``3 trades, 1,234 Wh @ 0.25/kWh, settled``."""
        trades = f"{self.trade_count} trade{'s' if self.trade_count != 1 else ''}"
        if not self.prices_per_wh:
            return f"{trades}, {self.settlement}"
        low, high = self.prices_per_wh[0], self.prices_per_wh[-1]
        price = decimal_text(currency_per_kwh_from_price_per_wh(low))
        if high != low:
            price += "-" + decimal_text(currency_per_kwh_from_price_per_wh(high))
        return f"{trades}, {self.volume_wh:,} Wh @ {price}/kWh, {self.settlement}"

    def line(self) -> str:
        """One line: ``interval 12  PASS  ...`` or ``interval 12  FAIL  check: what; ...``."""
        if self.ok:
            return f"interval {self.interval}  PASS  {self.describe()}"
        shown = "; ".join(f"{v.check}: {v.message}" for v in self.violations)
        return f"interval {self.interval}  FAIL  {shown}"

    def to_json(self) -> dict[str, Any]:
        """The interval's report as JSON values (big integers as decimal strings)."""
        return {
            "interval": self.interval,
            "ok": self.ok,
            "tradeCount": self.trade_count,
            "volumeWh": self.volume_wh,
            "pricesPerWh": [str(p) for p in self.prices_per_wh],
            "settlement": self.settlement,
            "failedChecks": list(self.failed_checks),
            "violations": [v.to_json() for v in self.violations],
            "notes": list(self.notes),
            "readings": None if self.metered is None else self.metered.to_json(),
        }


@dataclass(frozen=True)
class AuditReport:
    """The audit of a market at one block: every committed interval and the market checks."""

    market: str
    chain_id: int
    block_number: int
    block_timestamp: int
    rules: ClearingRules
    intervals: tuple[IntervalReport, ...]
    market_violations: tuple[Violation, ...]
    market_notes: tuple[str, ...]
    range_from: int | None = None
    range_to: int | None = None

    @property
    def ok(self) -> bool:
        """True when no check failed anywhere."""
        return not self.market_violations and all(r.ok for r in self.intervals)

    @property
    def violations(self) -> tuple[Violation, ...]:
        """Every violation: the intervals' in interval order, then the market's."""
        out = [v for r in self.intervals for v in r.violations]
        return (*out, *self.market_violations)

    def interval(self, t: int) -> IntervalReport:
        """The report of interval ``t`` (KeyError when it was not audited)."""
        for r in self.intervals:
            if r.interval == t:
                return r
        raise KeyError(t)

    def market_line(self) -> str:
        """The market checks in one line."""
        if self.market_violations:
            shown = "; ".join(f"{v.check}: {v.message}" for v in self.market_violations)
            return f"market  FAIL  {shown}"
        return "market  PASS  " + "; ".join(self.market_notes)

    def summary(self) -> str:
        """One line: what was audited where, and how it went."""
        passed = sum(r.ok for r in self.intervals)
        failed = len(self.intervals) - passed
        verdict = "PASS" if self.ok else "FAIL"
        committed = sum(r.settlement != NOT_COMMITTED for r in self.intervals)
        never = len(self.intervals) - committed
        also = f" and {never} published but never committed" if never else ""
        span = ""
        if self.range_from is not None or self.range_to is not None:
            span = (
                f" (intervals {'' if self.range_from is None else self.range_from}.."
                f"{'' if self.range_to is None else self.range_to})"
            )
        return (
            f"{verdict}: audited {committed} committed interval"
            f"{'s' if committed != 1 else ''}{also}{span} of {self.market} on chain "
            f"{self.chain_id} at block {self.block_number}: {passed} passed, {failed} failed, "
            f"{len(self.violations)} violation{'s' if len(self.violations) != 1 else ''}; "
            f"mechanism {self.rules.mechanism}"
            + (
                f" k={self.rules.k[0]}/{self.rules.k[1]}"
                if self.rules.mechanism == "uniform"
                else ""
            )
            + f" ({self.rules.source})"
        )

    def lines(self) -> list[str]:
        """The human report: one line per interval, the market line, the summary."""
        return [*(r.line() for r in self.intervals), self.market_line(), self.summary()]

    def to_json(self) -> dict[str, Any]:
        """The whole report as JSON values (``--json``)."""
        return {
            "ok": self.ok,
            "market": self.market,
            "chainId": self.chain_id,
            "blockNumber": self.block_number,
            "blockTimestamp": self.block_timestamp,
            "mechanism": {
                "name": self.rules.mechanism,
                "k": list(self.rules.k),
                "source": self.rules.source,
            },
            "range": {"from": self.range_from, "to": self.range_to},
            "intervals": [r.to_json() for r in self.intervals],
            "marketChecks": {
                "ok": not self.market_violations,
                "violations": [v.to_json() for v in self.market_violations],
                "notes": list(self.market_notes),
            },
            "summary": {
                "intervals": len(self.intervals),
                "passed": sum(r.ok for r in self.intervals),
                "failed": sum(not r.ok for r in self.intervals),
                "violations": len(self.violations),
            },
        }


def audit_interval(
    t: int,
    ledger: LedgerEvidence,
    book: PublishedBook | MissingBook | None,
    rules: ClearingRules,
    events: IntervalEvents | None = None,
    meters: MeterHistory | None = None,
    readings: PublishedReadings | MissingReadings | None = None,
) -> IntervalReport:
    """Run every interval check on committed interval ``t``.

    ``events`` and ``meters`` are :meth:`LedgerEvidence.events_by_interval` and
    :class:`MeterHistory` of ``ledger``; :func:`audit_evidence` builds them once for all
    intervals. ``readings``: the interval's published readings (None: no source, the
    ``readings`` check is not run).
    """
    commit = ledger.commits[t]
    if events is None:
        events = ledger.events_by_interval().get(t, IntervalEvents(t, commit.event))
    if meters is None:
        meters = MeterHistory(ledger.meter_changes)
    state = ledger.states.get(t)
    checks = CheckLog(t)
    check_commitment(commit, state, meters.indices, checks)
    trades = commit.trades or ()
    if commit.trades is None:
        checks.fail(RECLEAR, "not compared: the committed trades cannot be read")

    parsed: PublishedSet | None = None
    if book is None or isinstance(book, MissingBook):
        reason = "no source" if book is None else book.reason
        checks.fail(BOOK_ROOT, f"no published order set to check ({reason})")
        checks.fail(SIGNATURES, f"no published order set to check ({reason})")
    else:
        parsed = check_signatures(
            book,
            ledger.order_domain,
            lambda p: meters.registered_at(p, commit.event.position),
            checks,
            ledger.signature_answer,
            commit.event.block_number,
        )
        check_book_root(book, parsed, commit.event, state, checks)
        check_defaulters(book, parsed, commit.event, ledger, rules, checks)
        if commit.trades is not None and book.grid is not None:
            # A grid interval re-clears on its grid document (docs/grid.md §8), not §4.
            exported = {r.participant: r.exported_wh for r in ledger.readings if r.interval == t}
            terms = (
                None if state is None else Terms(state.penalty_price_per_wh, state.tolerance_bps)
            )
            check_grid_on_chain(t, book.grid, ledger, checks)
            check_published_grid(
                t,
                book.grid,
                ledger.order_domain,
                parsed.live_orders(),
                trades,
                rules,
                checks,
                exported_wh=exported,
                terms=terms,
                order_nodes=parsed.nodes,
            )
        elif commit.trades is not None:
            check_reclear(parsed, trades, rules, checks)
            check_properties(parsed, trades, rules, checks)
        operators = {commit.sender} if commit.sender is not None else ledger.operators
        times = check_receipts(book, ledger.order_domain, operators, checks)
        check_cancels(book, parsed, times, trades, checks)
        check_late_orders(book, parsed, times, trades, checks)
    if parsed is None and commit.trades is not None:
        checks.fail(RECLEAR, "not re-cleared: no published order set")

    status = check_settlement(commit, trades, state, events, ledger, meters, checks)
    separator = ledger.order_domain.separator
    metered = check_readings(commit, trades, events.readings, readings, separator, meters, checks)
    return IntervalReport(
        interval=t,
        violations=tuple(checks.violations),
        notes=tuple(checks.notes),
        trade_count=len(trades),
        volume_wh=sum(x.quantity_wh for x in trades),
        prices_per_wh=tuple(sorted({x.price_per_wh for x in trades})),
        settlement=status,
        metered=metered,
    )


def audit_uncommitted(t: int, ledger: LedgerEvidence, book: PublishedBook) -> IntervalReport:
    """The ``uncommitted`` check of interval ``t``, closed by the market but without a
    commit on-chain (and its receipts, against every account that committed the market)."""
    checks = CheckLog(t)
    end = ledger.interval_end(t)
    ended = None if end is None else ledger.block_timestamp >= end
    if check_uncommitted(book, ended, checks):
        check_receipts(book, ledger.order_domain, ledger.operators, checks)
    return IntervalReport(
        interval=t,
        violations=tuple(checks.violations),
        notes=tuple(checks.notes),
        trade_count=0,
        volume_wh=0,
        prices_per_wh=(),
        settlement=NOT_COMMITTED,
    )


def audit_evidence(
    ledger: LedgerEvidence,
    books: Mapping[int, PublishedBook | MissingBook],
    rules: ClearingRules,
    from_t: int | None = None,
    to_t: int | None = None,
    progress: Callable[[str], None] | None = None,
    scanned: tuple[int, int] | None = None,
    readings: Mapping[int, PublishedReadings | MissingReadings] | None = None,
) -> AuditReport:
    """Audit the committed intervals of ``ledger`` in ``[from_t, to_t]`` against ``books``,
    and the intervals of ``books`` in that range that were never committed (``uncommitted``:
    a non-empty published set without a commit fails once the interval has ended).

    Pure: every input is a value. Committed intervals without an entry in ``books`` fail
    ``book_root`` and ``signatures`` (nothing was published to check). ``readings``: the
    settlement service's published readings per interval; None when the audit has no such
    source (the ``readings`` check is then not run, and the market notes say so); a
    committed interval missing from it fails ``readings``.
    """
    say = progress or (lambda _msg: None)
    chosen = select_intervals(ledger.commits, from_t, to_t)
    grouped = ledger.events_by_interval()
    meters = MeterHistory(ledger.meter_changes)
    reports = []
    for n, t in enumerate(chosen, 1):
        say(f"checking interval {t} ({n}/{len(chosen)})")
        events = grouped.get(t, IntervalEvents(t, ledger.commits[t].event))
        published: PublishedReadings | MissingReadings | None = None
        if readings is not None:
            published = readings.get(t, MissingReadings(t, "no source entry"))
        reports.append(audit_interval(t, ledger, books.get(t), rules, events, meters, published))
    pending: list[str] = []
    for t in select_intervals(books, from_t, to_t):
        book = books[t]
        if t in ledger.commits or not isinstance(book, PublishedBook):
            continue
        report = audit_uncommitted(t, ledger, book)
        if report.violations:
            reports.append(report)
        pending.extend(f"interval {t}: {note}" for note in report.notes)
    reports.sort(key=lambda r: r.interval)
    market = CheckLog(None)
    check_code(ledger, market)
    check_conservation(ledger, market)
    if scanned is not None:
        market.notes.append(
            f"uncommitted: intervals {scanned[0]}..{scanned[1]} scanned for published sets "
            "without a commit"
        )
    market.notes.extend(pending)
    if readings is None and chosen:
        market.notes.append(
            "readings: the off-chain readings (of participants that sold nothing) were not "
            "checked: no source of published readings (--readings); settlement depends only "
            "on the sellers' readings on-chain, which the settlement check verified"
        )
    return AuditReport(
        market=ledger.market,
        chain_id=ledger.chain_id,
        block_number=ledger.block_number,
        block_timestamp=ledger.block_timestamp,
        rules=rules,
        intervals=tuple(reports),
        market_violations=tuple(market.violations),
        market_notes=tuple(market.notes),
        range_from=from_t,
        range_to=to_t,
    )


def select_intervals(
    commits: Iterable[int], from_t: int | None = None, to_t: int | None = None
) -> list[int]:
    """The committed intervals in ``[from_t, to_t]`` (either end open when None), ascending."""
    return sorted(
        t for t in commits if (from_t is None or t >= from_t) and (to_t is None or t <= to_t)
    )


__all__ = [
    "NOT_COMMITTED",
    "AuditReport",
    "IntervalReport",
    "audit_evidence",
    "audit_interval",
    "audit_uncommitted",
    "select_intervals",
]
