"""Factories that wire the parts together: deployment, funding, market service and app.

``wattledger serve`` and ``wattledger simulate`` assemble the same system (chain,
EnergyMarket deployment, order store, :class:`~market.service.MarketService` over the
:class:`~market.chain_ledger.ChainLedger`, FastAPI app with the settlement router); the
composition lives here once so that the simulation runs exactly what ``serve`` runs, only
with a simulated clock and without a socket.

Nothing here holds global state: every function takes what it wires and returns the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_account.signers.local import LocalAccount

from chain.client import LedgerClient
from chain.connection import Chain
from chain.deployment import Deployment
from deploy.deployment import DEFAULT_INTERVAL_SECONDS, DEFAULT_MARKET_TERMS, deploy_system
from market.chain_ledger import ChainLedger
from market.clock import Clock
from market.receipts import OperatorKeyMismatch
from market.service import MarketConfig, MarketService
from market.store import OrderStore

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

    from settlement.chain_reader import ChainReader
    from settlement.config import SettlementConfig
    from settlement.service import SettlementService

DEV_FUNDING_BASE_UNITS = 1_000_000 * 10**18
"""WATT given to each development account by ``serve --fund-dev-accounts`` (one million)."""

Progress = Callable[[str], None]


def deploy_market(
    chain: Chain,
    *,
    interval_seconds: int | None = None,
    terms: tuple[int, int, int] | None = None,
    progress: Progress | None = None,
) -> Deployment:
    """Deploy WattToken and EnergyMarket with ``interval_seconds`` (default 900) and
    ``terms`` (penalty price per Wh, tolerance in bps, reading window in seconds; default
    :data:`~deploy.deployment.DEFAULT_MARKET_TERMS`). The deployer holds every role."""
    return deploy_system(
        chain,
        progress,
        interval_seconds=interval_seconds or DEFAULT_INTERVAL_SECONDS,
        terms=terms or DEFAULT_MARKET_TERMS,
    )


def fund_dev_accounts(client: LedgerClient, accounts: Sequence[LocalAccount]) -> None:
    """Register each account (as its own meter) and top its free balance up to 1M WATT."""
    for account in accounts:
        address = account.address
        if not client.participant_info(address).registered:
            client.register_participant(address, address)
        missing = DEV_FUNDING_BASE_UNITS - client.balance_of(address).free
        if missing > 0:
            client.transact(client.token.functions.mint(address, missing), client.sender)
            client.deposit(address, missing)


def default_gate_closure_seconds(interval_seconds: int) -> int:
    """Gate closure lead time ``serve`` uses unless told: a third of the interval."""
    return max(interval_seconds // 3, 1)


OPERATOR_KEY_ENV = "WATTLEDGER_OPERATOR_KEY"
"""The environment variable with the operator's private key (``0x`` hex), for a market whose
operator is not one of the chain's known signers (``WATTLEDGER_PRIVATE_KEY``, anvil's and the
embedded chain's development accounts). An environment variable, not a flag: a flag's value
is visible to every user of the machine in the process list. Read on a local dev chain only,
or with ``--allow-env-keys`` (:meth:`chain.connection.Chain.env_key`); elsewhere the operator's
key comes from its encrypted keystore (``serve --keystore``)."""


def operator_key(chain: Chain, operator: str) -> bytes | str:
    """The private key of the market's ``operator`` account, which signs the receipts of
    every accepted order and cancel: the key of a known signer of ``chain`` with that
    address (a ``--keystore`` account among them), else :data:`OPERATOR_KEY_ENV`'s (checked
    against the address by the service; refused off dev chains without ``--allow-env-keys``).
    Raises :class:`~market.receipts.OperatorKeyMismatch` when neither is there: the market
    does not start without it."""
    for signer in chain.signers:
        if signer.address.lower() == operator.lower():
            return bytes(signer.key)
    from_env = chain.env_key(OPERATOR_KEY_ENV)
    if from_env:
        return from_env
    raise OperatorKeyMismatch(
        f"the private key of the market's operator {operator} is not known: the market signs a "
        "receipt for every order and cancel it accepts with it, and does not start without it",
        hint="Pass the operator's encrypted keystore with --keystore PATH (on a local dev "
        f"chain {OPERATOR_KEY_ENV} with its private key, 0x hex, also works).",
    )


@dataclass
class MarketParts:
    """The assembled market: its ledger adapter, order store and service."""

    ledger: ChainLedger
    store: OrderStore
    service: MarketService


def market_service(
    client: LedgerClient,
    db: Path,
    clock: Clock,
    config: MarketConfig,
    *,
    ledger: ChainLedger | None = None,
) -> MarketParts:
    """Open the order store at ``db`` and build the market service over ``client``.

    ``ledger`` replaces the plain :class:`ChainLedger` (a subclass that measures or caches).
    """
    adapter = ledger or ChainLedger(client)
    key = operator_key(client.chain, adapter.info().operator)
    store = OrderStore(db)
    service = MarketService(store, adapter, clock, config, operator_key=key)
    return MarketParts(adapter, store, service)


def market_app(
    service: MarketService,
    *,
    extra_routers: Sequence[APIRouter] = (),
    tick_seconds: float | None = None,
    inline_commits: bool = False,
) -> FastAPI:
    """The market API over ``service``, with ``extra_routers`` (the settlement service's);
    ``inline_commits`` only for an in-process client (see
    ``market.http.group_commit.GroupCommitter``)."""
    from market.http.app import create_app

    return create_app(
        service,
        extra_routers=extra_routers,
        tick_seconds=tick_seconds,
        inline_commits=inline_commits,
    )


def settlement_service(
    client: LedgerClient,
    db: Path,
    settler: LocalAccount,
    *,
    start_block: int = 0,
    reader: ChainReader | None = None,
    config: SettlementConfig | None = None,
    clock: Clock | None = None,
) -> SettlementService:
    """The settlement service for the market of ``client``, sending from ``settler``.

    The composition of ``wattledger settle`` (:func:`deploy.cli_settle.build_service`) with
    the service's default policy: a :class:`~settlement.chain_reader.ChainReader` scanning
    events from ``start_block`` (the market's deployment block) unless ``reader`` is given,
    the SQLite reading store and transaction journal at ``db``, and on-chain time unless
    ``clock`` is given.
    """
    from settlement.chain_reader import ChainReader
    from settlement.service import SettlementService
    from settlement.store import ReadingStore
    from settlement.tx import TxPolicy, TxSender

    reader = reader or ChainReader(client, start_block=start_block)
    store = ReadingStore(db)
    sender = TxSender(reader, settler, store, TxPolicy())
    return SettlementService(reader, store, sender, config, clock)


def prefer_fast_keccak() -> bool:
    """Make eth-hash use pysha3's C Keccak in this process, if installed; True if it does.

    eth-hash picks its backend on first use and prefers pycryptodome, which is several
    times slower; py-evm (the embedded chain) and web3 hash through it constantly, so a
    simulation on eth-tester runs about twice as fast with pysha3 (``safe-pysha3``, a
    dependency). The result of every hash is the same.
    """
    try:
        from eth_hash.auto import keccak
        from eth_hash.utils import load_backend

        backend = load_backend("pysha3")
    except (ImportError, ValueError):
        return False
    fast: Any = keccak
    fast._backend = backend
    fast.hasher = backend.keccak256
    fast.preimage = backend.preimage
    return True


__all__ = [
    "DEV_FUNDING_BASE_UNITS",
    "OPERATOR_KEY_ENV",
    "MarketParts",
    "default_gate_closure_seconds",
    "deploy_market",
    "fund_dev_accounts",
    "market_app",
    "market_service",
    "operator_key",
    "prefer_fast_keccak",
    "settlement_service",
]
