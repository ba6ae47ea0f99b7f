"""Shared set-up for the settlement service tests: a deployed market, a service, a model twin.

:class:`SettleEnv` wraps the contract tests' :class:`MarketEnv` (deployed market, participants
1..n registered with meter keys and funded) with a :class:`SettlementService` on a fresh
SQLite store, a settlement account of its own (the chain's last account), and a
:class:`settlement.model.Ledger` that mirrors every commit, so a test can compare every
balance with the model at the end.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from test_ledger_support import DEFAULT_TERMS, DEPOSIT, PRICE, MarketEnv, snapshot_env

from chain.client import LedgerClient
from chain.connection import Chain
from ledger.eip712 import Domain
from ledger.records import Reading, Trade
from market.client import OrderSigner
from settlement.chain_reader import ChainReader
from settlement.config import SettlementConfig
from settlement.model import Ledger
from settlement.service import SettlementService
from settlement.store import ReadingStore
from settlement.tx import TxPolicy, TxSender

FAST_POLICY = TxPolicy(receipt_timeout_seconds=5.0, poll_seconds=0.02)


@dataclass
class SettleEnv:
    """A market, a settlement service on ``db`` and the model ledger beside them."""

    market: MarketEnv
    db: Path
    config: SettlementConfig
    policy: TxPolicy
    model: Ledger = field(default_factory=Ledger)
    service: SettlementService = field(init=False)
    readings: dict[int, dict[str, Reading]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for p in self.market.participants:
            self.model.register(p)
            self.model.deposit(p, DEPOSIT)
        self.service = self.new_service()

    @property
    def chain(self) -> Chain:
        return self.market.chain

    @property
    def settler(self) -> LocalAccount:
        return self.chain.signers[-1]

    @property
    def participants(self) -> list[str]:
        return self.market.participants

    def p(self, i: int) -> str:
        return self.market.p(i)

    def new_service(
        self, config: SettlementConfig | None = None, reader: ChainReader | None = None
    ) -> SettlementService:
        """A service on the same store file, as after a restart."""
        reader = reader or ChainReader(self.market.ledger, sleep=lambda _s: None)
        store = ReadingStore(self.db)
        sender = TxSender(reader, self.settler, store, self.policy)
        self.service = SettlementService(reader, store, sender, config or self.config)
        return self.service

    def commit(self, trades: Sequence[Trade], t: int | None = None) -> int:
        """Commit ``trades`` on-chain and in the model; return the interval."""
        t = self.market.commit(trades, t)
        self.model.commit(t, trades, DEFAULT_TERMS)
        return t

    def domain(self) -> Domain:
        return Domain(self.chain.chain_id, self.market.ledger.address)

    def body(
        self,
        t: int,
        participant: str,
        exported_wh: int,
        imported_wh: int = 0,
        meter: LocalAccount | None = None,
    ) -> dict[str, Any]:
        """A ``POST /meter-readings`` body signed by the participant's meter (or ``meter``)."""
        key = meter or self.market.meters[participant]
        return OrderSigner(key, self.domain()).reading(participant, t, imported_wh, exported_wh)

    def accept(self, t: int, exported: dict[str, int], imported_wh: int = 7) -> None:
        """Submit readings through the service's intake and remember them for the model."""
        for p, e in exported.items():
            body = self.body(t, p, e, imported_wh)
            self.service.accept_reading(body["reading"], body["signature"])
            self.readings.setdefault(t, {})[p] = Reading(p, t, imported_wh, e)

    def settle_model(self, t: int, readings: Iterable[Reading] | None = None) -> None:
        """Apply the readings (default: those accepted) and settle ``t`` in the model."""
        chosen = self.readings.get(t, {}).values() if readings is None else readings
        for r in chosen:
            self.model.submit_reading(t, r)
        self.model.settle(t, 10**9)

    def assert_balances_match_model(self) -> None:
        for p in self.participants:
            chain = self.market.ledger.balance_of(p)
            model = self.model.balance(p)
            assert (chain.free, chain.locked) == (model.free, model.locked), p

    def settler_nonce(self) -> int:
        return int(self.chain.w3.eth.get_transaction_count(self.settler.address))

    def trade_settled_indices(self, t: int) -> list[int]:
        event = self.market.ledger.contract.events.TradeSettled
        logs = event.get_logs(from_block=0, argument_filters={"interval": t})
        return sorted(int(e["args"]["tradeIndex"]) for e in logs)

    def tick_until_quiet(self, limit: int = 10) -> list[str]:
        lines: list[str] = []
        for _ in range(limit):
            step = self.service.tick()
            if not step:
                return lines
            lines += step
        return lines


def settle_env(
    base: MarketEnv,
    tmp_path: Path,
    config: SettlementConfig | None = None,
    policy: TxPolicy = FAST_POLICY,
) -> Iterator[SettleEnv]:
    """A SettleEnv over ``base`` whose chain is reverted afterwards (function-scoped)."""
    for market in snapshot_env(base):
        env = SettleEnv(market, tmp_path / "settlement.db", config or SettlementConfig(), policy)
        try:
            yield env
        finally:
            env.service.store.close()


def test_settle_env_mirrors_deposits_in_the_model(tmp_path: Path) -> None:
    from chain.connection import connect

    base = MarketEnv.build(connect(), n_participants=2)
    for env in settle_env(base, tmp_path):
        env.assert_balances_match_model()
        assert env.settler.address not in env.participants


