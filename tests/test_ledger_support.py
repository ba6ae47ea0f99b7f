"""Shared set-up for the EnergyMarket contract tests: one deployed market with participants.

:class:`MarketEnv` deploys WattToken and EnergyMarket (through ``deploy_system``), registers
the chain's funded accounts 1..n as participants with fresh meter keys, mints and deposits
tokens, and offers the few steps every test repeats (commit, move time, read, settle).
Tests share one env per module and revert to a snapshot after each test.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from chain.client import LedgerClient
from chain.connection import Chain, connect
from deploy.deployment import DEFAULT_MARKET_TERMS, deploy_system
from ledger.eip712 import SignedReading, sign_reading
from ledger.order_backing import back_trades
from ledger.records import Reading, Terms, Trade

TOKEN = 10**18
DEPOSIT = 1_000_000 * TOKEN
PRICE = 250_000_000_000_000  # 0.25 currency/kWh in base units per Wh
DEFAULT_TERMS = Terms(*DEFAULT_MARKET_TERMS)
BOOK_ROOT = b"\xbb" * 32


@dataclass
class MarketEnv:
    """A deployed market with registered, funded participants."""

    chain: Chain
    ledger: LedgerClient
    participants: list[str]
    meters: dict[str, LocalAccount] = field(default_factory=dict)

    @classmethod
    def build(cls, chain: Chain, n_participants: int = 6, deposit: int = DEPOSIT) -> MarketEnv:
        """Deploy the system and register accounts 1..n with meters; deposit ``deposit`` each."""
        deployment = deploy_system(chain)
        ledger = LedgerClient.from_deployment(chain, deployment)
        env = cls(
            chain=chain, ledger=ledger, participants=list(chain.accounts[1 : 1 + n_participants])
        )
        admin = chain.accounts[0]
        for i, participant in enumerate(env.participants):
            meter = Account.from_key((0xA11CE + i).to_bytes(32, "big"))
            env.meters[participant] = meter
            ledger.register_participant(participant, meter.address)
            ledger.token.functions.mint(participant, 10 * deposit + 1).transact({"from": admin})
            if deposit:
                ledger.deposit(participant, deposit)
        return env

    @property
    def admin(self) -> str:
        """Deployer: admin, operator, registrar and guardian."""
        return self.chain.accounts[0]

    def p(self, i: int) -> str:
        """Participant ``i``."""
        return self.participants[i]

    def next_interval(self) -> int:
        """An interval whose delivery has not started yet (commit is allowed)."""
        return self.ledger.current_interval() + 1

    def commit(self, trades: Sequence[Trade], t: int | None = None) -> int:
        """Commit ``trades`` for ``t`` (default: the next interval), backed by orders each
        party signs (:func:`ledger.order_backing.back_trades`); return ``t``."""
        t = self.next_interval() if t is None else t
        self.commit_receipt(trades, t)
        return t

    def commit_receipt(self, trades: Sequence[Trade], t: int) -> TxReceipt:
        """:meth:`commit`, returning the (last) commit transaction's receipt."""
        backed, orders = back_trades(t, trades, self.ledger.domain(), self.keys)
        return self.ledger.commit_interval(t, BOOK_ROOT, backed, orders)

    @property
    def keys(self) -> dict[str, bytes]:
        """Private keys of the chain's accounts (participants sign their orders with them)."""
        return {s.address: bytes(s.key) for s in self.chain.signers}

    def set_terms_now(self, terms: Terms) -> TxReceipt:
        """Schedule ``terms`` and move chain time past their notice, so that they apply to
        the next interval (and another change may be scheduled)."""
        receipt = self.ledger.set_terms(terms)
        notice = int(self.ledger.contract.functions.TERMS_NOTICE_SECONDS().call())
        self.chain.advance_time(notice + self.ledger.interval_seconds())
        return receipt

    def to_reading_window(self, t: int) -> None:
        """Move chain time to just after interval ``t`` ends."""
        _, end = self.ledger.interval_window(t)
        now = self.chain.timestamp()
        if now < end:
            self.chain.advance_time(end - now)

    def to_deadline(self, t: int) -> None:
        """Move chain time to interval ``t``'s reading deadline (settlement opens)."""
        deadline = self.ledger.interval_info(t).deadline
        now = self.chain.timestamp()
        if now < deadline:
            self.chain.advance_time(deadline - now)

    def sign(self, reading: Reading, meter: LocalAccount | None = None) -> SignedReading:
        """Sign ``reading`` with the participant's meter (or ``meter``)."""
        key = meter or self.meters[reading.participant]
        return sign_reading(key, reading, self.ledger.domain())

    def read(
        self, t: int, exported: dict[str, int], imported: dict[str, int] | None = None
    ) -> None:
        """Submit signed readings for ``t`` (moves time into the reading window first)."""
        self.to_reading_window(t)
        imported = imported or {}
        readings = [self.sign(Reading(p, t, imported.get(p, 0), e)) for p, e in exported.items()]
        if readings:
            self.ledger.submit_readings(t, readings)

    def balances(self) -> dict[str, tuple[int, int]]:
        """(free, locked) of every participant."""
        out = {}
        for p in self.participants:
            b = self.ledger.balance_of(p)
            out[p] = (b.free, b.locked)
        return out

    def token_balance(self) -> int:
        """Tokens the market holds."""
        return int(self.ledger.token.functions.balanceOf(self.ledger.address).call())


