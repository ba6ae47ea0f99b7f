"""The audit sees what the operator did with each order: an ignored cancel, a changed ``seq``,
an order taken after the gate, an interval published but never committed.

Each case runs a two-interval market through the real API and contract on eth-tester
(``test_audit_support``) and lets the operator misbehave in the second interval only, so the
report must name that interval and the check while the first passes. The operator's
misbehaviour is what a dishonest operator's own software would do: reopen a cancelled order
(its cancel accepted and receipted), take an order after the gate closure time, edit the
published ``seq``, or skip the commit while publishing the set. Before receipts the audit
passed each of these markets; the checks are named here as strings so that these tests run,
and fail, against an audit that lacks them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from test_audit_support import PRICE, AuditChain, Session, published_books, simple_plan

from audit.report import AuditReport
from audit.run import audit_market
from ledger import eip712 as signing
from ledger.records import SignedOrder, Trade
from market.chain_ledger import ChainLedger
from market.ledger_port import CommitReceipt

RECEIPTS = "receipts"
CANCELS = "cancels"
LATE_ORDERS = "late_orders"
UNCOMMITTED = "uncommitted"


@pytest.fixture(scope="module")
def base() -> AuditChain:
    return AuditChain()


@pytest.fixture
def session(base: AuditChain) -> Iterator[Session]:
    with base.session() as s:
        yield s


def audit(session: Session, source: Any = None) -> AuditReport:
    return audit_market(session.chain, session.base.market, source or session.api)


def failed(report: AuditReport) -> dict[int | None, set[str]]:
    out: dict[int | None, set[str]] = {}
    for v in report.violations:
        out.setdefault(v.interval, set()).add(v.check)
    return out


def messages(report: AuditReport, t: int, check: str) -> str:
    return "\n".join(v.message for v in report.violations if v.interval == t and v.check == check)


def place_simple_books(session: Session, intervals: Sequence[int]) -> None:
    """Two sellers and two buyers in each interval, as ``simple_plan`` has them."""
    orders = simple_plan(len(intervals)).orders
    for t, book in zip(intervals, orders, strict=True):
        for who, side, quantity, price in book:
            assert session.submit(t, who, side, quantity, price)


def bought(trade: Trade, order_id: str) -> bool:
    return "0x" + trade.buy_order_id.hex() == order_id


def verify_with_eth_account(template: dict[str, Any], message: dict[str, Any], sig: str) -> str:
    """The signer of ``message`` under a ``GET /market`` template, by eth_account alone."""
    typed = encode_typed_data(full_message={**template, "message": message})
    signer: str = Account.recover_message(typed, signature=sig)
    return signer


def test_an_honest_market_with_a_cancel_passes_every_check(session: Session) -> None:
    t0 = session.next_interval()
    t1 = t0 + 1
    place_simple_books(session, [t0, t1])
    placed = session.clients[4].submit_order(
        t1, "buy", 1_000, PRICE + 50_000, expiry=session.expiry
    )
    session.clients[4].cancel_order(placed["id"])
    session.close_gate(t0)
    session.close_gate(t1)
    report = audit(session)
    assert report.ok, report.lines()
    assert [r.interval for r in report.intervals] == [t0, t1]
    book = session.api.interval_orders(t1)
    assert [c["id"] for c in book["cancels"]] == [placed["id"]]
    assert placed["id"] not in {o["id"] for o in book["orders"]}


# --------------------------------------------------------------------- (a) an ignored cancel


def test_an_ignored_signed_cancel_fails_cancels_naming_the_interval(session: Session) -> None:
    t0 = session.next_interval()
    t1 = t0 + 1
    place_simple_books(session, [t0, t1])
    bidder = session.clients[4]
    placed = bidder.submit_order(t1, "buy", 1_000, PRICE + 50_000, expiry=session.expiry)
    cancelled = bidder.cancel_order(placed["id"])
    assert cancelled["status"] == "cancelled"

    # The operator ignores the cancel it accepted: the order goes back into the book.
    service = session.service
    with service.store._transaction() as cur:
        cur.execute("UPDATE orders SET status = 'open' WHERE id = ?", (placed["id"],))
    order = service.store.get_order(placed["id"])
    assert order is not None
    with service.book._lock:
        lock = service.collateral.lock_base_units(order.side, order.quantity_wh, order.price_per_wh)
        service.book.add_open(order, lock)
    session.close_gate(t0)
    session.close_gate(t1)
    traded = [
        t
        for t in session.ledger.committed_trades(t1)
        if "0x" + t.buy_order_id.hex() == placed["id"]
    ]
    assert traded, "the cancelled bid was committed: collateral locked against a cancel"

    report = audit(session)
    assert not report.ok
    assert failed(report) == {t1: {CANCELS}}
    text = messages(report, t1, CANCELS)
    assert f"order {placed['id']} was cancelled at" in text
    assert "before the gate closed at" in text
    assert f"and {sum(t.quantity_wh for t in traded)} Wh of it were committed" in text
    assert report.interval(t0).ok
    # What the participant holds proves it too: the operator's receipt of the cancel.
    receipt = cancelled["cancel"]["receipt"]
    market = session.api.market(refresh=True)
    template = market["eip712"]["messages"]["cancelReceipt"]["template"]
    message = {
        "orderId": placed["id"],
        "cancelDigest": cancelled["cancel"]["digest"],
        "seq": receipt["seq"],
        "receivedAt": receipt["receivedAt"],
    }
    assert verify_with_eth_account(template, message, receipt["signature"]) == market["operator"]
    assert receipt["receivedAt"] < session.api.interval_orders(t1)["closedAt"]


# --------------------------------------------------------------------- (b) a changed seq


def test_a_published_seq_that_differs_from_its_receipt_fails_receipts(session: Session) -> None:
    t0 = session.next_interval()
    t1 = t0 + 1
    place_simple_books(session, [t0, t1])
    session.close_gate(t0)
    session.close_gate(t1)
    books = copy.deepcopy(published_books(session, [t0, t1]))
    changed = books[t1]["orders"][1]
    changed["seq"] = 1_000_000  # unused: no tie and no duplicate, only the receipt disagrees
    report = audit(session, books)
    assert not report.ok
    assert failed(report) == {t1: {RECEIPTS}}
    assert "published seq 1000000, its receipt's seq" in messages(report, t1, RECEIPTS)
    assert report.interval(t0).ok


def test_receipts_whose_seq_order_is_not_arrival_order_fail_receipts(session: Session) -> None:
    """An operator that re-signs a receipt to move an order to the front (its key, its
    signature, so the seqs agree) cannot make seq order agree with the times it stated."""
    t0 = session.next_interval()
    place_simple_books(session, [t0])
    session.close_gate(t0)
    books = copy.deepcopy(published_books(session, [t0]))
    moved = books[t0]["orders"][-1]
    later = moved["receipt"]["receivedAt"] + 5
    moved["seq"] = 0
    moved["receipt"] = session.service.receipts.order(moved["id"], 0, later).as_json()
    report = audit(session, books)
    assert failed(report) == {t0: {RECEIPTS}}
    assert f"before seq 0 (order of {moved['id'][:10]}…) at {later}" in messages(
        report, t0, RECEIPTS
    )


def test_a_receipt_by_another_key_and_a_cancel_nobody_signed_fail(session: Session) -> None:
    """A receipt signed by any key but the committing operator's is no receipt; a cancel not
    signed by the order's participant is the operator dropping the order."""
    t0 = session.next_interval()
    place_simple_books(session, [t0])
    bidder = session.clients[4]
    placed = bidder.submit_order(t0, "buy", 1_000, PRICE + 50_000, expiry=session.expiry)
    bidder.cancel_order(placed["id"])
    session.close_gate(t0)
    books = copy.deepcopy(published_books(session, [t0]))
    stranger = Account.from_key(b"\x42" * 32)
    entry = books[t0]["orders"][0]
    receipt = entry["receipt"]
    raw = signing.order_receipt_digest(
        session.service.domain.separator,
        bytes.fromhex(entry["id"][2:]),
        receipt["seq"],
        receipt["receivedAt"],
    )
    receipt["signature"] = signing.sign_digest(stranger.key, raw)
    cancel = books[t0]["cancels"][0]
    cancel["cancelSignature"] = signing.sign_digest(
        stranger.key, bytes.fromhex(cancel["cancelDigest"][2:])
    )
    report = audit(session, books)
    assert failed(report) == {t0: {RECEIPTS, CANCELS}}
    assert f"receipt signed by {stranger.address.lower()}, not by the operator" in messages(
        report, t0, RECEIPTS
    )
    assert "not its participant's signed cancel: the cancel is signed by" in messages(
        report, t0, CANCELS
    )


