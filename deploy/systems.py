"""The systems a simulation runs on: the whole market in-process, or a running one.

Both implement :class:`simulation.system.System`, the interface the simulation's driver
trades through; they are wiring (what ``wattledger serve`` assembles, or a server found at a
URL), so they live here in the composition root, and ``wattledger simulate``
(:mod:`deploy.cli_simulate`) picks one.

:class:`EmbeddedSystem` (``wattledger simulate``, with or without ``--rpc-url``)
    Deploys fresh contracts on the embedded eth-tester chain, or on the chain at
    ``--rpc-url``, and assembles what ``wattledger serve`` runs (:mod:`deploy.assembly`):
    the SQLite order store and :class:`~market.service.MarketService` over the real
    contract, the settlement service (:class:`~settlement.service.SettlementService`) with
    its reading store and transaction journal, and the FastAPI app with the settlement
    router, reached through an ASGI transport (no socket). The market's clock is a
    :class:`~market.clock.SimulatedClock` that moves with chain time:
    :meth:`~EmbeddedSystem.advance_to` moves both, so gate closure, ``commitInterval``
    (only before the interval's end), the reading window (from the interval's end to its
    deadline) and settlement happen in the order the contract demands, a day in minutes.
    Gate closure is the market service's own ``tick()`` and settlement the settlement
    service's own ``tick()``, which is what the background loops of ``serve`` call. The
    chain is reached through the simulation's cheaper clients
    (:mod:`simulation.chain_clients`).

:func:`memory_system` (``--ledger memory``)
    The market in memory, no chain (:class:`simulation.memory_system.MemorySystem`), with
    the deployment's default reading window and ``serve``'s default gate closure.

:class:`RemoteSystem` (``--api-url URL --rpc-url URL``)
    Drives a ``wattledger serve`` that is already running (with its settlement service).
    The server's clock is the wall clock, so gates are closed early with the operator-signed
    ``POST /intervals/{t}/close``; that needs the operator's key, known for a local anvil
    (its first development account, the deployer). Chain time is moved with anvil's
    ``evm_increaseTime``; the server's settlement service, which goes by chain time,
    then submits readings and settles on its own loop, and the driver waits for it.
    Limits: the server accepts orders at most ``maxAheadIntervals`` ahead of *its* clock,
    so a run has at most that many intervals minus two; interval length, mechanism and
    terms are the server's, and the scenario must agree with them.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from audit.chain_source import creation_source
from chain.connection import Chain, connect
from chain.deployment import Deployment
from deploy.assembly import (
    default_gate_closure_seconds,
    deploy_market,
    market_app,
    market_service,
    settlement_service,
)
from deploy.deployment import DEFAULT_MARKET_TERMS
from ledger.eip712 import Domain
from ledger.errors import InputError
from market.client import OrderSigner
from market.clock import SimulatedClock
from market.service import MarketConfig, MarketService
from settlement.tx import TxPolicy
from simulation.chain_clients import (
    SimulationChainReader,
    SimulationLedger,
    SimulationLedgerClient,
    fixed_gas_limit,
)
from simulation.errors import SimulationError
from simulation.market_api import MarketApi
from simulation.memory_system import MemorySystem
from simulation.scenario import Scenario
from simulation.settlement_feed import SettlementFeed, SettlementProgress
from simulation.stopwatch import Stopwatch, instrument_chain
from simulation.system import MarketTiming, Participant, System


def memory_system(scenario: Scenario) -> MemorySystem:
    """``--ledger memory``: the market in memory with the terms and gate closure a deployment
    and ``wattledger serve`` use by default."""
    sim, market = scenario.simulation, scenario.market
    return MemorySystem(
        interval_seconds=sim.interval_seconds,
        mechanism=sim.mechanism,
        k=sim.k,
        penalty_price_per_wh=market.penalty_price_per_wh,
        tolerance_bps=market.tolerance_bps,
        gate_closure_seconds=default_gate_closure_seconds(sim.interval_seconds),
        reading_window_seconds=DEFAULT_MARKET_TERMS[2],
        grid=scenario.grid,
        seed=sim.seed,
    )


def _known_account(chain: Chain, address: str, role: str) -> LocalAccount:
    for signer in chain.signers:
        if signer.address.lower() == address.lower():
            return signer
    raise SimulationError(
        f"the key of the market's {role} {address} is not known on this chain",
        hint="A simulation registers participants and mints their collateral as the "
        "deployer; use the embedded chain or a local anvil, or set WATTLEDGER_PRIVATE_KEY "
        "to the deployer's key.",
    )


def _chain_label(chain: Chain) -> str:
    if chain.is_embedded:
        return "eth-tester"
    name = "anvil" if chain.chain_id == 31337 else "JSON-RPC"
    return f"{name} at {chain.rpc_url} (chain {chain.chain_id})"


def _scratch_root() -> str | None:
    """Where a run's stores go: memory (``/dev/shm``) when the machine has it.

    The order store and the reading store sync every commit to disk (``synchronous=FULL``),
    about 10 ms per order on a disk; a simulation's stores are scratch (the embedded chain
    they describe is gone after the run), so memory keeps the run from waiting on a disk.
    """
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class EmbeddedSystem(System):
    """Fresh contracts on eth-tester (or ``rpc_url``) and the system assembled in-process.

    ``workdir`` holds the order store and the settlement store (a temporary folder, in
    memory where possible and removed by :meth:`close`, when not given).
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        rpc_url: str | None = None,
        chain: Chain | None = None,
        workdir: Path | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        say = progress or (lambda _msg: None)
        self.stopwatch = Stopwatch()
        self.chain = chain or connect(rpc_url)
        instrument_chain(self.chain, self.stopwatch)
        self.label = _chain_label(self.chain)
        sim, market = scenario.simulation, scenario.market
        say("deploying the contracts")
        reading_window = DEFAULT_MARKET_TERMS[2]
        self.deployment: Deployment = deploy_market(
            self.chain,
            interval_seconds=sim.interval_seconds,
            terms=(market.penalty_price_per_wh, market.tolerance_bps, reading_window),
        )
        ledger = SimulationLedgerClient(
            self.chain,
            self.deployment.address("EnergyMarket"),
            self.stopwatch,
            sender=self.deployment.deployer,
            gas_limit=fixed_gas_limit(self.chain),
        )
        self.ledger = ledger
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="wattledger-sim-", dir=_scratch_root())
            workdir = Path(self._tmp.name)
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        interval_seconds = ledger.interval_seconds()
        self.clock = SimulatedClock(self.chain.timestamp())
        config = MarketConfig(
            gate_closure_seconds=default_gate_closure_seconds(interval_seconds),
            mechanism=sim.mechanism,
            k=sim.k,
        )
        parts = market_service(
            ledger, workdir / "market.db", self.clock, config, ledger=SimulationLedger(ledger)
        )
        self.service: MarketService = parts.service
        self.timing = MarketTiming(
            ledger.epoch(),
            interval_seconds,
            config.gate_closure_seconds,
            ledger.terms().reading_window_seconds,
        )
        self.domain = parts.service.domain
        deployed_at = self.deployment.contracts["EnergyMarket"].block_number
        self.deployed_block = deployed_at
        self.creation = creation_source(self.deployment)
        settler = self.chain.signers[-1]
        if settler.address.lower() == self.deployment.deployer.lower():
            raise SimulationError("the chain has a single known account; settlement needs two")
        reader = SimulationChainReader(ledger, self.stopwatch, start_block=deployed_at)
        self.settlement = settlement_service(
            ledger, workdir / "settlement.db", settler, reader=reader
        )
        if self.chain.is_embedded:
            # No dry run before each transaction: on py-evm it costs as much as the
            # transaction, gas is free here, and a revert raises the same error from the
            # receipt (see TxPolicy.preflight).
            self.settlement.sender.policy = TxPolicy(preflight=False)
        self.feed = SettlementFeed(ledger, deployed_at, reader=reader)
        from settlement.api import settlement_router

        # The driver sends one request at a time from this process: orders are stored on
        # the event loop, without a worker thread's handover per order.
        app = market_app(
            parts.service,
            extra_routers=[settlement_router(self.settlement)],
            inline_commits=True,
        )
        self.api = MarketApi(app=app)

    def onboard(self, participants: Sequence[Participant]) -> int:
        sent = super().onboard(participants)
        # Nothing was committed yet: the settlement service's scan for commits may start
        # here instead of reading the set-up blocks (its own cursor, as after a restart).
        latest = int(self.chain.w3.eth.block_number)
        self.settlement.store.set_meta("scan_block", str(latest))
        self.feed.next_block = latest + 1
        # Every set-up block moved chain time on by at least a second; a large scenario (a
        # thousand agents, five transactions each) leaves the chain far ahead of the market's
        # clock, whose first interval would then have ended on-chain before its commit.
        self.clock.set(max(self.clock.now(), self.chain.timestamp()))
        return sent

    def now(self) -> int:
        return self.clock.now()

    def advance_to(self, unix_seconds: int) -> None:
        if unix_seconds > self.clock.now():
            self.clock.set(unix_seconds)
        behind = unix_seconds - self.chain.timestamp()
        if behind > 0:
            with self.stopwatch.chain_call():
                self.chain.advance_time(behind)

    def close_gate(self, interval: int) -> None:
        if self.clock.now() < self.timing.gate_closure(interval):
            raise SimulationError(f"interval {interval}: its gate closure time has not come")
        self.service.tick()
        state = self.service.interval(interval).state
        if state not in ("committed", "open"):
            raise SimulationError(
                f"interval {interval}: the market left it {state} after gate closure "
                "(its on-chain commit failed; see the log)"
            )

    def settle(self, due: Sequence[int]) -> SettlementProgress:
        self.settlement.tick()
        return self.feed.poll()

    def _deployer_account(self) -> LocalAccount:
        return _known_account(self.chain, self.deployment.deployer, "deployer")

    def close(self) -> None:
        self.api.close()
        self.service.store.close()
        self.settlement.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()


