"""The audit catches a dishonest operator: each tamper case fails, naming interval and check.

Every case runs the same two-interval market through the real API and contract on eth-tester
(``test_audit_support``) and tampers with the second interval only, so the report must say
*which* interval failed (the first still passes) and *which* check. The clean run of the very
same market passes, so each assertion below can fail.

The operator's own tampering goes through :class:`TamperingLedger`: the service publishes the
true order set and clearing while the chain receives what the tamper function returns, which
is what an operator holding the key could do. Tampering with what the chain *says* (readings,
settlement events, deposits, the contract code) goes through the audit's pluggable chain
reader, standing in for a contract deployed with a doctored rule.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_audit_support import (
    FORGED_ORDERS,
    PRICE,
    TOKEN,
    AuditChain,
    Session,
    Tamper,
    run_plan,
    simple_plan,
)
from web3 import Web3

from audit.chain_source import CreationSource, creation_source, read_ledger
from audit.checks.violations import (
    BOOK_ROOT,
    CODE,
    COMMITMENT,
    CONSERVATION,
    PROPERTIES,
    RECLEAR,
    SETTLEMENT,
    SIGNATURES,
    UNCOMMITTED,
)
from audit.evidence import ClearingRules, CommitRecord, LedgerEvidence
from audit.order_sources import ApiOrderSource, archive_books
from audit.report import AuditReport
from audit.run import audit_market
from ledger.hashing import keccak
from ledger.order_backing import sign_order
from ledger.records import Trade


@pytest.fixture(scope="module")
def base() -> AuditChain:
    return AuditChain()


@pytest.fixture
def market(base: AuditChain) -> Iterator[Callable[..., tuple[Session, list[int]]]]:
    """Run the two-interval market, optionally tampering; yield (session, committed)."""
    sessions: list[Session] = []

    def run(tamper: Tamper | None = None, plan: Any = None) -> tuple[Session, list[int]]:
        session = base.session(tamper=tamper)
        sessions.append(session)
        committed = run_plan(session, plan or simple_plan(2))
        assert len(committed) == 2
        return session, committed

    yield run
    for session in sessions:
        session.close()


@dataclasses.dataclass
class Honest:
    """One honest two-interval run shared by a class of read-only tests."""

    session: Session
    committed: list[int]
    block: int

    def check_untouched(self) -> None:
        """Fail loudly if another test moved the chain since the run."""
        assert self.session.chain.w3.eth.block_number == self.block


def _honest(base: AuditChain) -> Iterator[Honest]:
    session = base.session()
    committed = run_plan(session, simple_plan(2))
    assert len(committed) == 2
    yield Honest(session, committed, session.chain.w3.eth.block_number)
    session.close()


def second_interval_only(change: Tamper) -> Tamper:
    """A tamper that leaves the first interval honest."""
    first: list[int] = []

    def tamper(t: int, root: bytes, trades: list[Trade]) -> tuple[bytes, list[Trade]]:
        if not first:
            first.append(t)
            return root, trades
        return change(t, root, trades)

    return tamper


def audit(session: Session, source: Any = None, **kwargs: Any) -> AuditReport:
    return audit_market(session.chain, session.base.market, source or session.api, **kwargs)


def failed(report: AuditReport) -> dict[int | None, set[str]]:
    """Failed checks by interval (None: the market checks)."""
    out: dict[int | None, set[str]] = {}
    for v in report.violations:
        out.setdefault(v.interval, set()).add(v.check)
    return out


def messages(report: AuditReport, t: int | None, check: str) -> str:
    return "\n".join(v.message for v in report.violations if v.interval == t and v.check == check)


def test_the_honest_run_passes_every_check(market: Callable[..., Any]) -> None:
    session, (t0, t1) = market()
    report = audit(session)
    assert report.ok, report.lines()
    assert [r.interval for r in report.intervals] == [t0, t1]
    assert all(r.settlement == "settled" and r.trade_count == 2 for r in report.intervals)
    assert (
        report.intervals[1].line() == f"interval {t1}  PASS  2 trades, 3,000 Wh @ 0.25/kWh, settled"
    )
    assert report.lines()[-1].startswith("PASS: audited 2 committed intervals")


# ----------------------------------------------------------------------------- the operator


def test_operator_committing_a_wrong_price_fails_reclear_and_properties(
    market: Callable[..., Any],
) -> None:
    def raise_price(t: int, root: bytes, trades: list[Trade]) -> Any:
        return root, [dataclasses.replace(x, price_per_wh=x.price_per_wh + 1_000) for x in trades]

    session, (t0, t1) = market(second_interval_only(raise_price))
    report = audit(session)
    assert not report.ok
    assert failed(report) == {t1: {RECLEAR, PROPERTIES}}
    assert f"trade 0: price expected {PRICE} found {PRICE + 1_000}" in messages(report, t1, RECLEAR)
    assert "uniform_price: price 250000000001000 differs from L + floor(1 * (U - L) / 2) = " + str(
        PRICE
    ) in messages(report, t1, PROPERTIES)
    line = report.interval(t1).line()
    assert line.startswith(f"interval {t1}  FAIL  reclear: trade 0: price expected {PRICE}")
    assert report.interval(t0).ok


def test_an_operator_trade_for_an_order_the_buyer_never_signed_is_refused_on_chain(
    base: AuditChain, caplog: pytest.LogCaptureFixture
) -> None:
    """Attack 1 through the market service: the operator adds a trade whose buy order it
    forged for a victim (signed with a colluding seller's key). The contract refuses the
    commit (BadOrderSignature), so the victim's balance never moves; the interval stays
    uncommitted, which the audit reports."""
    victim, colluder = base.participants[4], base.participants[5]
    forged: list[Trade] = []

    def add_trade(t: int, root: bytes, trades: list[Trade]) -> Any:
        domain = session.ledger.domain()
        bid = sign_order(colluder.key, domain, victim.address, t, 0, 100, PRICE, nonce=7)
        ask = sign_order(colluder.key, domain, colluder.address, t, 1, 100, PRICE, nonce=8)
        FORGED_ORDERS.update({bid.order_id: bid, ask.order_id: ask})
        forged.append(
            Trade(victim.address, colluder.address, 100, PRICE, bid.order_id, ask.order_id)
        )
        return root, [*trades, forged[-1]]

    session = base.session(tamper=second_interval_only(add_trade))
    try:
        before = session.ledger.balance_of(victim.address)
        committed = run_plan(session, simple_plan(2))
        t1 = committed[0] + 1
        assert len(committed) == 1 and forged
        assert session.ledger.interval_info(t1).status == "none"
        assert session.ledger.balance_of(victim.address) == before
        refused = [r.getMessage() for r in caplog.records if "commit failed" in r.getMessage()]
        assert refused and all("BadOrderSignature" in m for m in refused)
        session.to_reading_window([t1])
        report = audit(session)
        assert failed(report) == {t1: {UNCOMMITTED}}
    finally:
        FORGED_ORDERS.clear()
        session.close()


def test_operator_committing_another_root_fails_book_root(
    market: Callable[..., Any],
) -> None:
    other = keccak(b"a different book")

    def swap_root(t: int, root: bytes, trades: list[Trade]) -> Any:
        return other, trades

    session, (_t0, t1) = market(second_interval_only(swap_root))
    report = audit(session)
    assert failed(report) == {t1: {BOOK_ROOT}}
    assert "(committed bookRoot) found 0x" in messages(report, t1, BOOK_ROOT)
    assert f"expected 0x{other.hex()}" in messages(report, t1, BOOK_ROOT)


# ----------------------------------------------------------------------------- the publication


@pytest.fixture(scope="class")
def published(base: AuditChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An honest run and its archived order sets (the class's tests only read them)."""
    for honest in _honest(base):
        folder = tmp_path_factory.mktemp("archive")
        archive_books(ApiOrderSource(honest.session.api), folder, honest.committed)
        yield honest, folder


@pytest.fixture
def archive(published: Any, tmp_path: Path) -> tuple[Session, list[int], Path]:
    """A private copy of the archive for one test to edit."""
    honest, folder = published
    honest.check_untouched()
    copy = tmp_path / "archive"
    shutil.copytree(folder, copy)
    assert audit(honest.session, copy).ok
    return honest.session, honest.committed, copy


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    body = json.loads(path.read_text())
    change(body)
    path.write_text(json.dumps(body))


class TestPublication:
    def test_archived_sets_audit_like_the_api(
        self, archive: tuple[Session, list[int], Path]
    ) -> None:
        session, committed, folder = archive
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["market.json", *(f"{t}.json" for t in committed)]
        )
        report = audit(session, folder)
        assert report.rules.source.endswith("market.json")
        assert report.to_json() == {
            **audit(session).to_json(),
            "mechanism": report.to_json()["mechanism"],
        }

    def test_dropping_a_valid_order_from_the_published_set_fails_book_root_and_reclear(
        self,
        archive: tuple[Session, list[int], Path],
    ) -> None:
        session, (_t0, t1), folder = archive
        dropped: list[str] = []

        def drop_traded_ask(body: dict[str, Any]) -> None:
            ask = next(o for o in body["orders"] if o["order"]["side"] == 1 and o["filledWh"])
            dropped.append(ask["id"])
            body["orders"].remove(ask)

        _edit(folder / f"{t1}.json", drop_traded_ask)
        report = audit(session, folder)
        assert failed(report) == {t1: {BOOK_ROOT, RECLEAR, PROPERTIES}}
        assert "root of the 3 published orders expected" in messages(report, t1, BOOK_ROOT)
        assert "the publication states bookRoot" in messages(report, t1, BOOK_ROOT)
        assert f"sell order {dropped[0]} is not in the published set" in messages(
            report, t1, RECLEAR
        )
        assert "is not in the book" in messages(report, t1, PROPERTIES)

    def test_a_published_root_that_differs_from_its_orders_fails_book_root(
        self,
        archive: tuple[Session, list[int], Path],
    ) -> None:
        session, (_t0, t1), folder = archive
        stated = "0x" + keccak(b"not the root").hex()
        _edit(folder / f"{t1}.json", lambda body: body.update(bookRoot=stated))
        report = audit(session, folder)
        assert failed(report) == {t1: {BOOK_ROOT}}
        assert f"the publication states bookRoot {stated}" in messages(report, t1, BOOK_ROOT)

    def test_a_signature_that_does_not_recover_to_its_participant_fails_signatures(
        self,
        archive: tuple[Session, list[int], Path],
    ) -> None:
        session, (_t0, t1), folder = archive

        def swap_signatures(body: dict[str, Any]) -> None:
            a, b = body["orders"][0], body["orders"][1]
            a["signature"], b["signature"] = b["signature"], a["signature"]

        _edit(folder / f"{t1}.json", swap_signatures)
        report = audit(session, folder)
        assert failed(report) == {t1: {SIGNATURES}}
        assert "signature recovers to" in messages(report, t1, SIGNATURES)

    def test_an_altered_order_message_fails_signatures_and_book_root(
        self,
        archive: tuple[Session, list[int], Path],
    ) -> None:
        session, (_t0, t1), folder = archive

        def cheaper_bid(body: dict[str, Any]) -> None:
            bid = next(o for o in body["orders"] if o["order"]["side"] == 0)
            bid["order"]["pricePerWh"] = str(int(bid["order"]["pricePerWh"]) - 1)

        _edit(folder / f"{t1}.json", cheaper_bid)
        report = audit(session, folder)
        assert {SIGNATURES, BOOK_ROOT} <= failed(report)[t1]
        assert "(the EIP-712 digest)" in messages(report, t1, SIGNATURES)

    def test_a_committed_interval_without_a_published_set_fails(
        self,
        archive: tuple[Session, list[int], Path],
    ) -> None:
        session, (t0, t1), _ = archive
        books = {t0: session.api.interval_orders(t0)}
        report = audit(session, books)
        assert failed(report) == {t1: {SIGNATURES, BOOK_ROOT, RECLEAR}}
        assert "no published order set to check" in messages(report, t1, BOOK_ROOT)

    def test_re_clearing_with_another_mechanism_than_the_one_used_fails_reclear(
        self,
        archive: tuple[Session, list[int], Path],
    ) -> None:
        session, (t0, t1), _ = archive
        report = audit(session, rules=ClearingRules("pay-as-bid", source="test"))
        assert failed(report) == {t0: {RECLEAR, PROPERTIES}, t1: {RECLEAR, PROPERTIES}}