# --------------------------------------------------------------------- (c) a late order


def test_an_order_received_after_the_gate_in_the_clearing_fails_late_orders(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    t0 = session.next_interval()
    t1 = t0 + 1
    place_simple_books(session, [t0, t1])
    session.close_gate(t0)
    gate = session.service.gate_closure_at(t1)
    session.clock.set(gate + 7)
    # The operator's intake takes one more bid after the gate closure time.
    monkeypatch.setattr(session.service.intake, "_check_window", lambda interval, now: None)
    late = session.clients[4].submit_order(t1, "buy", 1_000, PRICE + 50_000, expiry=session.expiry)
    monkeypatch.undo()
    session.close_gate(t1)
    traded = [t for t in session.ledger.committed_trades(t1) if bought(t, late["id"])]
    assert traded

    report = audit(session)
    assert not report.ok
    assert failed(report) == {t1: {LATE_ORDERS}}
    text = messages(report, t1, LATE_ORDERS)
    assert f"order {late['id']} was received at {gate + 7}" in text
    assert f"at or after the gate closed at {gate}, yet it is in the clearing" in text
    assert report.interval(t0).ok


# --------------------------------------------------------------------- (d) never committed


class SkippingLedger(ChainLedger):
    """An operator that publishes an interval's set but never commits it."""

    skip: int = -1

    def commit_interval(
        self,
        interval: int,
        book_root: bytes,
        trades: Sequence[Trade],
        orders: Mapping[bytes, SignedOrder],
        *,
        grid_root: bytes = bytes(32),
    ) -> CommitReceipt:
        if interval == self.skip:
            return CommitReceipt(tx_hash="0x" + "00" * 32, block_number=0)
        return super().commit_interval(interval, book_root, trades, orders, grid_root=grid_root)


def test_an_interval_published_but_never_committed_fails_uncommitted(session: Session) -> None:
    t0 = session.next_interval()
    t1 = t0 + 1
    skipping = SkippingLedger(session.ledger)
    skipping.skip = t1
    session.service.gates.ledger = skipping
    place_simple_books(session, [t0, t1])
    session.close_gate(t0)
    session.close_gate(t1)
    assert session.committed == [t0]
    published = session.api.interval_orders(t1)
    assert len(published["orders"]) == 4
    assert session.ledger.interval_info(t1).status == "none"
    session.to_reading_window([t1])  # t1 has ended: the contract would refuse its commit now

    report = audit(session)
    assert not report.ok
    assert failed(report) == {t1: {UNCOMMITTED}}
    text = messages(report, t1, UNCOMMITTED)
    assert "the market published 4 orders" in text
    assert "nothing is committed on-chain" in text
    assert report.interval(t0).ok
    assert "1 published but never committed" in report.lines()[-1]


# --------------------------------------------------------------------- the pure parts


def test_the_scan_range_is_bounded_and_follows_from_and_to() -> None:
    from audit.run import DEFAULT_SCAN, MAX_SCAN, scan_range

    assert scan_range([], None, None, None) is None
    assert scan_range([500, 510], None, None, None) == (510 - DEFAULT_SCAN + 1, 510)
    assert scan_range([100, 510], None, None, 520) == (100, 520)
    assert scan_range([100], 90, 120, 520) == (90, 120)
    assert scan_range([], None, None, 10_000) == (10_000 - DEFAULT_SCAN + 1, 10_000)
    assert scan_range([1], None, None, 10_000) == (10_000 - MAX_SCAN + 1, 10_000)
    assert scan_range([], 50, 40, None) is None


def test_a_published_set_not_committed_before_its_interval_ends_is_a_note() -> None:
    from audit.checks.receipts import check_uncommitted
    from audit.checks.violations import CheckLog
    from audit.evidence import PublishedBook, PublishedOrder

    order = PublishedOrder("0x" + "11" * 32, 1, {}, "0x")
    book = PublishedBook(7, "0x" + "22" * 32, None, (order,), closed_at=100, state="frozen")
    for ended, failed_ in ((False, False), (True, True), (None, True)):
        checks = CheckLog(7)
        assert check_uncommitted(book, ended, checks) is failed_
        assert [v.check for v in checks.violations] == ([UNCOMMITTED] if failed_ else [])
        assert bool(checks.notes) is not failed_
    empty = PublishedBook(7, "0x" + "00" * 32, None, (), closed_at=100, state="empty")
    checks = CheckLog(7)
    assert check_uncommitted(empty, True, checks) is False
    assert not checks.violations and not checks.notes