# --------------------------------------------------------------------------- many participants

SELECTORS = {
    name: "0x" + keccak(text=signature)[:4].hex()
    for name, signature in {
        "register": "registerParticipant(address,address)",
        "mint": "mint(address,uint256)",
        "approve": "approve(address,uint256)",
        "deposit": "deposit(uint256)",
    }.items()
}


@dataclass(frozen=True)
class Population:
    """Participants registered on a market with their meter keys, each with ``deposit``."""

    participants: list[str]
    meters: dict[str, LocalAccount]
    deposit: int
    keys: dict[str, bytes]
    """Each participant's private key (it signs the orders that back its trades)."""


def populate_anvil(
    chain: Chain, ledger: LedgerClient, n: int, deposit: int, seed: int
) -> Population:
    """Register, fund and deposit for ``n`` fresh participants on anvil in a few blocks.

    Participants are impersonated (anvil signs for them); meter keys are deterministic from
    ``seed``. Transactions are queued with automine off and mined in full blocks: 4,000 take
    about four seconds where one block each would take minutes.
    """
    people = [Account.from_key((seed * 10**7 + i).to_bytes(32, "big")) for i in range(n)]
    meters = [Account.from_key((seed * 10**7 + 10**6 + i).to_bytes(32, "big")) for i in range(n)]
    url = chain.rpc_url
    assert url is not None
    rpc = chain.w3.provider.make_request
    deployer = ledger.sender
    token = ledger.token.address
    nonce = int(chain.w3.eth.get_transaction_count(deployer))

    def tx(sender: str, to: str, data: str, n: int) -> tuple[str, list[Any]]:
        call = {"from": sender, "to": to, "gas": hex(300_000), "data": data, "nonce": hex(n)}
        return "eth_sendTransaction", [call]

    first: list[tuple[str, list[Any]]] = []
    second: list[tuple[str, list[Any]]] = []
    for who, meter in zip(people, meters, strict=True):
        a = who.address
        first.append(("anvil_setBalance", [a, hex(10**19)]))
        reg = abi_encode(["address", "address"], [a, meter.address]).hex()
        first.append(tx(deployer, ledger.address, SELECTORS["register"] + reg, nonce))
        mint = abi_encode(["address", "uint256"], [a, deposit]).hex()
        first.append(tx(deployer, token, SELECTORS["mint"] + mint, nonce + 1))
        nonce += 2
        approve = abi_encode(["address", "uint256"], [ledger.address, deposit]).hex()
        second.append(tx(a, token, SELECTORS["approve"] + approve, 0))
        amount = abi_encode(["uint256"], [deposit]).hex()
        second.append(tx(a, ledger.address, SELECTORS["deposit"] + amount, 1))
    rpc("anvil_autoImpersonateAccount", [True])  # type: ignore[arg-type]
    rpc("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        with requests.Session() as http:
            for phase in (first, second):
                for k in range(0, len(phase), 500):
                    batch: list[dict[str, Any]] = [
                        {"jsonrpc": "2.0", "id": j, "method": m, "params": p}
                        for j, (m, p) in enumerate(phase[k : k + 500])
                    ]
                    answers = http.post(url, json=batch, timeout=120).json()
                    errors = [a for a in answers if "error" in a]
                    assert not errors, errors[:3]
                while True:  # mine full blocks until the pool is empty
                    status = rpc("txpool_status", [])["result"]  # type: ignore[arg-type]
                    if int(status["pending"], 16) == 0 and int(status["queued"], 16) == 0:
                        break
                    rpc("evm_mine", [])  # type: ignore[arg-type]
    finally:
        rpc("evm_setAutomine", [True])  # type: ignore[arg-type]
        rpc("anvil_autoImpersonateAccount", [False])  # type: ignore[arg-type]
    participants = [p.address for p in people]
    assert ledger.balance_of(participants[-1]).free == deposit
    keys = {p.address: bytes(p.key) for p in people}
    return Population(participants, dict(zip(participants, meters, strict=True)), deposit, keys)


def ring_trades(participants: Sequence[str], count: int, seed: int) -> list[Trade]:
    """``count`` trades: the first half of ``participants`` buy, the second half sell, each
    buyer from two sellers in a ring (so every seller has several trades); seeded sizes."""
    rng = random.Random(seed)
    half = len(participants) // 2
    buyers, sellers = participants[:half], participants[half:]
    trades = []
    for k in range(count):
        buyer = buyers[(k // 2) % half]
        seller = sellers[(k // 2 + k % 2) % half]
        trades.append(
            Trade(
                buyer,
                seller,
                rng.randint(100, 2_000),
                PRICE + rng.randint(-50_000, 50_000),
                buy_order_id=(2 * k + 1).to_bytes(32, "big"),
                sell_order_id=(2 * k + 2).to_bytes(32, "big"),
            )
        )
    return trades


def model_after(
    population: Population, t: int, trades: Sequence[Trade], readings: Iterable[Reading]
) -> Ledger:
    """The model ledger after committing ``trades`` for ``t`` and settling with ``readings``."""
    model = Ledger()
    for p in population.participants:
        model.register(p)
        model.deposit(p, population.deposit)
    model.commit(t, trades, DEFAULT_TERMS)
    for r in readings:
        model.submit_reading(t, r)
    model.settle(t, 10**9)
    return model