class RemoteSystem(System):
    """An already running ``wattledger serve`` at ``api_url`` on the chain at ``rpc_url``.

    ``settle_timeout_seconds``: how long to wait for the server's settlement service to
    settle an interval whose deadline has passed.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        api_url: str,
        rpc_url: str,
        settle_timeout_seconds: float = 120.0,
    ) -> None:
        self.stopwatch = Stopwatch()
        self.api = MarketApi(base_url=api_url)
        market = self.api.get("/market")
        self.chain = connect(rpc_url)
        instrument_chain(self.chain, self.stopwatch)
        if int(market["chainId"]) != self.chain.chain_id:
            raise InputError(
                f"the market at {api_url} runs on chain {market['chainId']}, but {rpc_url} "
                f"is chain {self.chain.chain_id}",
                hint="Pass the --rpc-url the server was started with.",
            )
        self.operator = _known_account(self.chain, market["operator"], "operator")
        self.ledger = SimulationLedgerClient(
            self.chain,
            market["contracts"]["EnergyMarket"],
            self.stopwatch,
            sender=self.operator.address,
        )
        _check_remote(scenario, market, api_url)
        self.label = f"{_chain_label(self.chain)}, market API {api_url}"
        terms = market["terms"]
        self.timing = MarketTiming(
            int(market["epoch"]),
            int(market["intervalSeconds"]),
            int(market["gateClosureSeconds"]),
            int(terms["readingWindowSeconds"]),
        )
        d = market["eip712"]["domain"]
        self.domain = Domain(int(d["chainId"]), d["verifyingContract"], d["name"], d["version"])
        self._operator_signer = OrderSigner(self.operator, self.domain)
        first = int(self.chain.w3.eth.block_number) + 1
        self.feed = SettlementFeed(
            self.ledger,
            first,
            reader=SimulationChainReader(self.ledger, self.stopwatch, start_block=first),
        )
        self.settle_timeout_seconds = settle_timeout_seconds
        self._awaiting: dict[int, set[str]] = {}
        self._now = max(self.chain.timestamp(), int(market["now"]))

    def now(self) -> int:
        return self._now

    def submit_readings(self, interval: int, bodies: Sequence[dict[str, Any]]) -> int:
        refused = super().submit_readings(interval, bodies)
        if bodies:
            awaiting = self._awaiting.setdefault(interval, set())
            awaiting.update(str(b["reading"]["participant"]) for b in bodies)
        return refused

    def _await_readings(self, before: int) -> None:
        """Wait until the server has handled the readings of every interval whose deadline
        is at or before ``before``: put on-chain (a seller's) or kept off-chain (a
        participant that sold nothing), as ``GET /intervals/{t}/readings`` says. Its
        settlement service does that on its own loop, and moving chain time past the
        deadline first would make a seller's reading miss it."""
        for interval in sorted(self._awaiting):
            if self.timing.deadline(interval) > before:
                continue
            waiting = self._awaiting.pop(interval)
            limit = time.monotonic() + self.settle_timeout_seconds
            while waiting:
                published = self.api.get(f"/intervals/{interval}/readings")["readings"]
                queued = {
                    str(r["participant"]).lower() for r in published if r["status"] == "queued"
                }
                waiting = {p for p in waiting if p.lower() in queued}
                if not waiting:
                    break
                if time.monotonic() > limit:
                    raise SimulationError(
                        f"the server did not handle {len(waiting)} readings of interval "
                        f"{interval} (put them on-chain or keep them off-chain) within "
                        f"{self.settle_timeout_seconds:.0f} s",
                        hint="Is `wattledger serve` running its settlement service (--settle)?",
                    )
                time.sleep(0.2)

    def advance_to(self, unix_seconds: int) -> None:
        self._await_readings(unix_seconds)
        self._now = max(self._now, unix_seconds)
        behind = unix_seconds - self.chain.timestamp()
        if behind > 0:
            with self.stopwatch.chain_call():
                self.chain.advance_time(behind)

    def close_gate(self, interval: int) -> None:
        body = self._operator_signer.close_gate(interval, expiry=self._now + 3600)
        self.api.post(f"/intervals/{interval}/close", body)

    def settle(self, due: Sequence[int]) -> SettlementProgress:
        """Wait until the server's settlement service has settled every ``due`` interval."""
        progress = self.feed.poll()
        waiting = set(due) - set(progress.settled)
        deadline = time.monotonic() + self.settle_timeout_seconds
        while waiting:
            if time.monotonic() > deadline:
                raise SimulationError(
                    f"the server did not settle intervals {sorted(waiting)} within "
                    f"{self.settle_timeout_seconds:.0f} s of their reading deadline",
                    hint="Is `wattledger serve` running its settlement service (--settle)?",
                )
            time.sleep(0.25)
            more = self.feed.poll()
            progress.outcomes += more.outcomes
            progress.settled += more.settled
            waiting -= set(more.settled)
        return progress

    def _deployer_account(self) -> LocalAccount:
        return self.operator

    def close(self) -> None:
        self.api.close()


