"""Property-based market audits: whole random markets pass the audit, and any bent number fails.

Hypothesis draws a market (3 to 6 participants, 1 to 3 intervals, random signed orders at a
few nearby prices, meter readings that are missing, short, at the tolerance boundary, exact or
over-delivering, chunked settlement that may stop part-way, withdrawals) and runs it through
the real API and the EnergyMarket contract on eth-tester (``test_audit_support``). The audit of
every such market passes, with the settlement state each interval really is in.

Then one number of the evidence is bent (a committed price, a reading, a settlement event, a
deposit, a published order) and the audit must fail and name the interval it belongs to: so
the clean result is not an audit that cannot fail.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_audit_support import PRICE, TOKEN, AuditChain, MarketPlan, run_plan

from audit.chain_source import read_ledger
from audit.checks.violations import BOOK_ROOT, CONSERVATION, RECLEAR, SETTLEMENT
from audit.evidence import LedgerEvidence, PublishedBook
from audit.order_sources import ApiOrderSource, MappingOrderSource
from audit.report import AuditReport, audit_evidence
from audit.run import audit_market

PRICE_STEP = 10_000_000_000  # 0.00001 currency/kWh
EXPORT_FACTORS = [(0, 1), (1, 2), (19, 20), (1, 1), (3, 2)]
"""exported = sold * num // den: nothing, half, exactly the 5 % tolerance, all, more."""


@pytest.fixture(scope="module")
def base() -> AuditChain:
    return AuditChain()


@st.composite
def market_plans(draw: st.DrawFn) -> MarketPlan:
    """A whole market to run: see the module docstring."""
    participants = draw(st.integers(3, 6))
    intervals = draw(st.integers(1, 3))
    steps = draw(st.lists(st.integers(-3, 3), min_size=1, max_size=4))
    # Bids sit a step above the drawn level and asks a step below, so most books cross.
    order = st.tuples(
        st.integers(0, participants - 1),
        st.sampled_from(("buy", "sell")),
        st.integers(1, 3_000),
        st.sampled_from(steps),
    ).map(lambda o: (o[0], o[1], o[2], PRICE + (o[3] + (1 if o[1] == "buy" else -1)) * PRICE_STEP))
    factor = st.one_of(
        st.none(),
        st.sampled_from(EXPORT_FACTORS),
        st.tuples(st.integers(0, 40), st.just(20)),
    )
    return MarketPlan(
        participants=participants,
        orders=[draw(st.lists(order, max_size=10)) for _ in range(intervals)],
        export_factors=[
            {who: draw(factor) for who in range(participants)} for _ in range(intervals)
        ],
        settle_chunk=draw(st.integers(1, 3)),
        last_interval=draw(st.sampled_from(("full", "partial", "none"))),
        withdrawals=draw(
            st.dictionaries(
                st.integers(0, participants - 1), st.sampled_from((TOKEN, 10 * TOKEN)), max_size=2
            )
        ),
    )


def expected_state(plan: MarketPlan, is_last: bool, trade_count: int) -> str:
    """The settlement state the plan leaves an interval in."""
    if not is_last or plan.last_interval == "full":
        return "settled"
    if plan.last_interval == "partial" and trade_count:
        if trade_count <= plan.settle_chunk:
            return "settled"
        return f"{plan.settle_chunk} of {trade_count} trades settled"
    return "awaiting settlement"


MUTATIONS = ("price", "reading", "settled trade", "deposit", "published order")


