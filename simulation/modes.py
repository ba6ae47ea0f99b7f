"""Where a simulation runs: the whole system in-process, or an already running market.

A driver (:mod:`simulation.driver`) talks to a :class:`System`: HTTP into the market API
through :attr:`System.api`, the chain through :attr:`System.ledger` (a
:class:`~deploy.ledger.LedgerClient` whose sender is the deployer, which registers
participants and mints their collateral), and four controls: :meth:`System.advance_to`
(time), :meth:`System.close_gate`, :meth:`System.submit_reading` and :meth:`System.settle`.

:class:`EmbeddedSystem` (``wattledger simulate``, with or without ``--rpc-url``)
    Deploys fresh contracts on the embedded eth-tester chain, or on the chain at
    ``--rpc-url``, and assembles what ``wattledger serve`` runs (:mod:`deploy.assembly`):
    the SQLite order store and :class:`~market.service.MarketService` over the real
    contract, the settlement service (:class:`~settlement.service.SettlementService`) with
    its reading store and transaction journal, and the FastAPI app with the settlement
    router, reached through an ASGI transport (no socket). The market's clock is a
    :class:`~market.clock.SimulatedClock` that moves with chain time: :meth:`advance_to`
    moves both, so gate closure, ``commitInterval`` (only before the interval's end), the
    reading window (from the interval's end to its deadline) and settlement happen in the
    order the contract demands, a day in minutes. Gate closure is the market service's own
    ``tick()`` and settlement the settlement service's own ``tick()``, which is what the
    background loops of ``serve`` call.

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

Outcomes of settlement are read from the contract's ``TradeSettled`` and ``IntervalSettled``
events (:class:`SettlementFeed`), the same in both modes.

Time is measured per stage with a :class:`Stopwatch`. Every request to the chain, from the
market service, the settlement service or the driver, is timed as ``chain`` wherever it
happens (:func:`instrument_chain`), so the other stages (API, clearing, settlement) show
only their own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from eth_utils.abi import get_abi_output_types
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3.contract.contract import ContractFunction
from web3.middleware import Web3Middleware
from web3.types import RPCEndpoint, RPCResponse, TxReceipt

from deploy.assembly import (
    default_gate_closure_seconds,
    deploy_market,
    market_app,
    market_service,
    settlement_service,
)
from deploy.chain import Chain, connect
from deploy.deployment import Deployment
from deploy.ledger import LedgerClient, mapped_reverts
from deploy.ledger_errors import LedgerRevert
from deploy.market_ledger import ChainLedger
from market.client import MarketApiError, OrderSigner
from market.clock import SimulatedClock
from market.errors import InputError, WattledgerError
from market.service import MarketConfig, MarketService
from market.signing import Domain, keccak, sign_digest
from settlement.chain_reader import ChainReader
from settlement.model import Reading, Terms
from settlement.readings import READING_TYPEHASH
from settlement.report import ReadingEvent
from simulation.scenario import Scenario

T = TypeVar("T")


class SimulationError(WattledgerError):
    """Raised when a simulation cannot go on: the market refused a step it must take (a
    gate that would not close, a commit or settlement that did not happen), or a remote
    market's settings differ from the scenario's."""

    code = "simulation_failed"


# --------------------------------------------------------------------------- timing


class Stopwatch:
    """Wall time per stage, with chain requests counted as ``chain`` wherever they happen.

    :meth:`stage` times a block of the driver; :meth:`chain_call` times a request to the
    chain from any thread (nested ones count once). Chain time that accrued during a stage
    is moved from that stage to ``chain``.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._chain = 0.0
        self._lock = threading.Lock()
        self._local = threading.local()

    @contextlib.contextmanager
    def chain_call(self) -> Iterator[None]:
        """Time a request to the chain (only the outermost of nested ones counts)."""
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        start = time.perf_counter()
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                elapsed = time.perf_counter() - start
                with self._lock:
                    self._chain += elapsed

    @contextlib.contextmanager
    def stage(self, name: str, *, split_chain: bool = True) -> Iterator[None]:
        """Time the block as ``name``, minus the chain time spent inside it (which counts
        as ``chain``), unless ``split_chain`` is False (set-up counts as a whole)."""
        with self._lock:
            chain_before = self._chain
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                in_chain = self._chain - chain_before
            if not split_chain:
                in_chain = 0.0
            self.seconds[name] += elapsed - in_chain
            self.seconds["chain"] += in_chain


