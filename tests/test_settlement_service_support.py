"""Shared set-up for the settlement service tests: a deployed market, a service, a model twin.

:class:`SettleEnv` wraps the contract tests' :class:`MarketEnv` (deployed market, participants
1..n registered with meter keys and funded) with a :class:`SettlementService` on a fresh
SQLite store, a settlement account of its own (the chain's last account), and a
:class:`settlement.model.Ledger` that mirrors every commit, so a test can compare every
balance with the model at the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from test_ledger_support import DEFAULT_TERMS, DEPOSIT, MarketEnv, snapshot_env

from deploy.chain import Chain
from market.client import OrderSigner
from market.signing import Domain
from settlement.chain_reader import ChainReader
from settlement.model import Ledger, Reading, Trade
from settlement.service import SettlementConfig, SettlementService
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
    from deploy.chain import connect

    base = MarketEnv.build(connect(), n_participants=2)
    for env in settle_env(base, tmp_path):
        env.assert_balances_match_model()
        assert env.settler.address not in env.participants