def trade(buyer: str, seller: str, quantity_wh: int, price: int = PRICE, n: int = 0) -> Trade:
    """A trade with deterministic order ids derived from ``n``."""
    return Trade(
        buyer,
        seller,
        quantity_wh,
        price,
        buy_order_id=(2 * n + 1).to_bytes(32, "big"),
        sell_order_id=(2 * n + 2).to_bytes(32, "big"),
    )


def commit_backed(
    ledger: LedgerClient,
    keys: Mapping[str, bytes],
    t: int,
    trades: Sequence[Trade],
    root: bytes = BOOK_ROOT,
) -> TxReceipt:
    """Commit ``trades`` for ``t`` backed by orders each party signs with its key in ``keys``."""
    backed, orders = back_trades(t, trades, ledger.domain(), keys)
    return ledger.commit_interval(t, root, backed, orders)


def chain_keys(chain: Chain) -> dict[str, bytes]:
    """Private keys of the accounts ``chain`` signs for."""
    return {s.address: bytes(s.key) for s in chain.signers}


def snapshot_env(env: MarketEnv) -> Iterator[MarketEnv]:
    """Yield ``env`` and revert the chain afterwards (for function-scoped fixtures)."""
    snap = env.chain.snapshot()
    ledger_cache: dict[int, Any] = dict(env.ledger._trades)
    try:
        yield env
    finally:
        env.chain.revert(snap)
        env.ledger._trades = ledger_cache


def raises(exc_type: type[Exception], **fields: Any) -> Any:
    """``pytest.raises`` that also checks the decoded error arguments."""

    class _Check:
        def __enter__(self) -> Any:
            self._ctx = pytest.raises(exc_type)
            self.info = self._ctx.__enter__()
            return self.info

        def __exit__(self, *exc: Any) -> bool:
            handled = self._ctx.__exit__(*exc)
            if not handled:
                return False
            for name, value in fields.items():
                assert getattr(self.info.value, name) == value, (name, self.info.value)
            return bool(handled)

    return _Check()


def test_market_env_builds_funded_participants() -> None:
    env = MarketEnv.build(connect(), n_participants=2)
    assert env.ledger.balance_of(env.p(0)).free == DEPOSIT
    assert env.ledger.total_escrowed() == 2 * DEPOSIT == env.token_balance()
    assert env.ledger.participant_info(env.p(1)).meter == env.meters[env.p(1)].address