def instrument_chain(chain: Chain, stopwatch: Stopwatch) -> None:
    """Time every request to ``chain`` as ``chain`` on ``stopwatch``.

    A web3 middleware in the outermost layer times requests with their formatting, and the
    provider's ``make_request`` is wrapped for the raw requests the settlement service's
    chain reader sends past the middleware.
    """

    class _Timed(Web3Middleware):
        def wrap_make_request(self, make_request: Any) -> Any:
            def middleware(method: RPCEndpoint, params: Any) -> RPCResponse:
                with stopwatch.chain_call():
                    response: RPCResponse = make_request(method, params)
                    return response

            return middleware

    chain.w3.middleware_onion.inject(_Timed, name="wattledger_sim_timing", layer=0)
    provider: Any = chain.w3.provider
    raw = provider.make_request

    def timed(method: RPCEndpoint, params: Any) -> RPCResponse:
        with stopwatch.chain_call():
            response: RPCResponse = raw(method, params)
            return response

    provider.make_request = timed


class SimulationLedgerClient(LedgerClient):
    """The :class:`LedgerClient` of a simulation: cheaper on the embedded chain.

    ``gas_limit``: when set, transactions carry this gas limit instead of an estimate. On
    eth-tester an estimate is a binary search that runs the transaction a dozen times in
    py-evm, ten times the cost of running it once; a fixed limit below the block's is safe
    there (the receipt still shows the gas used). View calls on eth-tester go straight to
    its py-evm backend: the same execution on the same state, without the request
    formatting of web3 and eth-tester, which costs three times the EVM's own work.
    """

    def __init__(
        self,
        chain: Chain,
        address: str,
        stopwatch: Stopwatch,
        sender: str | None = None,
        gas_limit: int | None = None,
    ) -> None:
        super().__init__(chain, address, sender=sender)
        self.stopwatch = stopwatch
        self.gas_limit = gas_limit
        self._sender_bytes = bytes.fromhex(self.sender[2:])
        tester = getattr(chain.w3.provider, "ethereum_tester", None)
        self._backend: Any = getattr(tester, "backend", None) if chain.is_embedded else None

    def _call(self, fn: ContractFunction) -> Any:
        if self._backend is None:
            # An explicit sender spares the provider a lookup of the node's accounts.
            with mapped_reverts():
                return fn.call({"from": self.sender})
        with self.stopwatch.chain_call(), mapped_reverts():
            return self._backend_call(fn)

    def _backend_call(self, fn: ContractFunction) -> Any:
        """``fn.call()`` on eth-tester's py-evm backend, decoded as web3 decodes it.

        Reverts raise eth-tester's ``TransactionFailed`` as they do through web3, so
        :func:`mapped_reverts` maps them the same way.
        """
        output_types = get_abi_output_types(fn.abi)
        raw = self._backend.call(
            {
                "from": self._sender_bytes,
                "to": bytes.fromhex(str(fn.address)[2:]),
                "data": bytes.fromhex(fn._encode_transaction_data()[2:]),
                "value": 0,
                "gas": 30_000_000,
            },
            "latest",
        )
        values = [
            to_checksum_address(v) if kind == "address" else v
            for kind, v in zip(output_types, abi_decode(output_types, raw), strict=True)
        ]
        return values[0] if len(values) == 1 else values

    def transact(self, fn: ContractFunction, sender: str | None = None) -> TxReceipt:
        """:meth:`LedgerClient.transact`, with the fixed gas limit when one is set."""
        if self.gas_limit is None:
            return super().transact(fn, sender)
        tx: dict[str, Any] = {
            "from": to_checksum_address(sender or self.sender),
            "gas": self.gas_limit,
        }
        with mapped_reverts():
            tx_hash = fn.transact(tx)  # type: ignore[arg-type]
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            with mapped_reverts():
                fn.call(tx, block_identifier=receipt["blockNumber"] - 1)  # type: ignore[arg-type]
            raise LedgerRevert(f"transaction {tx_hash.hex()} reverted")
        return receipt