def bend(
    how: str, ledger: LedgerEvidence, books: dict[int, PublishedBook], pick: int
) -> tuple[LedgerEvidence, dict[int, PublishedBook], int | None] | None:
    """Bend one number of the evidence; return it with the interval it belongs to.

    None when the market has nothing of that kind to bend (e.g. no readings).
    """
    replace = dataclasses.replace
    if how == "price":
        traded = [t for t, c in sorted(ledger.commits.items()) if c.trades]
        if not traded:
            return None
        t = traded[pick % len(traded)]
        commit = ledger.commits[t]
        assert commit.trades is not None
        k = pick % len(commit.trades)
        trades = list(commit.trades)
        trades[k] = replace(trades[k], price_per_wh=trades[k].price_per_wh + 1)
        commits = {**ledger.commits, t: replace(commit, trades=tuple(trades))}
        return replace(ledger, commits=commits), books, t
    if how == "reading":
        if not ledger.readings:
            return None
        k = pick % len(ledger.readings)
        readings = list(ledger.readings)
        readings[k] = replace(readings[k], exported_wh=readings[k].exported_wh + 1)
        return replace(ledger, readings=tuple(readings)), books, readings[k].interval
    if how == "settled trade":
        if not ledger.trade_settlements:
            return None
        k = pick % len(ledger.trade_settlements)
        events = list(ledger.trade_settlements)
        events[k] = replace(events[k], refund_base_units=events[k].refund_base_units + 1)
        return replace(ledger, trade_settlements=tuple(events)), books, events[k].interval
    if how == "deposit":
        escrow = list(ledger.escrow)
        escrow[pick % len(escrow)] = replace(
            escrow[pick % len(escrow)],
            amount_base_units=escrow[pick % len(escrow)].amount_base_units + 1,
        )
        return replace(ledger, escrow=tuple(escrow)), books, None
    t = sorted(books)[pick % len(books)]
    book = books[t]
    if not book.orders:
        return None
    k = pick % len(book.orders)
    bent = {**books, t: replace(book, orders=book.orders[:k] + book.orders[k + 1 :])}
    return ledger, bent, t


def where(report: AuditReport) -> set[int | None]:
    return {v.interval for v in report.violations}


@settings(
    # Each example deploys nothing but commits, reads and settles on eth-tester: 10 under the
    # default profile, ten times more under --hypothesis-profile=thorough.
    max_examples=max(10, settings().max_examples // 10),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=market_plans(), how=st.sampled_from(MUTATIONS), pick=st.integers(0, 1_000))
def test_every_honest_market_passes_and_every_bent_number_fails(
    base: AuditChain, plan: MarketPlan, how: str, pick: int
) -> None:
    with base.session() as session:
        committed = run_plan(session, plan)
        report = audit_market(session.chain, base.market, session.api)
        assert report.ok, "\n".join(report.lines())
        assert [r.interval for r in report.intervals] == committed
        for r in report.intervals:
            clearing = session.api.clearing(r.interval)
            assert r.volume_wh == clearing["volumeWh"]
            assert r.trade_count == len(clearing["trades"])
            is_last = r.interval == committed[-1]
            assert r.settlement == expected_state(plan, is_last, r.trade_count), r.line()
        if not committed:
            return

        ledger = read_ledger(session.chain.w3, base.market)
        # the embedded chain's own log reader (what audit_market used above) reads the same
        assert read_ledger(session.chain.w3, base.market, logs=session.chain.logs) == ledger
        source = MappingOrderSource({t: session.api.interval_orders(t) for t in committed})
        books: dict[int, PublishedBook] = {}
        for t in committed:
            book = source.book(t)
            assert isinstance(book, PublishedBook)
            books[t] = book
        rules = ApiOrderSource(session.api).rules()
        assert audit_evidence(ledger, books, rules).ok
        bent = bend(how, ledger, books, pick)
        if bent is None:
            return
        bent_ledger, bent_books, bent_t = bent
        failed = audit_evidence(bent_ledger, bent_books, rules)
        assert not failed.ok, (how, pick)
        assert bent_t in where(failed), (how, bent_t, failed.lines())
        checks = {v.check for v in failed.violations if v.interval == bent_t}
        expected = {
            "price": RECLEAR,
            "reading": SETTLEMENT,
            "settled trade": SETTLEMENT,
            "deposit": CONSERVATION,
            "published order": BOOK_ROOT,
        }[how]
        assert expected in checks, (how, failed.lines())
