"""A contract account that refuses its own order at commit cannot void the interval.

``commitInterval`` accepts a contract account's order when its ERC-1271 ``isValidSignature``
does (within the market's 50,000 gas). A hostile account (``contracts/test/FlakyAccount.sol``)
accepts its bid when the gate closes and refuses it, or burns more gas than the cap, when the
commit lands: the commit reverts ``BadOrderSignature`` as a whole. The market drops it as a
defaulter (``refused_signature``, with the order and the block the refusal was seen at, asked
as the contract asks), clears the rest again and commits it; the interval settles and the
audit, asking the chain the same at the named block, passes. An operator that names a party
that did accept fails the audit.

The account's bid, signed by its owner key, enters the book through the API: intake asks the
account's ``isValidSignature`` as the contract would (:mod:`market.intake`, contract accounts).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from test_audit_support import DEPOSIT, PRICE, AuditChain, Session
from web3 import Web3
from web3.contract import Contract

from audit.checks.violations import DEFAULTERS, SIGNATURES
from audit.report import AuditReport
from audit.run import audit_market
from deploy.deployment import deploy_contract
from ledger import eip712 as signing
from ledger.errors import BadSignature
from ledger.records import Trade
from market.chain_ledger import ChainLedger
from market.client import MarketClient
from market.ledger_port import LedgerCallFailed, MemoryLedger

BUYER, SELLER, OTHER_SELLER = 0, 2, 3
ORDERS = [
    (BUYER, "buy", 2_000, PRICE + 20_000),
    (SELLER, "sell", 2_000, PRICE - 10_000),
    (OTHER_SELLER, "sell", 1_000, PRICE - 5_000),
]
FLAKY_BID = (1_000, PRICE + 10_000)
ACCEPT, REFUSE, BURN = 0, 1, 2


@dataclass
class Flaky:
    """The hostile contract account, its owner key and its bid's id."""

    account: Contract
    owner: LocalAccount
    order_id: str = ""

    @property
    def address(self) -> str:
        return str(self.account.address)

    def set_mode(self, mode: int) -> None:
        self.account.functions.setMode(mode).transact({"from": self.owner.address})


@pytest.fixture(scope="module")
def base() -> AuditChain:
    return AuditChain()


def _flaky(session: Session) -> Flaky:
    """Deploy, register and fund a FlakyAccount on the session's chain."""
    chain, ledger = session.chain, session.ledger
    owner = Account.create()
    account, _ = deploy_contract(chain, "FlakyAccount", owner.address)
    ledger.register_participant(account.address, Account.create().address)
    admin = chain.accounts[0]
    ledger.token.functions.mint(account.address, DEPOSIT).transact({"from": admin})
    chain.w3.eth.send_transaction(
        {"from": admin, "to": owner.address, "value": Web3.to_wei(1, "ether")}
    )
    chain.add_signer(owner)
    account.functions.deposit(ledger.token.address, ledger.address, DEPOSIT).transact(
        {"from": owner.address}
    )
    return Flaky(account, owner)


def _place_flaky_bid(session: Session, flaky: Flaky, t: int) -> None:
    """The account's bid, signed by its owner key, through ``POST /orders``."""
    # The market sees the account's registration at its next check of the chain's facts
    # (within chain_facts_seconds); the test does not wait for it.
    session.service.refresh_facts()
    quantity, price = FLAKY_BID
    with MarketClient(app=session.app, account=flaky.owner, participant=flaky.address) as api:
        placed = api.submit_order(t, "buy", quantity, price, nonce=7, expiry=session.expiry)
    assert placed["participant"] == flaky.address and placed["status"] == "open"
    flaky.order_id = placed["id"]


def _run(session: Session, flaky: Flaky) -> int:
    """Place the orders and close the gate with the chain's clock past the gate closure;
    return the interval."""
    t = session.next_interval()
    for who, side, quantity, price in ORDERS:
        assert session.submit(t, who, side, quantity, price)
    _place_flaky_bid(session, flaky, t)
    gate = session.service.gate_closure_at(t)
    if session.chain.timestamp() <= gate:
        session.chain.advance_time(gate - session.chain.timestamp() + 1)
    session.close_gate(t)
    return t