class SimulationLedger(ChainLedger):
    """The market service's ledger port in a simulation: registrations answered from memory.

    At every gate closure the market service re-reads each party's registration (a
    deregistered party would make the commit revert) and free balance (a participant may
    have withdrawn). On a simulation's own fresh deployment the driver is the only
    registrar and deregisters nobody, so a registration, once read from the chain, stays
    true for the run; caching it halves those reads. Balances are always read from the
    chain.
    """

    def __init__(self, client: LedgerClient) -> None:
        super().__init__(client)
        self._registered: set[str] = set()

    def is_registered(self, participant: str) -> bool:
        key = participant.lower()
        if key in self._registered:
            return True
        registered = super().is_registered(participant)
        if registered:
            self._registered.add(key)
        return registered


def _fixed_gas_limit(chain: Chain) -> int | None:
    """Nine tenths of the embedded chain's block gas limit; ``None`` (estimate) on a
    JSON-RPC node, where estimates are cheap and a block-sized limit may not be accepted."""
    if not chain.is_embedded:
        return None
    return int(chain.w3.eth.get_block("latest")["gasLimit"]) * 9 // 10


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


# --------------------------------------------------------------------------- transactions


@dataclass
class TxBatch:
    """Transactions signed locally with explicit nonces and gas limits, sent raw.

    Set-up sends a few transactions per participant. Signing locally with explicit nonces
    and gas limits spares a gas estimate per transaction (on eth-tester a binary search
    that runs the transaction a dozen times); on a JSON-RPC node the transactions travel
    back to back and their receipts are awaited together. (Packing many transactions into
    one eth-tester block was tried and is slower: py-evm recomputes the block's trie roots
    per transaction, and eth-tester looks receipts up by decoding every receipt of the
    block.)
    """

    chain: Chain
    gas_limit: int = 250_000
    sent: int = 0
    _nonces: dict[str, int] = field(default_factory=dict)
    _hashes: list[tuple[str, bytes]] = field(default_factory=list)
    _fees: tuple[int, int] | None = None

    def _fee(self) -> tuple[int, int]:
        if self._fees is None:
            block = self.chain.w3.eth.get_block("latest")
            base = int(block.get("baseFeePerGas", 0) or 0)
            tip = 10**9
            self._fees = (2 * base + tip, tip)
        return self._fees

    def send(
        self,
        account: LocalAccount,
        *,
        to: str,
        data: str = "0x",
        value: int = 0,
        gas: int | None = None,
        what: str = "",
    ) -> None:
        """Sign and send one transaction from ``account``."""
        address = account.address
        if address not in self._nonces:
            self._nonces[address] = self.chain.w3.eth.get_transaction_count(address, "pending")
        max_fee, tip = self._fee()
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain.chain_id,
            "nonce": self._nonces[address],
            "to": to_checksum_address(to),
            "value": value,
            "data": data,
            "gas": gas or self.gas_limit,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
        }
        signed = account.sign_transaction(tx)
        tx_hash = self.chain.w3.eth.send_raw_transaction(signed.raw_transaction)
        self._nonces[address] += 1
        self.sent += 1
        self._hashes.append((what or f"transaction from {address}", bytes(tx_hash)))
        if self.chain.is_embedded:
            # Mined already; eth-tester finds a receipt by scanning back from the newest
            # block, so it is cheapest to check it now.
            self.wait()

    def call(self, account: LocalAccount, fn: ContractFunction, what: str = "") -> None:
        """Send the contract call ``fn`` from ``account``."""
        data = fn._encode_transaction_data()
        self.send(account, to=str(fn.address), data=data, what=what or fn.fn_name)

    def wait(self) -> int:
        """Check every receipt not yet checked (waiting for it); raise if a transaction
        failed. Returns the number of transactions sent in all."""
        for what, tx_hash in self._hashes:
            receipt = self.chain.w3.eth.wait_for_transaction_receipt(HexBytes(tx_hash), timeout=120)
            if receipt["status"] != 1:
                raise SimulationError(f"set-up transaction failed: {what} (0x{tx_hash.hex()})")
        self._hashes.clear()
        return self.sent


# --------------------------------------------------------------------------- readings