def _check_remote(scenario: Scenario, market: dict[str, Any], api_url: str) -> None:
    """Refuse a remote market whose settings differ from the scenario's."""
    sim = scenario.simulation
    problems = []
    if int(market["intervalSeconds"]) != sim.interval_seconds:
        problems.append(
            f"interval length {market['intervalSeconds']} s, scenario "
            f"simulation.interval_seconds = {sim.interval_seconds}"
        )
    mechanism = market["mechanism"]
    if mechanism["name"] != sim.mechanism or tuple(mechanism["k"]) != tuple(sim.k):
        problems.append(
            f"mechanism {mechanism['name']} k={mechanism['k']}, scenario {sim.mechanism} "
            f"k={list(sim.k)}"
        )
    terms = market["terms"]
    if (
        int(terms["penaltyPricePerWh"]) != scenario.market.penalty_price_per_wh
        or int(terms["toleranceBps"]) != scenario.market.tolerance_bps
    ):
        problems.append(
            f"penalty {terms['penaltyPricePerWh']} base units/Wh and tolerance "
            f"{terms['toleranceBps']} bps, scenario {scenario.market.penalty_price_per_wh} "
            f"and {scenario.market.tolerance_bps}"
        )
    ahead = int(market["maxAheadIntervals"]) - 2
    if sim.intervals > ahead:
        problems.append(
            f"{sim.intervals} intervals, but the server accepts orders only "
            f"{market['maxAheadIntervals']} intervals ahead of its clock (at most {ahead} "
            "intervals per run)"
        )
    if problems:
        raise SimulationError(
            f"the market at {api_url} does not match the scenario: " + "; ".join(problems),
            hint="Start `wattledger serve` with matching settings, or adjust the scenario "
            "(or --intervals).",
        )


__all__ = [
    "EmbeddedSystem",
    "RemoteSystem",
    "memory_system",
]