def _flip_before_commit(holder: list[Flaky], mode: int) -> Any:
    """A commit hook that flips the account to ``mode`` just before the first commit."""
    done: list[bool] = []

    def flip(t: int, root: bytes, trades: list[Trade]) -> tuple[bytes, list[Trade]]:
        if not done:
            done.append(True)
            holder[0].set_mode(mode)
        return root, trades

    return flip


def _attacked(base: AuditChain, mode: int) -> Iterator[tuple[Session, Flaky, int]]:
    holder: list[Flaky] = []
    session = base.session(tamper=_flip_before_commit(holder, mode))
    holder.append(_flaky(session))
    t = _run(session, holder[0])
    yield session, holder[0], t
    session.close()


@pytest.fixture
def refused(base: AuditChain) -> Iterator[tuple[Session, Flaky, int]]:
    yield from _attacked(base, REFUSE)


@pytest.fixture
def burnt(base: AuditChain) -> Iterator[tuple[Session, Flaky, int]]:
    yield from _attacked(base, BURN)


def _audit(session: Session, source: Any = None) -> AuditReport:
    return audit_market(session.chain, session.base.market, source or session.api)


def _settle(session: Session, t: int) -> None:
    sold = session.sold_wh(t)
    session.to_reading_window([t])
    session.submit_readings(t, {SELLER: (0, sold[session.address(SELLER)])})
    session.past_deadlines([t])
    session.settle(t, 10)
    assert session.ledger.interval_info(t).status == "settled"


def _assert_dropped_and_committed(session: Session, flaky: Flaky, t: int) -> dict[str, Any]:
    assert session.committed == [t]
    published = session.api.interval_orders(t)
    by_id = {o["id"]: o for o in published["orders"]}
    mine = by_id[flaky.order_id]
    assert mine["status"] == "dropped" and mine["filledWh"] == 0
    assert mine["reason"].startswith(f"refused_signature: order {flaky.order_id} ")
    # Accepted when the gate closed: the block it accepted at is published with the order.
    assert isinstance(mine["signatureBlock"], int)
    [defaulter] = published["defaulters"]
    assert defaulter["participant"] == flaky.address
    assert defaulter["reason"] == "refused_signature"
    assert defaulter["order"] == flaky.order_id and defaulter["round"] == 1
    assert defaulter["block"] > mine["signatureBlock"]
    on_chain = session.ledger.committed_trades(t)
    assert [(x.buyer, x.seller, x.quantity_wh) for x in on_chain] == [
        (session.address(BUYER), session.address(SELLER), 2_000)
    ]
    assert session.ledger.balance_of(flaky.address).locked == 0
    assert session.api.clearing(t)["defaulters"] == published["defaulters"]
    return published


def test_a_contract_account_that_refuses_at_commit_is_dropped_and_the_rest_settles(
    refused: tuple[Session, Flaky, int],
) -> None:
    session, flaky, t = refused
    _assert_dropped_and_committed(session, flaky, t)
    _settle(session, t)
    report = _audit(session)
    assert report.ok, report.lines()
    assert any("defaulters: 1 party dropped" in n for n in report.interval(t).notes)


def test_an_account_burning_more_than_the_cap_is_dropped_and_the_commit_keeps_its_gas(
    burnt: tuple[Session, Flaky, int],
) -> None:
    session, flaky, t = burnt
    published = _assert_dropped_and_committed(session, flaky, t)
    # Asked without the market's cap, the account still accepts: only the capped call (the
    # probe's, the contract's) runs out of gas, and it is the one that counts.
    mine = next(o for o in published["orders"] if o["id"] == flaky.order_id)
    r, vs = signing.compact_signature(mine["signature"])
    answer = flaky.account.functions.isValidSignature(bytes.fromhex(flaky.order_id[2:]), r + vs)
    assert bytes(answer.call()).hex() == "1626ba7e"
    block = published["defaulters"][0]["block"]
    assert not session.service.gates.ledger.accepts_signature(
        flaky.address, bytes.fromhex(flaky.order_id[2:]), mine["signature"], block
    )
    commit = session.ledger.interval_info(t)
    assert commit.status == "committed"
    report = _audit(session)
    assert report.ok, report.lines()