def reading_digest(domain_separator: bytes, reading: Reading) -> bytes:
    """The EIP-712 digest of a ``MeterReading`` (what the contract's ``readingDigest`` gives)."""
    struct = keccak(
        READING_TYPEHASH
        + bytes(12)
        + bytes.fromhex(reading.participant[2:])
        + reading.interval.to_bytes(32, "big")
        + reading.imported_wh.to_bytes(32, "big")
        + reading.exported_wh.to_bytes(32, "big")
    )
    return keccak(b"\x19\x01" + domain_separator + struct)


def signed_reading_body(
    meter_private_key: bytes, domain_separator: bytes, reading: Reading
) -> dict[str, Any]:
    """The ``POST /meter-readings`` body: ``reading`` signed by the meter key."""
    signature = sign_digest(meter_private_key, reading_digest(domain_separator, reading))
    return {
        "reading": {
            "participant": to_checksum_address(reading.participant),
            "interval": reading.interval,
            "importedWh": reading.imported_wh,
            "exportedWh": reading.exported_wh,
        },
        "signature": signature,
    }


class MarketApi:
    """The market API as the driver uses it: one async HTTP client, used in order.

    ``app``: an ASGI app in this process (reached through httpx's ASGI transport, no
    socket); ``base_url``: a market over HTTP. Orders go one request at a time, in the
    order given, so their arrival sequence (which breaks price ties in clearing) and hence
    the whole run are the same every time; readings, whose order does not matter, go
    concurrently to a remote market. A refused request raises
    :class:`~market.client.MarketApiError`.
    """

    def __init__(self, *, app: Any = None, base_url: str | None = None) -> None:
        transport = httpx.ASGITransport(app=app) if app is not None else None
        self._in_process = app is not None
        self._loop = asyncio.new_event_loop()
        self._http = httpx.AsyncClient(
            transport=transport, base_url=base_url or "http://market.local", timeout=120.0
        )

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(work)

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        response = await self._http.request(method, path, json=body)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"code": "http_error", "detail": response.text[:500]}
            raise MarketApiError(response.status_code, problem)
        return response.json()

    def get(self, path: str) -> Any:
        """``GET path``."""
        return self._run(self._request("GET", path))

    def post(self, path: str, body: Any) -> Any:
        """``POST path`` with a JSON body."""
        return self._run(self._request("POST", path, body))

    def submit_orders(
        self, submissions: Sequence[tuple[bool, Sequence[dict[str, Any]]]]
    ) -> list[list[dict[str, Any] | None]]:
        """Submit signed orders in the order given: each entry is ``(batch, bodies)``, one
        ``POST /orders:batch`` when ``batch`` (all or none), else one ``POST /orders`` per
        body. Returns the stored orders, ``None`` for each refused one."""

        async def one(body: dict[str, Any]) -> dict[str, Any] | None:
            try:
                result: dict[str, Any] = await self._request("POST", "/orders", body)
            except MarketApiError:
                return None
            return result

        async def all_of() -> list[list[dict[str, Any] | None]]:
            out: list[list[dict[str, Any] | None]] = []
            for batch, bodies in submissions:
                if batch:
                    try:
                        result = await self._request("POST", "/orders:batch", {"orders": bodies})
                        out.append(list(result["orders"]))
                    except MarketApiError:
                        out.append([None] * len(bodies))
                else:
                    out.append([await one(b) for b in bodies])
            return out

        return self._run(all_of())

    def post_readings(self, bodies: Sequence[dict[str, Any]]) -> int:
        """``POST /meter-readings`` for each signed body; return how many the settlement
        service refused. Concurrently over HTTP; one after the other in-process, where the
        work is chain reads that the embedded chain serves one at a time anyway."""

        async def one(body: dict[str, Any]) -> bool:
            try:
                await self._request("POST", "/meter-readings", body)
            except MarketApiError:
                return False
            return True

        async def all_of() -> list[bool]:
            if self._in_process:
                return [await one(b) for b in bodies]
            return list(await asyncio.gather(*(one(b) for b in bodies)))

        return sum(1 for ok in self._run(all_of()) if not ok)

    def close(self) -> None:
        """Close the HTTP client and its event loop."""
        self._run(self._http.aclose())
        self._loop.close()


# --------------------------------------------------------------------------- settlement


