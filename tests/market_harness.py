"""Shared set-up for market service and API tests: an in-memory ledger, a simulated clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from market.client import OrderSigner
from market.clock import SimulatedClock
from market.grid_operator import GridSetup
from market.ledger_port import MemoryLedger
from market.service import MarketConfig, MarketService
from market.signed_messages import SignedMessage
from market.store import OrderStore

TOKEN = 10**18
PRICE = 250_000_000_000_000  # 0.25 currency/kWh in base units per Wh
PENALTY = 500_000_000_000_000


@dataclass
class Market:
    """A service on a MemoryLedger with a SimulatedClock, and funded signers."""

    service: MarketService
    ledger: MemoryLedger
    clock: SimulatedClock
    db: Path
    alice: OrderSigner
    bob: OrderSigner
    carol: OrderSigner
    # Scratch space for API tests: orders they placed and state they snapshot.
    open: dict[str, Any] = field(default_factory=dict)
    bob_open: dict[str, Any] = field(default_factory=dict)
    closing_t: int = 0
    before: Any = None

    @property
    def t(self) -> int:
        """The first interval whose gate is open (a full interval of margin)."""
        return self.service.current_interval() + 2

    def reopen(self, config: MarketConfig | None = None) -> MarketService:
        """A new service on the same store and ledger, as after a restart."""
        self.service.store.close()
        self.service = MarketService(
            OrderStore(self.db),
            self.ledger,
            self.clock,
            config or self.service.config,
            operator_key=OPERATOR.key,
        )
        return self.service

    def close_due(self, interval: int) -> None:
        """Advance the clock to ``interval``'s gate closure and tick."""
        self.clock.set(max(self.clock.now(), self.service.gate_closure_at(interval)))
        self.service.tick()


OPERATOR = Account.from_key((99).to_bytes(32, "big"))
"""The harness's operator key: the MemoryLedger's operator, which signs receipts."""


def signed(body: dict[str, Any]) -> SignedMessage:
    """A request body from OrderSigner as the service's SignedMessage."""
    message: dict[str, Any] = body.get("order") or body.get("cancel") or body["close"]
    return SignedMessage(message, body["signature"])


def account(seed: int) -> LocalAccount:
    key: LocalAccount = Account.from_key(seed.to_bytes(32, "big"))
    return key


def make_market(
    tmp_path: Path,
    deposit: int = 1_000 * TOKEN,
    config: MarketConfig | None = None,
    grid: GridSetup | None = None,
) -> Market:
    ledger = MemoryLedger(penalty_price_per_wh=PENALTY)
    ledger.operator = OPERATOR.address.lower()
    clock = SimulatedClock(ledger.epoch_seconds + 10 * ledger.interval_seconds)
    db = tmp_path / "market.db"
    service = MarketService(
        OrderStore(db), ledger, clock, config, operator_key=OPERATOR.key, grid=grid
    )
    signers = []
    for seed in (1, 2, 3):
        who = account(seed)
        ledger.register(who.address, deposit)
        signers.append(OrderSigner(who, service.domain))
    alice, bob, carol = signers
    return Market(service, ledger, clock, db, alice, bob, carol)


def fund_participants(client: Any, signers: Any, amount: int) -> None:
    """Mint ``amount`` WATT to each signer, register it (meter = itself) and deposit it all.

    ``client`` is a :class:`chain.client.LedgerClient` whose sender is the deployer (minter
    and registrar).
    """
    deployer = client.sender
    for who in signers:
        client.chain.add_signer(who)
        client.transact(client.token.functions.mint(who.address, amount), deployer)
        client.register_participant(who.address, who.address)
        client.deposit(who.address, amount)