# ----------------------------------------------------------------------------- the chain's record


def tampered_reader(change: Callable[[LedgerEvidence], LedgerEvidence]) -> Any:
    """A chain reader that alters the evidence it read (a doctored contract's events)."""

    def reader(w3: Web3, market: str, **kwargs: Any) -> LedgerEvidence:
        return change(read_ledger(w3, market, **kwargs))

    return reader


@pytest.fixture(scope="class")
def shared_run(base: AuditChain) -> Iterator[Honest]:
    yield from _honest(base)


@pytest.fixture
def recorded(shared_run: Honest) -> Honest:
    shared_run.check_untouched()
    return shared_run


class TestChainRecord:
    def test_settlement_from_an_altered_reading_fails_settlement(
        self,
        recorded: Honest,
    ) -> None:
        session, (_t0, t1) = recorded.session, recorded.committed
        seller = session.address(3)  # sold 1,000 Wh in t1 and exported half

        def inflate_export(ev: LedgerEvidence) -> LedgerEvidence:
            readings = tuple(
                dataclasses.replace(r, exported_wh=r.exported_wh + 400)
                if r.interval == t1 and r.participant == seller
                else r
                for r in ev.readings
            )
            return dataclasses.replace(ev, readings=readings)

        report = audit(session, reader=tampered_reader(inflate_export))
        assert failed(report) == {t1: {SETTLEMENT}}
        text = messages(report, t1, SETTLEMENT)
        assert "trade 1: delivered Wh expected 900 found 500" in text
        assert f"reading of {seller} (exported 900 Wh): signed by" in text

    def test_an_altered_trade_settlement_event_fails_settlement(
        self,
        recorded: Honest,
    ) -> None:
        session, (_t0, t1) = recorded.session, recorded.committed

        def pay_more(ev: LedgerEvidence) -> LedgerEvidence:
            events = tuple(
                dataclasses.replace(e, payment_base_units=e.payment_base_units + 1)
                if e.interval == t1 and e.trade_index == 0
                else e
                for e in ev.trade_settlements
            )
            return dataclasses.replace(ev, trade_settlements=events)

        report = audit(session, reader=tampered_reader(pay_more))
        assert failed(report) == {t1: {SETTLEMENT}}
        assert "trade 0: payment expected" in messages(report, t1, SETTLEMENT)

    def test_an_altered_party_credit_fails_settlement_and_conservation(
        self,
        recorded: Honest,
    ) -> None:
        session, (_t0, t1) = recorded.session, recorded.committed

        def credit_more(ev: LedgerEvidence) -> LedgerEvidence:
            first = next(i for i, e in enumerate(ev.party_settlements) if e.interval == t1)
            events = list(ev.party_settlements)
            events[first] = dataclasses.replace(
                events[first], credited_base_units=events[first].credited_base_units + 7
            )
            return dataclasses.replace(ev, party_settlements=tuple(events))

        report = audit(session, reader=tampered_reader(credit_more))
        assert failed(report) == {t1: {SETTLEMENT}, None: {CONSERVATION}}
        assert "settlement moved value: released" in messages(report, t1, SETTLEMENT)
        assert "differs from balanceOf" in messages(report, None, CONSERVATION)

    def test_a_settled_trade_reported_twice_fails_settlement(self, recorded: Honest) -> None:
        session, (_t0, t1) = recorded.session, recorded.committed

        def duplicate(ev: LedgerEvidence) -> LedgerEvidence:
            again = next(e for e in ev.trade_settlements if e.interval == t1)
            return dataclasses.replace(ev, trade_settlements=(*ev.trade_settlements, again))

        report = audit(session, reader=tampered_reader(duplicate))
        assert failed(report) == {t1: {SETTLEMENT}}
        assert "trade 0 settled twice" in messages(report, t1, SETTLEMENT)

    def test_commit_calldata_that_does_not_hash_to_the_event_fails_commitment(
        self,
        recorded: Honest,
    ) -> None:
        session, (_t0, t1) = recorded.session, recorded.committed

        def other_quantity(ev: LedgerEvidence) -> LedgerEvidence:
            commit = ev.commits[t1]
            assert commit.trades is not None
            trades = (dataclasses.replace(commit.trades[0], quantity_wh=1), *commit.trades[1:])
            commits = {**ev.commits, t1: dataclasses.replace(commit, trades=trades)}
            return dataclasses.replace(ev, commits=commits)

        report = audit(session, reader=tampered_reader(other_quantity))
        assert COMMITMENT in failed(report)[t1]
        assert "settlementHead expected" in messages(report, t1, COMMITMENT)

    def test_a_commit_relayed_through_a_contract_is_a_violation_not_a_crash(
        self,
        recorded: Honest,
    ) -> None:
        session, (t0, t1) = recorded.session, recorded.committed
        relay = session.address(5)

        def relayed(ev: LedgerEvidence) -> LedgerEvidence:
            why = f"it was sent to {relay}, not to the market"
            commits = {**ev.commits, t1: CommitRecord(ev.commits[t1].event, None, why)}
            return dataclasses.replace(ev, commits=commits)

        report = audit(session, reader=tampered_reader(relayed))
        assert report.interval(t0).ok
        assert {COMMITMENT, RECLEAR} <= failed(report)[t1]
        assert f"cannot be read: it was sent to {relay}, not to the market" in messages(
            report, t1, COMMITMENT
        )
        assert "not compared: the committed trades cannot be read" in messages(report, t1, RECLEAR)

    def test_an_altered_deposit_fails_conservation(self, recorded: Honest) -> None:
        session = recorded.session

        def bigger_deposit(ev: LedgerEvidence) -> LedgerEvidence:
            first = dataclasses.replace(
                ev.escrow[0], amount_base_units=ev.escrow[0].amount_base_units + 1
            )
            return dataclasses.replace(ev, escrow=(first, *ev.escrow[1:]))

        report = audit(session, reader=tampered_reader(bigger_deposit))
        assert failed(report) == {None: {CONSERVATION}}
        text = messages(report, None, CONSERVATION)
        assert "differs from totalEscrowed" in text and "differs from balanceOf" in text
        assert report.market_line().startswith("market  FAIL  conservation: ")

    def test_contract_code_other_than_the_audited_build_fails_code(self, recorded: Honest) -> None:
        session = recorded.session

        def doctored(ev: LedgerEvidence) -> LedgerEvidence:
            code = bytearray(ev.deployed_code)
            at = next(i for i in range(100, len(code)) if ev.reference_code[i] != 0)
            code[at] ^= 0xFF
            return dataclasses.replace(ev, deployed_code=bytes(code))

        report = audit(session, reader=tampered_reader(doctored))
        assert failed(report) == {None: {CODE}}
        assert "differs from the EnergyMarket build in 1 byte outside" in messages(
            report, None, CODE
        )

    def test_a_zero_byte_changed_outside_the_immutables_fails_code(self, recorded: Honest) -> None:
        """The attack the old zero-placeholder rule let through: a jump target's zero byte
        changed and a STOP (0x00) turned into a JUMPDEST (0x5b). Both are zero bytes of the
        build outside the compiler's immutable ranges."""
        session = recorded.session

        def doctored(ev: LedgerEvidence) -> LedgerEvidence:
            inside = {i for start, n in ev.immutable_ranges for i in range(start, start + n)}
            zeros = [i for i, b in enumerate(ev.reference_code) if b == 0 and i not in inside]
            code = bytearray(ev.deployed_code)
            code[zeros[10]] = 0x01  # part of a PUSH argument, e.g. a jump target
            code[zeros[-10]] = 0x5B  # STOP -> JUMPDEST
            return dataclasses.replace(ev, deployed_code=bytes(code))

        report = audit(session, reader=tampered_reader(doctored))
        assert failed(report) == {None: {CODE}}
        assert "in 2 bytes outside its immutables" in messages(report, None, CODE)

    def test_the_creation_transaction_of_the_record_passes(self, recorded: Honest) -> None:
        session = recorded.session
        creation = creation_source(session.base.deployment, session.base.market)
        assert creation is not None
        report = audit(session, creation=creation)
        assert report.ok, report.lines()
        assert any(f"created by {creation.tx_hash}" in n for n in report.market_notes)

    def test_a_creation_other_than_the_records_fails_code(self, recorded: Honest) -> None:
        session = recorded.session
        creation = creation_source(session.base.deployment, session.base.market)
        assert creation is not None and creation.record_args is not None
        token_tx = session.base.deployment.contracts["WattToken"].tx_hash
        args = list(creation.record_args)
        args[1] = session.address(5)  # the record names another admin than the chain has

        cases = {
            "created 0x": CreationSource(token_tx, creation.record_args),
            "differ from the deployment record's (admin)": CreationSource(
                creation.tx_hash, tuple(args)
            ),
        }
        for expected, source in cases.items():
            report = audit(session, creation=source)
            assert failed(report) == {None: {CODE}}, expected
            assert expected in messages(report, None, CODE)

        def init_changed(ev: LedgerEvidence) -> LedgerEvidence:
            assert ev.creation is not None
            init = bytearray(ev.creation.input)
            init[40] ^= 0x01
            return dataclasses.replace(
                ev, creation=dataclasses.replace(ev.creation, input=bytes(init))
            )

        def via_a_call(ev: LedgerEvidence) -> LedgerEvidence:
            assert ev.creation is not None
            factory = session.address(4)
            return dataclasses.replace(ev, creation=dataclasses.replace(ev.creation, to=factory))

        for expected, change in {
            "its init code is not the EnergyMarket build's": init_changed,
            "not a contract creation": via_a_call,
        }.items():
            report = audit(session, creation=creation, reader=tampered_reader(change))
            assert failed(report) == {None: {CODE}}, expected
            assert expected in messages(report, None, CODE)

    def test_from_and_to_select_the_intervals(self, recorded: Honest) -> None:
        session, (t0, t1) = recorded.session, recorded.committed
        assert [r.interval for r in audit(session, from_t=t1).intervals] == [t1]
        assert [r.interval for r in audit(session, to_t=t0).intervals] == [t0]
        assert audit(session, from_t=t1 + 1).intervals == ()