class SimulationChainReader(ChainReader):
    """The settlement service's chain reader, timed, and quicker on the embedded chain.

    * Every request counts as ``chain`` on the stopwatch (on a JSON-RPC node the reader
      talks over its own HTTP session, past web3's provider).
    * View calls on eth-tester go straight to its py-evm backend, as
      :class:`SimulationLedgerClient`'s do.
    * An interval's ``ReadingSubmitted`` events are looked for from the block that
      committed it: a reading of ``t`` cannot precede ``t``'s commit (``submitReadings``
      reverts ``IntervalNotCommitted``), so the scan finds the same events as one from the
      deployment. It matters on eth-tester, whose log filter looks each transaction of the
      range up by scanning back from the newest block, which made a scan from the
      deployment grow with the run. ``commit_block(t)`` says where ``t`` was committed
      (None when unknown: the scan starts at the deployment).
    """

    def __init__(
        self,
        client: LedgerClient,
        stopwatch: Stopwatch,
        commit_block: Callable[[int], int | None],
        *,
        start_block: int = 0,
    ) -> None:
        super().__init__(client, start_block=start_block)
        self.stopwatch = stopwatch
        self._commit_block = commit_block
        tester = getattr(client.w3.provider, "ethereum_tester", None)
        self._backend: Any = getattr(tester, "backend", None) if client.chain.is_embedded else None
        self._caller_bytes = bytes.fromhex(self._caller[2:])

    def rpc(self, method: str, params: Sequence[Any]) -> Any:
        with self.stopwatch.chain_call():
            return super().rpc(method, params)

    def _view(self, to: str, data: bytes, types: Sequence[str]) -> tuple[Any, ...]:
        if self._backend is None:
            return super()._view(to, data, types)
        with self.stopwatch.chain_call():
            try:
                raw = self._backend.call(
                    {
                        "from": self._caller_bytes,
                        "to": bytes.fromhex(to[2:]),
                        "data": data,
                        "value": 0,
                        "gas": 30_000_000,
                    },
                    "latest",
                )
            except TransactionFailed as err:
                raise RuntimeError(f"eth_call failed: {err}") from None
        return tuple(abi_decode(list(types), raw))

    def reading_events(
        self, t: int, from_block: int | None = None, to_block: int | str = "latest"
    ) -> list[ReadingEvent]:
        if from_block is None or from_block <= self.start_block:
            from_block = self._commit_block(t) or from_block
        return super().reading_events(t, from_block, to_block)


@dataclass(frozen=True)
class TradeOutcome:
    """One ``TradeSettled`` event: trade ``index`` of interval ``interval`` (commit order)."""

    interval: int
    index: int
    delivered_wh: int
    payment_base_units: int
    refund_base_units: int
    penalty_base_units: int


@dataclass
class SettlementProgress:
    """What settlement achieved since the last look: intervals that reached ``Settled``
    and the outcomes of the trades settled on the way."""

    settled: list[int] = field(default_factory=list)
    outcomes: list[TradeOutcome] = field(default_factory=list)


