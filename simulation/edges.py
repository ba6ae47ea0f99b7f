"""The simulation's edges: the chain, HTTP and signing, each timed, each as cheap as it can be.

:mod:`simulation.system` assembles a running market from these; :mod:`simulation.driver` uses
them through a :class:`~simulation.system.System`.

* :class:`Stopwatch` and :func:`instrument_chain`: wall time per stage, with every request to
  the chain counted as ``chain`` wherever it is made (market service, settlement service,
  driver).
* :class:`SimulationLedgerClient`, :class:`SimulationLedger`, :class:`SimulationChainReader`:
  the contract client, the market service's ledger port and the settlement service's chain
  reader, with the same answers as the originals but fewer or cheaper requests on the
  embedded chain (each class says how, and why the answers are the same).
* :class:`TxBatch`: set-up transactions signed locally and sent raw.
* :class:`MarketApi`: the market API over one async HTTP client (an ASGI app in-process, or
  a URL).
* :func:`signed_reading_body`: a meter-signed ``MeterReading`` for ``POST /meter-readings``
  (:meth:`MarketApi.post_readings` sends an interval's in ``POST /meter-readings:batch``).
* :class:`SettlementFeed`: settlement outcomes from the contract's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import coincurve
import httpx
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.abi import get_abi_output_types
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3.contract.contract import ContractFunction
from web3.middleware import Web3Middleware
from web3.types import RPCEndpoint, RPCResponse

from chain.client import LedgerClient
from chain.connection import Chain
from chain.reverts import mapped_reverts
from ledger.eip712 import reading_digest, sign_digest
from ledger.errors import WattledgerError
from ledger.records import Reading
from market.chain_ledger import ChainLedger
from market.client import MarketApiError
from settlement.chain_reader import ChainReader

T = TypeVar("T")

READINGS_PER_REQUEST = 1_000
"""Most readings :meth:`MarketApi.post_readings` sends in one ``POST /meter-readings:batch``:
the settlement service's default ``max_intake_readings`` (a bigger batch is refused, and
its readings then go one by one)."""


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

    A web3 middleware in the outermost layer times requests with their formatting; the
    provider's ``make_request`` and ``make_batch_request`` are wrapped for the raw requests
    sent past the middleware, and the chain's :meth:`~chain.connection.Chain.view_calls` and
    :meth:`~chain.connection.Chain.block_number` for the reads that go straight to py-evm.
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
    if hasattr(provider, "make_batch_request"):
        raw_batch = provider.make_batch_request

        def timed_batch(requests: Any) -> Any:
            with stopwatch.chain_call():
                return raw_batch(requests)

        provider.make_batch_request = timed_batch
    # Reads that go straight to the embedded chain's py-evm, past the provider.
    for name in ("view_calls", "block_number", "block_hash", "pending", "logs", "receipt"):
        setattr(chain, name, _timed(getattr(chain, name), stopwatch))


def _timed(method: Callable[..., T], stopwatch: Stopwatch) -> Callable[..., T]:
    def timed(*args: Any, **kwargs: Any) -> T:
        with stopwatch.chain_call():
            return method(*args, **kwargs)

    return timed


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
        super().__init__(chain, address, sender=sender, gas_limit=gas_limit)
        self.stopwatch = stopwatch
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


def fixed_gas_limit(chain: Chain) -> int | None:
    """Nine tenths of the embedded chain's block gas limit; ``None`` (estimate) on a
    JSON-RPC node, where estimates are cheap and a block-sized limit may not be accepted."""
    if not chain.is_embedded:
        return None
    return int(chain.w3.eth.get_block("latest")["gasLimit"]) * 9 // 10


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
            receipt = self.chain.wait_for_receipt(HexBytes(tx_hash))
            if receipt["status"] != 1:
                raise SimulationError(f"set-up transaction failed: {what} (0x{tx_hash.hex()})")
        self._hashes.clear()
        return self.sent


# --------------------------------------------------------------------------- readings


def signed_reading_body(
    meter_private_key: bytes | coincurve.PrivateKey, domain_separator: bytes, reading: Reading
) -> dict[str, Any]:
    """The ``POST /meter-readings`` body (an item of ``POST /meter-readings:batch``):
    ``reading`` signed by the meter key."""
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


async def asgi_request(app: Any, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    """One HTTP request straight into an ASGI ``app`` in this process: (status, body).

    What httpx's ASGI transport does, less its request and response machinery, which costs
    about 0.4 ms a request, more than the market's own intake of an order.
    """
    content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    headers = [(b"host", b"market.local"), (b"content-length", str(len(content)).encode())]
    if body is not None:
        headers.append((b"content-type", b"application/json"))
    raw_path, _, query = path.encode().partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path.decode(),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 0),
        "server": ("market.local", 80),
    }
    request_sent = False
    answered = asyncio.Event()
    status = 500
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if request_sent:  # the client hangs up only once the whole answer is in
            await answered.wait()
            return {"type": "http.disconnect"}
        request_sent = True
        return {"type": "http.request", "body": content, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                answered.set()

    await app(scope, receive, send)
    return status, b"".join(chunks)


class MarketApi:
    """The market API as the driver uses it: one async HTTP client, used in order.

    ``app``: an ASGI app in this process (reached through httpx's ASGI transport, no
    socket); ``base_url``: a market over HTTP. Orders go one request at a time, in the
    order given, so their arrival sequence (which breaks price ties in clearing) and hence
    the whole run are the same every time; readings, whose order does not matter, go in
    ``POST /meter-readings:batch`` requests, concurrently to a remote market. A refused
    request raises :class:`~market.client.MarketApiError`.
    """

    def __init__(self, *, app: Any = None, base_url: str | None = None) -> None:
        self._app = app
        self._in_process = app is not None
        self._loop = asyncio.new_event_loop()
        self._http = httpx.AsyncClient(base_url=base_url or "http://market.local", timeout=120.0)

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(work)

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        if self._app is not None:
            status, content = await asgi_request(self._app, method, path, body)
        else:
            response = await self._http.request(method, path, json=body)
            status, content = response.status_code, response.content
        if status >= 400:
            try:
                problem = json.loads(content)
            except ValueError:
                problem = {"code": "http_error", "detail": content[:500].decode(errors="replace")}
            raise MarketApiError(status, problem)
        return json.loads(content)

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

    def post_readings(
        self, bodies: Sequence[dict[str, Any]], max_batch: int = READINGS_PER_REQUEST
    ) -> int:
        """Post signed readings (an interval's, as the driver sends them) in
        ``POST /meter-readings:batch`` requests of at most ``max_batch``; return how many
        the settlement service refused.

        A batch is checked reading by reading but stored all or none, so one bad reading
        refuses its whole batch: then that batch's readings go again one
        ``POST /meter-readings`` each, which stores the good ones and counts exactly the bad.
        One request instead of one per reading spares the service a chain read of time, of
        the interval and of the readings on-chain per reading, and a store transaction per
        reading. Batches go concurrently over HTTP; one after the other in-process, where
        the work is chain reads that the embedded chain serves one at a time anyway.
        """

        async def one(body: dict[str, Any]) -> bool:
            try:
                await self._request("POST", "/meter-readings", body)
            except MarketApiError:
                return False
            return True

        async def batch(part: Sequence[dict[str, Any]]) -> int:
            try:
                await self._request("POST", "/meter-readings:batch", {"readings": list(part)})
            except MarketApiError:
                if len(part) == 1:
                    return 1  # the batch of one was checked exactly as POST /meter-readings
                if self._in_process:
                    accepted = [await one(b) for b in part]
                else:
                    accepted = list(await asyncio.gather(*(one(b) for b in part)))
                return accepted.count(False)
            return 0

        async def all_of() -> list[int]:
            size = max(1, max_batch)
            parts = [bodies[k : k + size] for k in range(0, len(bodies), size)]
            if self._in_process:
                return [await batch(p) for p in parts]
            return list(await asyncio.gather(*(batch(p) for p in parts)))

        return sum(self._run(all_of()))

    def close(self) -> None:
        """Close the HTTP client and its event loop."""
        self._run(self._http.aclose())
        self._loop.close()


# --------------------------------------------------------------------------- settlement


class SimulationChainReader(ChainReader):
    """The settlement service's chain reader with every request timed as ``chain`` (on a
    JSON-RPC node the reader talks over its own HTTP session, past web3's provider)."""

    def __init__(self, client: LedgerClient, stopwatch: Stopwatch, *, start_block: int = 0) -> None:
        super().__init__(client, start_block=start_block)
        self.stopwatch = stopwatch

    def rpc(self, method: str, params: Sequence[Any]) -> Any:
        with self.stopwatch.chain_call():
            return super().rpc(method, params)


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
    ``reader``: the chain reader to read events with; in-process, the settlement service's
    own, whose tail of recent logs then serves both (on eth-tester a log query costs about
    0.1 s however few blocks it spans).
    """

    def __init__(
        self, ledger: LedgerClient, from_block: int, reader: ChainReader | None = None
    ) -> None:
        self.ledger = ledger
        self.next_block = from_block
        self.reader = reader or ChainReader(ledger, start_block=from_block)

    def poll(self) -> SettlementProgress:
        """The events in the blocks since the last poll."""
        latest = self.reader.latest_block()
        progress = SettlementProgress()
        if latest < self.next_block:
            return progress
        events = self.reader.events
        for entry in events("TradeSettled", None, self.next_block, latest):
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
        for entry in events("IntervalSettled", None, self.next_block, latest):
            progress.settled.append(int(entry["args"]["interval"]))
        self.next_block = latest + 1
        return progress


def local_account(private_key: bytes) -> LocalAccount:
    """A signing account for a 32-byte private key."""
    account: LocalAccount = Account.from_key(private_key)
    return account


__all__ = [
    "MarketApi",
    "SettlementFeed",
    "SettlementProgress",
    "SimulationChainReader",
    "SimulationError",
    "SimulationLedger",
    "SimulationLedgerClient",
    "Stopwatch",
    "TradeOutcome",
    "TxBatch",
    "fixed_gas_limit",
    "instrument_chain",
    "local_account",
    "signed_reading_body",
]
