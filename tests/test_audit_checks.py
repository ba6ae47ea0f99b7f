"""The audit's pure parts, and markets the other tests do not draw.

* the commitment hashes the audit recomputes (:mod:`ledger.trade_chain`) agree with the
  word-by-word definition in the ``IntervalCommitted`` NatSpec (differential);
* the code comparison, the parsers of published sets and market info, the clearing rules;
* the ``signatures`` check on hand-made sets (registration, duplicates, bad fields);
* markets cleared pay-as-bid and with k = 1, and a meter key rotated between readings,
  audited clean end to end; a wrong declared k fails ``reclear``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st
from test_audit_support import PRICE, AuditChain, MarketPlan, run_plan, simple_plan

from audit.chain_source import commit_record
from audit.checks.book import check_signatures
from audit.checks.market import code_matches, constructor_arguments
from audit.checks.meters import MeterHistory, reading_signer
from audit.checks.violations import SIGNATURES, CheckLog
from audit.evidence import (
    ClearingRules,
    CommitRecord,
    PublishedBook,
    PublishedOrder,
    parse_published_book,
    rules_from_market_info,
)
from audit.run import audit_market
from ledger import eip712 as signing
from ledger import records
from ledger.commit_plan import trade_word
from ledger.eip712 import Domain, recover_meter, sign_reading
from ledger.errors import InputError
from ledger.events import (
    IntervalCommitted,
    LogPosition,
    MeterRotated,
    ParticipantDeregistered,
    ParticipantRegistered,
    ReadingSubmitted,
    TradesCommitted,
)
from ledger.hashing import keccak
from ledger.records import Reading, Trade
from ledger.trade_chain import orders_digest, settlement_chain
from market.client import OrderSigner
from market.service import MarketConfig

ADDRESSES = [Account.from_key((i + 1).to_bytes(32, "big")).address for i in range(5)]


@st.composite
def committed_trades(draw: st.DrawFn) -> list[Trade]:
    trades = []
    for _ in range(draw(st.integers(0, 8))):
        buyer, seller = draw(
            st.lists(st.sampled_from(ADDRESSES), min_size=2, max_size=2, unique=True)
        )
        trades.append(
            Trade(
                buyer=buyer,
                seller=seller,
                quantity_wh=draw(st.integers(1, 2**40)),
                price_per_wh=draw(st.integers(1, 2**100)),
                buy_order_id=draw(st.binary(min_size=32, max_size=32)),
                sell_order_id=draw(st.binary(min_size=32, max_size=32)),
            )
        )
    return trades


def reference_orders_digest(trades: list[Trade]) -> bytes:
    """``ordersDigest`` as the NatSpec defines it: ``d_{k+1} = keccak256(d_k ‖ buyId_k ‖
    sellId_k)`` from ``d_0 = 0``."""
    digest = bytes(32)
    for t in trades:
        digest = keccak(digest + t.buy_order_id + t.sell_order_id)
    return digest


def reference_settlement_head(trades: list[Trade], seller_index: dict[str, int]) -> bytes:
    """``settlementHead`` as the NatSpec defines it: ``h_n = 0`` and ``h_k =
    keccak256(abi.encode(buyer, seller, sellerIndex, quantityWh, pricePerWh, sellerSoldWh,
    sellerSoldBeforeWh, h_{k+1}))``, every field one static word."""

    def word(value: int) -> bytes:
        return value.to_bytes(32, "big")

    def address(a: str) -> bytes:
        return bytes(12) + bytes.fromhex(a[2:])

    positions = records.seller_positions(trades)
    head = bytes(32)
    for k in range(len(trades) - 1, -1, -1):
        t = trades[k]
        head = keccak(
            address(t.buyer)
            + address(t.seller)
            + word(seller_index[t.seller])
            + word(t.quantity_wh)
            + word(t.price_per_wh)
            + word(positions[k].sold_wh)
            + word(positions[k].sold_before_wh)
            + head
        )
    return head


@settings(max_examples=100, deadline=None)
@given(trades=committed_trades(), indices=st.permutations(range(5)))
def test_commitment_hashes_agree_with_their_definition(
    trades: list[Trade], indices: list[int]
) -> None:
    """Differential: the hashes the ``commitment`` check recomputes (ledger.trade_chain, the
    ledger client's code) against the definition written out word by word."""
    index = dict(zip(ADDRESSES, indices, strict=True))
    assert orders_digest(trades) == reference_orders_digest(trades)
    assert settlement_chain(trades, index)[0] == reference_settlement_head(trades, index)


def test_code_matches_masks_exactly_the_immutable_ranges() -> None:
    reference = bytes([0x60, 0x80, 0, 0, 0x52, 0, 0x00])
    ranges = [(2, 2)]
    assert code_matches(reference, reference, ranges) == (True, 0)
    assert code_matches(bytes([0x60, 0x80, 7, 9, 0x52, 0, 0]), reference, ranges) == (True, 0)
    assert code_matches(bytes([0x61, 0x80, 0, 0, 0x53, 0, 0]), reference, ranges) == (False, 2)
    # zero bytes outside the ranges are code too (a jump target's byte, a STOP)
    assert code_matches(bytes([0x60, 0x80, 0, 0, 0x52, 4, 0x5B]), reference, ranges) == (False, 2)
    assert code_matches(reference + b"\x00", reference, ranges) == (False, 1)


def test_constructor_arguments_are_the_words_after_the_build_init_code() -> None:
    init = bytes.fromhex("6080604052")
    words = [0xAA, 0xBB, 7, 900, 5, 500, 3600]
    tail = b"".join(w.to_bytes(32) for w in words)
    assert constructor_arguments(init + tail, init) == tuple(words)
    assert "init code is not" in str(constructor_arguments(b"\x61" + init[1:] + tail, init))
    assert "are 192 bytes" in str(constructor_arguments(init + tail[:-32], init))
    too_big = tail[: 32 * 5] + (1 << 16).to_bytes(32) + tail[32 * 6 :]
    assert "toleranceBps is out of range" in str(constructor_arguments(init + too_big, init))


def test_published_book_parser_refuses_a_wrong_shape() -> None:
    assert parse_published_book({"orders": []}, 3).orders == ()
    for bad, words in (
        ([], "expected a JSON object"),
        ({"orders": {}}, "expected an 'orders' list"),
        ({"interval": 4, "orders": []}, "it is the set of interval 4"),
        ({"orders": [1]}, "order 0 is not a JSON object"),
    ):
        with pytest.raises(InputError) as caught:
            parse_published_book(bad, 3, "x.json")
        assert words in caught.value.message and "x.json" in caught.value.message


def test_rules_come_from_the_declared_mechanism_and_are_checked() -> None:
    info = {"mechanism": {"name": "pay-as-bid", "k": [1, 2]}}
    assert rules_from_market_info(info, "m") == ClearingRules("pay-as-bid", (1, 2), "m")
    assert rules_from_market_info({"mechanism": {"name": "uniform"}}, "m").k == (1, 2)
    for bad in ({}, {"mechanism": {"name": "uniform", "k": [1]}}, {"mechanism": "uniform"}):
        with pytest.raises(InputError):
            rules_from_market_info(bad, "m")
    with pytest.raises(InputError):
        ClearingRules("vickrey")
    with pytest.raises(InputError):
        ClearingRules("uniform", (3, 2))


# ----------------------------------------------------------------------------- signatures

DOMAIN = signing.Domain(31337, "0x" + "ab" * 20)
ALICE = Account.from_key(b"\x01" * 32)
BOB = Account.from_key(b"\x02" * 32)


def _published(signer: OrderSigner, seq: int, **fields: Any) -> PublishedOrder:
    body = signer.order(5, "buy", 100, PRICE, nonce=seq, expiry=10**10)
    message = {**body["order"], **fields}
    order_id = "0x" + signing.digest(DOMAIN.separator, "Order", message).hex()
    return PublishedOrder(order_id, seq, message, body["signature"], None)


def _signatures(orders: list[PublishedOrder], registered: set[str]) -> list[str]:
    log = CheckLog(5)
    book = PublishedBook(5, None, DOMAIN.as_json(), tuple(orders))
    check_signatures(book, DOMAIN, lambda p: p in registered, log)
    assert {v.check for v in log.violations} <= {SIGNATURES}
    return [v.message for v in log.violations]


def test_signatures_of_registered_participants_pass() -> None:
    alice, bob = OrderSigner(ALICE, DOMAIN), OrderSigner(BOB, DOMAIN)
    assert (
        _signatures([_published(alice, 1), _published(bob, 2)], {ALICE.address, BOB.address}) == []
    )


def test_an_order_of_a_participant_not_registered_at_the_commit_fails() -> None:
    found = _signatures([_published(OrderSigner(BOB, DOMAIN), 1)], {ALICE.address})
    assert len(found) == 1
    assert found[0].endswith(f"participant {BOB.address} was not registered when 5 was committed")


def test_a_changed_message_duplicate_and_bad_fields_fail_signatures() -> None:
    alice = OrderSigner(ALICE, DOMAIN)
    good = _published(alice, 1)
    changed = PublishedOrder(good.id, 2, {**good.message, "quantityWh": 101}, good.signature)
    other_interval = _published(alice, 3, interval=6)
    bad_seq = _published(alice, 4)
    bad_seq = PublishedOrder(bad_seq.id, -1, bad_seq.message, bad_seq.signature)
    same_seq = _published(alice, 5)
    same_seq = PublishedOrder(same_seq.id, 1, same_seq.message, same_seq.signature)
    garbage = PublishedOrder("0x00", 9, {"participant": "nobody"}, "0x")
    found = "\n".join(
        _signatures(
            [good, good, changed, other_interval, bad_seq, same_seq, garbage], {ALICE.address}
        )
    )
    assert "is published twice" in found
    assert "(the EIP-712 digest)" in found and "signature recovers to" in found
    assert "signed for interval 6, not 5" in found
    assert "seq -1 is not a non-negative integer" in found
    assert "seq 1 is also the seq of" in found
    assert "malformed message" in found


def test_an_order_signed_for_a_node_fails_in_a_market_without_a_grid() -> None:
    alice = OrderSigner(ALICE, DOMAIN)
    at_root = _published(alice, 1)
    body = alice.order(5, "buy", 100, PRICE, nonce=2, expiry=10**10, node="f")
    order_id = "0x" + signing.digest(DOMAIN.separator, "Order", body["order"]).hex()
    at_f = PublishedOrder(order_id, 2, body["order"], body["signature"], None)
    assert _signatures([at_root], {ALICE.address}) == []
    assert _signatures([at_root, at_f], {ALICE.address}) == [
        f"order 1 ({order_id[:10]}…): signed for node 'f'; the market clears on no grid, its "
        "one node is 'root'"
    ]


def test_registration_follows_registration_rotation_and_deregistration() -> None:
    a = ADDRESSES[0]
    history = MeterHistory(
        [
            MeterRotated(a, ADDRESSES[1], ADDRESSES[2], LogPosition(2, 0)),
            ParticipantDeregistered(a, LogPosition(3, 0)),
            ParticipantRegistered(a, ADDRESSES[1], 0, LogPosition(1, 0)),
        ]
    )
    assert not history.registered_at(a, LogPosition(1, 0))
    assert history.registered_at(a.lower(), LogPosition(1, 1))
    assert history.meter_at(a, LogPosition(1, 1)) == ADDRESSES[1]
    assert history.meter_at(a, LogPosition(2, 1)) == ADDRESSES[2]
    assert history.registered_at(a, LogPosition(3, 0))
    assert not history.registered_at(a, LogPosition(3, 1))
    assert history.meter_at(a, LogPosition(3, 1)) == ADDRESSES[2]  # kept when deregistered
    assert not history.registered_at("not an address", LogPosition(9, 0))
    assert history.indices == {a: 0}


@settings(max_examples=30, deadline=None)
@given(
    who=st.sampled_from(ADDRESSES),
    t=st.integers(0, 2**64 - 1),
    imported=st.integers(0, 2**64 - 1),
    exported=st.integers(0, 2**64 - 1),
    key=st.integers(1, 2**255),
)
def test_the_audits_reading_signer_agrees_with_the_reading_module(
    who: str, t: int, imported: int, exported: int, key: int
) -> None:
    """Differential: the audit's recovery from an event record and its calldata signature
    against a meter signature made by eth_account and recovered by ledger.eip712."""
    meter = Account.from_key(key.to_bytes(32, "big"))
    domain = Domain(31337, "0x" + "cd" * 20)
    signed = sign_reading(meter, Reading(who, t, imported, exported), domain)
    record = ReadingSubmitted(
        t, who, imported, exported, LogPosition(1, 0), "0x", (signed.r, signed.vs)
    )
    separator = signing.Domain(31337, "0x" + "cd" * 20).separator
    assert reading_signer(separator, record) == recover_meter(signed, domain) == meter.address


# ----------------------------------------------------------------------------- commit chunks

MARKET = ADDRESSES[4]
COMMIT = IntervalCommitted(9, b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, 2, 10, 5, 500)
PARTIES = (ADDRESSES[0], ADDRESSES[1], ADDRESSES[2])
IDS = (b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32)
TWO_TRADES = (
    Trade(ADDRESSES[0], ADDRESSES[1], 100, 7, IDS[0], IDS[1]),
    Trade(ADDRESSES[2], ADDRESSES[1], 50, 9, IDS[2], IDS[1]),
)


def _chunk(number: int, first: int, words: tuple[int, ...]) -> TradesCommitted:
    return TradesCommitted(9, number, first, PARTIES, IDS, words)


W0, W1 = trade_word(0, 1, 0, 1, 100, 7), trade_word(2, 1, 2, 1, 50, 9)


def test_commit_trades_are_read_from_its_chunk_events_whoever_sent_it() -> None:
    relay = {"from": ADDRESSES[3], "to": ADDRESSES[3]}  # a multisig or relayer sent it
    one = commit_record(relay, COMMIT, [_chunk(1, 0, (W0, W1))])
    two = commit_record(relay, COMMIT, [_chunk(1, 0, (W0,)), _chunk(2, 1, (W1,))])
    assert one == two == CommitRecord(COMMIT, TWO_TRADES, sender=ADDRESSES[3])


@pytest.mark.parametrize(
    ("chunks", "why"),
    [
        ((), "hold 0 trades, its commit 2"),
        (((1, 0, (W0,)),), "hold 1 trades, its commit 2"),
        (((2, 0, (W0, W1)),), "chunk 2 (from trade 0) does not follow chunk 0"),
        (((1, 0, (W0,)), (2, 0, (W1,))), "chunk 2 (from trade 0) does not follow chunk 1"),
        (((1, 0, (W0, trade_word(0, 1, 0, 5, 1, 1))),), "beyond its chunk's tables"),
    ],
)
def test_commit_chunks_that_do_not_add_up_leave_its_trades_unread(
    chunks: tuple[tuple[int, int, tuple[int, ...]], ...], why: str
) -> None:
    """Missing, repeated or malformed chunks are reported (``trades_error``), never a crash."""
    record = commit_record({"from": MARKET}, COMMIT, [_chunk(*c) for c in chunks])
    assert record.trades is None and record.event == COMMIT
    assert record.trades_error is not None and why in record.trades_error


# ----------------------------------------------------------------------------- other markets


@pytest.fixture(scope="module")
def base() -> AuditChain:
    return AuditChain()


@pytest.fixture
def run(base: AuditChain) -> Iterator[Any]:
    sessions = []

    def go(plan: MarketPlan, config: MarketConfig | None = None) -> Any:
        session = base.session(config)
        sessions.append(session)
        return session, run_plan(session, plan)

    yield go
    for session in sessions:
        session.close()


def test_a_pay_as_bid_market_audits_clean_with_its_declared_mechanism(run: Any) -> None:
    session, _ = run(simple_plan(1), MarketConfig(mechanism="pay-as-bid"))
    report = audit_market(session.chain, session.base.market, session.api)
    assert report.ok, report.lines()
    assert report.rules.mechanism == "pay-as-bid"
    assert report.intervals[0].prices_per_wh == (PRICE + 20_000,)  # the bid's limit
    uniform = audit_market(
        session.chain, session.base.market, session.api, rules=ClearingRules(source="test")
    )
    assert {v.check for v in uniform.violations} == {"reclear", "properties"}


def test_a_market_at_k_one_audits_clean_and_a_wrong_k_fails_reclear(run: Any) -> None:
    plan = MarketPlan(
        participants=2,
        orders=[[(0, "buy", 1_000, PRICE + 40_000), (1, "sell", 1_000, PRICE)]],
        export_factors=[{1: (1, 1)}],
    )
    session, (t,) = run(plan, MarketConfig(k=(1, 1)))
    report = audit_market(session.chain, session.base.market, session.api)
    assert report.ok and report.intervals[0].prices_per_wh == (PRICE + 40_000,)  # U
    wrong = audit_market(
        session.chain, session.base.market, session.api, rules=ClearingRules(k=(1, 2), source="t")
    )
    assert any(
        v.interval == t and f"price expected {PRICE + 20_000} found {PRICE + 40_000}" in v.message
        for v in wrong.violations
    )


def test_a_meter_rotated_after_the_commit_leaves_the_old_key_counting_and_audits_clean(
    base: AuditChain,
) -> None:
    """The contract checks a reading against the key of its interval's commit; so does the
    audit (a reading by the rotated-away key, accepted on-chain, is clean)."""
    with base.session() as session:
        t = session.next_interval()
        for who, side, quantity, price in simple_plan(1).orders[0]:
            assert session.submit(t, who, side, quantity, price)
        session.close_gate(t)
        seller = session.address(3)
        session.ledger.rotate_meter(seller, Account.create().address)  # after the commit
        session.to_reading_window([t])
        session.submit_readings(t, {2: (0, 2_000), 3: (0, 800)})  # the keys of the commit
        session.past_deadlines([t])
        session.settle(t, 2)
        report = audit_market(session.chain, base.market, session.api)
        assert report.ok, report.lines()


def test_readings_signed_by_a_rotated_meter_key_audit_clean(base: AuditChain) -> None:
    with base.session() as session:
        t = session.next_interval()
        for who, side, quantity, price in simple_plan(1).orders[0]:
            assert session.submit(t, who, side, quantity, price)
        seller = session.address(3)
        new_meter = Account.create()
        session.ledger.rotate_meter(seller, new_meter.address)  # before the commit: it counts
        session.close_gate(t)
        session.to_reading_window([t])
        session.submit_readings(t, {2: (0, 2_000)})  # signed by participant 2's own key
        domain = session.ledger.domain()
        rotated = sign_reading(new_meter, Reading(seller, t, 0, 800), domain)
        session.ledger.submit_readings(t, [rotated])
        session.past_deadlines([t])
        session.settle(t, 2)
        report = audit_market(session.chain, base.market, session.api)
        assert report.ok, report.lines()
        assert report.intervals[0].notes == ()