class Unreachable(ChainLedger):
    """A node that takes no commit while ``down``; counts the commits it was sent after."""

    down = True
    sent = 0

    def commit_interval(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise LedgerCallFailed("committing: the node did not answer")
        self.sent += 1
        return super().commit_interval(*args, **kwargs)


def test_a_refusal_seen_before_sending_drops_the_account_without_a_revert(
    base: AuditChain,
) -> None:
    session = base.session()
    try:
        flaky = _flaky(session)
        node = Unreachable(session.ledger)
        session.service.gates.ledger = node
        t = _run(session, flaky)
        assert session.ledger.interval_info(t).status == "none"
        flaky.set_mode(REFUSE)
        node.down = False
        session.service.tick()
        session.committed.append(t)
        assert node.sent == 1  # the refusal was found before sending: no commit reverted
        _assert_dropped_and_committed(session, flaky, t)
        assert _audit(session).ok
    finally:
        session.close()


class FalseRefusal(ChainLedger):
    """An operator that, once the gate has closed, says ``victim`` refuses its signatures."""

    victim = ""
    asked = 0

    def accepts_signature(self, account: str, digest: bytes, signature: str, block: int) -> bool:
        self.asked += 1
        if account.lower() == self.victim.lower() and self.asked > 1:
            return False
        return super().accepts_signature(account, digest, signature, block)


def test_the_audit_fails_an_operator_that_drops_an_account_that_accepted(
    base: AuditChain,
) -> None:
    session = base.session()
    try:
        flaky = _flaky(session)
        lying = FalseRefusal(session.ledger)
        lying.victim = flaky.address
        session.service.gates.ledger = lying
        t = _run(session, flaky)
        assert session.committed == [t]
        published = session.api.interval_orders(t)
        assert [d["participant"] for d in published["defaulters"]] == [flaky.address]
        report = _audit(session)
        assert not report.ok
        [interval] = [r for r in report.intervals if r.interval == t]
        assert DEFAULTERS in interval.failed_checks
        line = interval.line()
        assert line.startswith(f"interval {t}  FAIL")
        assert "but its isValidSignature accepted it there" in line
    finally:
        session.close()


def test_the_audit_fails_a_refusal_claimed_of_an_ordinary_account(
    refused: tuple[Session, Flaky, int],
) -> None:
    session, _, t = refused
    body = copy.deepcopy(session.api.interval_orders(t))
    buyer = next(o for o in body["orders"] if o["order"]["participant"] == session.address(BUYER))
    body["defaulters"][0] |= {"participant": session.address(BUYER), "order": buyer["id"]}
    report = _audit(session, {t: body})
    [interval] = [r for r in report.intervals if r.interval == t]
    assert DEFAULTERS in interval.failed_checks
    assert "but it held no code there" in interval.line()


def test_the_audit_fails_a_contract_order_without_the_block_it_was_accepted_at(
    refused: tuple[Session, Flaky, int],
) -> None:
    session, _, t = refused
    body = copy.deepcopy(session.api.interval_orders(t))
    for order in body["orders"]:
        order.pop("signatureBlock", None)
    report = _audit(session, {t: body})
    [interval] = [r for r in report.intervals if r.interval == t]
    assert SIGNATURES in interval.failed_checks
    assert "no signatureBlock names where its contract account accepted it" in interval.line()


def test_an_ecdsa_signature_is_never_asked_of_a_contract() -> None:
    """The memory ledger (no contract accounts) accepts exactly an account's own signature."""
    ledger = MemoryLedger()
    key = Account.create()
    digest = bytes(range(32))
    signature = "0x" + bytes(Account.unsafe_sign_hash(digest, key.key).signature).hex()
    assert ledger.accepts_signature(key.address, digest, signature, 0)
    assert not ledger.accepts_signature(Account.create().address, digest, signature, 0)
    with pytest.raises(BadSignature):
        signing.recover(digest, "0x00")
    assert not ledger.accepts_signature(key.address, digest, "0x00", 0)
    assert not ledger.has_code(key.address, 0)