class SettlementFeed:
    """New ``TradeSettled`` and ``IntervalSettled`` events since the last look.

    Each look scans only the blocks mined since the previous one, so it stays cheap however
    long the run (a scan from the deployment every time would grow with the chain).
    """

    def __init__(self, ledger: LedgerClient, from_block: int) -> None:
        self.ledger = ledger
        self.next_block = from_block

    def poll(self) -> SettlementProgress:
        """The events in the blocks since the last poll."""
        latest = int(self.ledger.w3.eth.block_number)
        progress = SettlementProgress()
        if latest < self.next_block:
            return progress
        events = self.ledger.contract.events
        span = {"from_block": self.next_block, "to_block": latest}
        for entry in events.TradeSettled().get_logs(**span):
            args = entry["args"]
            progress.outcomes.append(
                TradeOutcome(
                    int(args["interval"]),
                    int(args["tradeIndex"]),
                    int(args["deliveredWh"]),
                    int(args["paymentBaseUnits"]),
                    int(args["refundBaseUnits"]),
                    int(args["penaltyBaseUnits"]),
                )
            )
        for entry in events.IntervalSettled().get_logs(**span):
            progress.settled.append(int(entry["args"]["interval"]))
        self.next_block = latest + 1
        return progress


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

    @abstractmethod
    def now(self) -> int:
        """The market's time (Unix seconds) as the driver sees it."""

    @abstractmethod
    def advance_to(self, unix_seconds: int) -> None:
        """Move the market's clock and chain time forward to ``unix_seconds`` (never back)."""

    @abstractmethod
    def close_gate(self, interval: int) -> None:
        """Close ``interval``'s gate (its time has come): freeze, clear and commit it."""

    def submit_readings(self, interval: int, bodies: Sequence[dict[str, Any]]) -> int:
        """Post ``interval``'s signed readings; return how many were refused."""
        return self.api.post_readings(bodies)

    @abstractmethod
    def settle(self, due: Sequence[int]) -> SettlementProgress:
        """Let settlement catch up with the current time; ``due`` are the committed
        intervals whose reading deadline has passed and that have not settled yet."""

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
        self.deployment: Deployment = deploy_market(
            self.chain, interval_seconds=sim.interval_seconds
        )
        ledger = SimulationLedgerClient(
            self.chain,
            self.deployment.address("EnergyMarket"),
            self.stopwatch,
            sender=self.deployment.deployer,
            gas_limit=_fixed_gas_limit(self.chain),
        )
        self.ledger = ledger
        current = ledger.terms()
        wanted = Terms(
            market.penalty_price_per_wh, market.tolerance_bps, current.reading_window_seconds
        )
        if wanted != current:
            ledger.set_terms(wanted)
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
            wanted.reading_window_seconds,
        )
        self.domain = parts.service.domain
        deployed_at = self.deployment.contracts["EnergyMarket"].block_number
        settler = self.chain.signers[-1]
        if settler.address.lower() == self.deployment.deployer.lower():
            raise SimulationError("the chain has a single known account; settlement needs two")
        reader = SimulationChainReader(
            ledger, self.stopwatch, self._commit_block, start_block=deployed_at
        )
        self.settlement = settlement_service(
            ledger, workdir / "settlement.db", settler, reader=reader
        )
        self.feed = SettlementFeed(ledger, deployed_at)
        from settlement.api import settlement_router

        app = market_app(parts.service, extra_routers=[settlement_router(self.settlement)])
        self.api = MarketApi(app=app)

    def _commit_block(self, interval: int) -> int | None:
        record = self.service.store.get_interval(interval)
        return None if record is None else record.commit_block

    def onboard(self, participants: Sequence[Participant]) -> int:
        sent = super().onboard(participants)
        # Nothing was committed yet: the settlement service's scan for commits may start
        # here instead of reading the set-up blocks (its own cursor, as after a restart).
        latest = int(self.chain.w3.eth.block_number)
        self.settlement.store.set_meta("scan_block", str(latest))
        self.feed.next_block = latest + 1
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
        self.feed = SettlementFeed(self.ledger, int(self.chain.w3.eth.block_number) + 1)
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
        """Wait until the server has put the readings of every interval whose deadline is
        at or before ``before`` on-chain: its settlement service submits them on its own
        loop, and moving chain time past the deadline first would make them miss it."""
        for interval in sorted(self._awaiting):
            if self.timing.deadline(interval) > before:
                continue
            waiting = self._awaiting.pop(interval)
            limit = time.monotonic() + self.settle_timeout_seconds
            while waiting:
                waiting = {p for p in waiting if not self.ledger.reading_of(interval, p)[0]}
                if not waiting:
                    break
                if time.monotonic() > limit:
                    raise SimulationError(
                        f"the server did not put {len(waiting)} readings of interval "
                        f"{interval} on-chain within {self.settle_timeout_seconds:.0f} s",
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


def local_account(private_key: bytes) -> LocalAccount:
    """A signing account for a 32-byte private key."""
    account: LocalAccount = Account.from_key(private_key)
    return account


__all__ = [
    "ETH_FOR_GAS_WEI",
    "EmbeddedSystem",
    "MarketApi",
    "MarketTiming",
    "Participant",
    "RemoteSystem",
    "SettlementFeed",
    "SettlementProgress",
    "SimulationChainReader",
    "SimulationError",
    "SimulationLedger",
    "SimulationLedgerClient",
    "Stopwatch",
    "System",
    "TradeOutcome",
    "TxBatch",
    "instrument_chain",
    "local_account",
    "reading_digest",
    "signed_reading_body",
]
