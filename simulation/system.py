"""The market a simulation trades on, as its driver sees it: the :class:`System` interface.

A driver (:mod:`simulation.driver`) talks to a :class:`System`: HTTP into the market API
through :attr:`System.api` (a :class:`~simulation.market_api.MarketApi`), the chain through
:attr:`System.ledger` (a :class:`~chain.client.LedgerClient` whose sender is the deployer,
which registers participants and mints their collateral), and four controls:
:meth:`System.advance_to` (time), :meth:`System.close_gate`, :meth:`System.submit_readings`
and :meth:`System.settle`. :meth:`System.onboard` registers and funds every
:class:`Participant` (its keys and its deposit) the same way on any system, and
:class:`MarketTiming` says when gate closure, delivery and the reading deadline of an
on-chain interval come, from the contract's terms.

Outcomes of settlement are read from the contract's ``TradeSettled`` and ``IntervalSettled``
events (:attr:`System.feed`, a :class:`~simulation.settlement_feed.SettlementFeed`), the same
on every system. Time is measured per stage with a :class:`~simulation.stopwatch.Stopwatch`
(:attr:`System.stopwatch`). Every request to the chain, from the market service, the
settlement service or the driver, is timed as ``chain`` wherever it happens
(:func:`~simulation.stopwatch.instrument_chain`), so the other stages (API, clearing,
settlement) show only their own work.

The systems themselves are wiring, so they live in the composition root
(:mod:`deploy.systems`): ``EmbeddedSystem`` assembles the whole market in-process, on the
embedded eth-tester chain or on the chain at ``--rpc-url``, and ``RemoteSystem`` drives a
``wattledger serve`` that is already running.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from chain.client import LedgerClient
from ledger.eip712 import Domain
from ledger.records import Balance
from simulation.market_api import MarketApi
from simulation.settlement_feed import SettlementFeed, SettlementProgress
from simulation.stopwatch import Stopwatch
from simulation.transactions import TxBatch

if TYPE_CHECKING:
    from audit.chain_source import CreationSource
    from audit.report import AuditReport

# --------------------------------------------------------------------------- market timing


@dataclass(frozen=True)
class MarketTiming:
    """When things happen to on-chain interval ``T`` (Unix seconds), from the contract."""

    epoch_seconds: int
    interval_seconds: int
    gate_closure_seconds: int
    reading_window_seconds: int

    def start(self, interval: int) -> int:
        """Start of delivery."""
        return self.epoch_seconds + interval * self.interval_seconds

    def end(self, interval: int) -> int:
        """End of delivery: readings are accepted from here."""
        return self.start(interval + 1)

    def gate_closure(self, interval: int) -> int:
        """Gate closure: the book is frozen, cleared and committed."""
        return self.start(interval) - self.gate_closure_seconds

    def deadline(self, interval: int) -> int:
        """Reading deadline: settlement may start here."""
        return self.end(interval) + self.reading_window_seconds

    def current(self, now_seconds: int) -> int:
        """The interval being delivered at ``now_seconds``."""
        return (now_seconds - self.epoch_seconds) // self.interval_seconds


# --------------------------------------------------------------------------- systems


@dataclass(frozen=True)
class Participant:
    """What set-up needs of one agent: its keys and its deposit."""

    name: str
    account: LocalAccount
    meter_address: str
    collateral_base_units: int


ETH_FOR_GAS_WEI = 5 * 10**16
"""Native currency each participant receives for its approve and deposit (0.05 ETH)."""


class System(ABC):
    """A running market the driver can trade on, move in time and settle."""

    api: MarketApi
    ledger: LedgerClient
    timing: MarketTiming
    domain: Domain
    feed: SettlementFeed
    label: str
    """Names the chain in the report (``eth-tester``, ``anvil at URL (chain 31337)``...)."""
    stopwatch: Stopwatch
    deployed_block: int = 0
    """Where the market's events start (its deployment block, when known)."""
    creation: CreationSource | None = None
    """The market's creation transaction and recorded constructor arguments, when known."""

    signs: bool = True
    """Whether the driver signs orders and meter readings (EIP-712) and the system checks
    them: True for every system on a chain; False for the in-memory market
    (:class:`simulation.memory_system.MemorySystem`), which takes them unsigned."""

    supports_grid: bool = False
    """Whether the system clears on a scenario's ``[grid]`` (docs/grid.md): only the
    in-memory market, until the contract settles trades at two prices."""
    feeder: Any = None
    """The :class:`simulation.feeder.Feeder` the market clears on, once set up; None
    without a grid."""

    @abstractmethod
    def now(self) -> int:
        """The market's time (Unix seconds) as the driver sees it."""

    @abstractmethod
    def advance_to(self, unix_seconds: int) -> None:
        """Move the market's clock and chain time forward to ``unix_seconds`` (never back)."""

    @abstractmethod
    def close_gate(self, interval: int) -> None:
        """Close ``interval``'s gate (its time has come): freeze, clear and commit it."""

    def submit_orders(
        self, submissions: Sequence[tuple[bool, Sequence[Any]]]
    ) -> list[list[dict[str, Any] | None]]:
        """Submit orders in the order given (see :meth:`MarketApi.submit_orders
        <simulation.market_api.MarketApi.submit_orders>`): signed bodies through the market
        API (or, where :attr:`signs` is False, unsigned ``(participant, interval, intent)``);
        returns the stored orders (with their ``id``), ``None`` for each refused one."""
        return self.api.submit_orders(submissions)

    def clearing(self, interval: int) -> dict[str, Any]:
        """``interval``'s clearing as ``GET /intervals/{t}/clearing`` publishes it."""
        result: dict[str, Any] = self.api.get(f"/intervals/{interval}/clearing")
        return result

    def submit_readings(self, interval: int, bodies: Sequence[Any]) -> int:
        """Post ``interval``'s signed readings; return how many were refused."""
        return self.api.post_readings(bodies)

    def escrow_balanced(self) -> bool:
        """Whether the market's escrow (the sum of its balances) equals the settlement
        token's balance of the market contract."""
        ledger = self.ledger
        held = int(ledger.token.functions.balanceOf(ledger.address).call())
        return ledger.total_escrowed() == held

    def balances_of(self, addresses: Sequence[str]) -> dict[str, Balance]:
        """Free and locked escrow balances of ``addresses`` (keyed as given)."""
        _, balances = self.ledger.balances_of(list(addresses))
        return {a: balances[to_checksum_address(a)] for a in addresses}

    @abstractmethod
    def settle(self, due: Sequence[int]) -> SettlementProgress:
        """Let settlement catch up with the current time; ``due`` are the committed
        intervals whose reading deadline has passed and that have not settled yet."""

    def order_minimum_wh(self) -> int:
        """The smallest order the market takes (``GET /market``'s ``bounds.minQuantityWh``)."""
        return int(self.api.get("/market")["bounds"]["minQuantityWh"])

    def audit(self, intervals: Sequence[int]) -> AuditReport:
        """Audit ``intervals`` as anyone could (``wattledger audit``): the signed order sets
        the market API publishes, re-cleared and checked against the chain's record, and
        the meter readings its settlement service kept off-chain (``GET
        /intervals/{t}/readings``), checked against the meter keys."""
        from audit.evidence import rules_from_market_info
        from audit.run import audit_market

        orders = {t: self.api.get(f"/intervals/{t}/orders") for t in intervals}
        readings = {t: self.api.get(f"/intervals/{t}/readings") for t in intervals}
        return audit_market(
            self.ledger.chain,
            self.ledger.address,
            orders,
            min(intervals),
            max(intervals),
            from_block=self.deployed_block,
            creation=self.creation,
            rules=rules_from_market_info(self.api.get("/market"), "GET /market"),
            readings=readings,
        )

    def onboard(self, participants: Sequence[Participant]) -> int:
        """Register participants with their meter keys, mint and deposit their collateral.

        The deployer (registrar and token minter) registers and mints; each participant
        approves and deposits itself after receiving a little native currency for gas.
        Returns the number of transactions sent.
        """
        ledger = self.ledger
        deployer = self._deployer_account()
        market = ledger.contract.functions
        token = ledger.token.functions
        batch = TxBatch(ledger.chain)
        for p in participants:
            address = p.account.address
            batch.send(deployer, to=address, value=ETH_FOR_GAS_WEI, gas=21_000)
            batch.call(deployer, market.registerParticipant(address, p.meter_address))
            if p.collateral_base_units:
                batch.call(deployer, token.mint(address, p.collateral_base_units))
        batch.wait()
        for p in participants:
            if p.collateral_base_units:
                amount = p.collateral_base_units
                batch.call(p.account, token.approve(ledger.address, amount))
                batch.call(p.account, market.deposit(amount))
        return batch.wait()

    @abstractmethod
    def _deployer_account(self) -> LocalAccount:
        """The account holding the market's REGISTRAR role and the token's MINTER role."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the system holds (HTTP clients, stores)."""


__all__ = [
    "ETH_FOR_GAS_WEI",
    "MarketTiming",
    "Participant",
    "System",
]