def test_tokens_sent_to_the_market_directly_are_a_note_not_a_violation(
    market: Callable[..., Any], base: AuditChain
) -> None:
    session, _ = market()
    donor = base.participants[0].address
    token = session.ledger.token
    session.ledger.transact(token.functions.mint(donor, 5 * TOKEN), session.ledger.sender)
    session.ledger.transact(token.functions.transfer(base.market, 5 * TOKEN), donor)
    report = audit(session)
    assert report.ok
    assert f"{5 * TOKEN} base units above it (sent directly" in report.market_line()


# ----------------------------------------------------------------------------- time and blocks


def test_an_audit_pinned_before_settlement_sees_the_interval_unsettled(
    base: AuditChain,
) -> None:
    with base.session() as session:
        t = session.next_interval()
        plan = simple_plan(1)
        for who, side, quantity, price in plan.orders[0]:
            assert session.submit(t, who, side, quantity, price)
        session.close_gate(t)
        committed_at = session.chain.w3.eth.block_number
        report = audit(session)
        assert report.ok and report.intervals[0].settlement == "reading window open"
        session.to_reading_window([t])
        session.submit_readings(t, {2: (0, 2_000), 3: (0, 500)})
        session.past_deadlines([t])
        assert audit(session).intervals[0].settlement == "awaiting settlement"
        session.settle(t, 1, chunks=1)
        partly = audit(session)
        assert partly.ok and partly.intervals[0].settlement == "1 of 2 trades settled"
        session.settle(t, 1)
        assert audit(session).intervals[0].settlement == "settled"
        pinned = audit(session, block=committed_at)
        assert pinned.ok and pinned.block_number == committed_at
        assert pinned.intervals[0].settlement == "reading window open"
