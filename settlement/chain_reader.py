"""What the settlement service reads from the chain, fast, and with transient errors told apart.

:class:`ChainReader` sits beside :class:`chain.client.LedgerClient` and adds what the service
needs on its hot path and for reconciliation:

* view calls sent as raw ``eth_call`` with precomputed selectors (``participantInfo``,
  ``intervalInfo``, ``readingOf``, balances): web3's contract layer costs about 6 ms per call
  on top of the node's 1-2 ms, and intake makes a few calls per reading;
* chain time (:meth:`ChainReader.now`): the timestamp of the *pending* block, which is the
  ``block.timestamp`` the next transaction will see. The latest block's timestamp lags on an
  idle chain (anvil mines no block without a transaction), and the reading window and the
  settlement deadline are on-chain time;
* events by interval: the intervals committed (``IntervalCommitted``), the readings on-chain
  (``ReadingSubmitted``), and everything the reconciliation report needs;
* the committed trades of an interval, replayed from the commit transaction's calldata by
  :meth:`LedgerClient.committed_trades`.

A node that does not answer (connection refused, a timeout, an HTTP 5xx) raises
:class:`~settlement.errors.ChainUnavailable` after a few quick retries; the service then backs
off and resumes from chain state.

:func:`serialize_requests` makes one ``Web3`` safe to share between threads for the embedded
eth-tester chain (``wattledger serve`` runs the market's gate closure and the settlement loop
on two threads, and py-evm is not thread-safe).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

import requests
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError, ProviderConnectionError, TimeExhausted
from web3.middleware import Web3Middleware
from web3.types import RPCEndpoint, RPCResponse

from chain.client import LedgerClient
from chain.connection import ViewCall
from ledger.calldata import decode_commit_calldata
from ledger.hashing import keccak
from ledger.records import IntervalInfo, Trade
from settlement.errors import ChainUnavailable, SettlementFailed
from settlement.report import (
    EscrowSnapshot,
    IntervalEvents,
    IntervalState,
    ParticipantSettledEvent,
    ReadingEvent,
    TradeSettledEvent,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
ZERO_ADDRESS = "0x" + "00" * 20
QUICK_RETRIES = 3
QUICK_RETRY_SECONDS = 0.2
RPC_TIMEOUT_SECONDS = 30
TAIL_BLOCKS = 1_024
"""Recent blocks whose market logs the reader keeps in memory on the embedded chain."""

# ----------------------------------------------------------------------------- threads

_LOCKS: weakref.WeakKeyDictionary[Web3, threading.RLock] = weakref.WeakKeyDictionary()


def serialize_requests(w3: Web3) -> threading.RLock:
    """Make every request through ``w3`` (and :class:`ChainReader`'s raw ones) take one lock.

    Idempotent; returns the lock. Needed for the in-process eth-tester chain when two threads
    use it; a JSON-RPC node serialises requests itself.
    """
    existing = _LOCKS.get(w3)
    if existing is not None:
        return existing
    lock = threading.RLock()
    _LOCKS[w3] = lock

    class _Serialized(Web3Middleware):
        def wrap_make_request(self, make_request: Any) -> Any:
            def middleware(method: RPCEndpoint, params: Any) -> RPCResponse:
                with lock:
                    response: RPCResponse = make_request(method, params)
                    return response

            return middleware

    w3.middleware_onion.inject(_Serialized, name="wattledger_serialize", layer=0)
    return lock


def request_lock(w3: Web3) -> contextlib.AbstractContextManager[Any]:
    """The lock :func:`serialize_requests` installed on ``w3``, or a no-op context."""
    lock = _LOCKS.get(w3)
    return lock if lock is not None else contextlib.nullcontext()


# ----------------------------------------------------------------------------- transient errors


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` means "the node did not answer" rather than "the node said no".

    Connection refused or reset, timeouts, HTTP 5xx and web3's connection errors are
    transient; a revert, a validation error or an RPC error answer are not.
    """
    if isinstance(err, ChainUnavailable):
        return True
    if isinstance(err, requests.HTTPError):
        response = err.response
        return response is None or response.status_code >= 500 or response.status_code == 429
    if isinstance(
        err,
        requests.ConnectionError
        | requests.Timeout
        | requests.exceptions.ChunkedEncodingError
        | ProviderConnectionError
        | TimeExhausted
        | ConnectionError
        | TimeoutError,
    ):
        return True
    text = str(err).lower()
    return "connection refused" in text or "connection reset" in text


def with_retries(
    what: str,
    call: Callable[[], T],
    *,
    retries: int = QUICK_RETRIES,
    first_delay: float = QUICK_RETRY_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call``; retry a transient failure ``retries`` times with doubling delays.

    Raises :class:`ChainUnavailable` when the node still does not answer; any other error
    propagates at once.
    """
    delay = first_delay
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as err:
            if not is_transient(err):
                raise
            if attempt == retries:
                raise ChainUnavailable(
                    f"the chain did not answer while {what}: {type(err).__name__}: {str(err)[:200]}"
                ) from None
            sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def to_int(value: Any) -> int:
    """A JSON-RPC quantity (``0x`` hex string, or an int from eth-tester) as an int."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    raise TypeError(f"not a quantity: {value!r}")


def _selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


_PARTICIPANT_INFO = _selector("participantInfo(address)")
_INTERVAL_INFO = _selector("intervalInfo(uint64)")
_READING_OF = _selector("readingOf(uint64,address)")
_BALANCE_OF = _selector("balanceOf(address)")
_TOTAL_ESCROWED = _selector("totalEscrowed()")
_EPOCH = _selector("epoch()")
_INTERVAL_SECONDS = _selector("intervalSeconds()")
_INTERVAL_INFO_TYPE = "(uint8,uint64,uint64,uint64,uint16,uint128,bytes32,bytes32)"
_INFO_TYPES = [_INTERVAL_INFO_TYPE]


def _batch_result(method: str, reply: Any) -> Any:
    """One reply of a batch request: its ``result``, or a RuntimeError as :meth:`ChainReader.rpc`
    would raise it."""
    if not isinstance(reply, Mapping):
        return RuntimeError(f"{method} failed: no answer ({reply!r})"[:300])
    error = reply.get("error")
    if error or "result" not in reply:
        message = error.get("message", error) if isinstance(error, Mapping) else error
        return RuntimeError(f"{method} failed: {message}")
    return reply["result"]


def _interval_info(decoded: Sequence[Any]) -> IntervalInfo:
    """An ``intervalInfo`` answer (decoded as ``(_INTERVAL_INFO_TYPE,)``) as IntervalInfo."""
    (values,) = decoded
    return IntervalInfo.from_values(values)


# ----------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """A participant's registration: meter key (lower-case hex), index, whether registered."""

    meter: str
    participant_index: int
    registered: bool

    @property
    def ever_registered(self) -> bool:
        """False for an address the registrar never registered (its meter is zero)."""
        return self.meter != ZERO_ADDRESS


@dataclass(frozen=True, slots=True)
class CommittedInterval:
    """One ``IntervalCommitted`` event."""

    interval: int
    trade_count: int
    deadline: int
    penalty_price_per_wh: int
    tolerance_bps: int
    block_number: int
    tx_hash: str = ""


# ----------------------------------------------------------------------------- the reader


class ChainReader:
    """Reads of one deployed EnergyMarket for the settlement service.

    ``start_block`` is where event scans begin (the market's deployment block).
    """

    def __init__(
        self,
        client: LedgerClient,
        *,
        start_block: int = 0,
        sleep: Callable[[float], None] = time.sleep,
        quick_retries: int = QUICK_RETRIES,
    ) -> None:
        self.client = client
        self.w3 = client.w3
        self.market = client.address
        self.start_block = start_block
        self._sleep = sleep
        self._retries = quick_retries
        self._timing: tuple[int, int] | None = None
        # eth-tester charges view calls gas at the default price: call from a funded account.
        self._caller = client.sender
        self._token: str | None = None
        self._events: dict[str, tuple[str, list[Mapping[str, Any]]]] = {}
        # Raw calls to a JSON-RPC node go over a session of their own. For a node on this
        # machine it ignores proxy settings from the environment, whose lookup costs requests
        # about 3 ms per call (the hot path makes two or three calls per reading).
        self._url = client.chain.rpc_url or ""
        self._embedded = client.chain.is_embedded
        self._session: requests.Session | None = None
        if client.chain.rpc_url is not None:
            self._session = requests.Session()
            host = urlparse(self._url).hostname or ""
            self._session.trust_env = host not in ("127.0.0.1", "localhost", "::1")
        self._readings: dict[int, tuple[int, dict[str, ReadingEvent]]] = {}
        self._commits: dict[int, CommittedInterval] = {}
        self._registered: tuple[int, list[str]] = (start_block, [])
        self._tail: tuple[int, int, bytes, list[Any]] = (-1, -1, b"", [])
        self._intervals: dict[int, tuple[int, bytes, IntervalInfo]] = {}
        self._batches = True
        self.header_gas_limit: int | None = None
        """The block gas limit in the header :meth:`now_and_latest` last read from a node
        (None on the embedded chain): a tick that reads chain time needs no other read of it."""

    # -- raw JSON-RPC ---------------------------------------------------------------------

    def rpc(self, method: str, params: Sequence[Any]) -> Any:
        """One JSON-RPC call; ``result`` or RuntimeError with the node's error message."""

        def once() -> Any:
            if self._session is not None:
                payload: dict[str, Any] = {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": method,
                    "params": list(params),
                }
                answer = self._session.post(self._url, json=payload, timeout=RPC_TIMEOUT_SECONDS)
                answer.raise_for_status()
                response: Mapping[str, Any] = answer.json()
            else:
                with request_lock(self.w3):
                    response = self.w3.provider.make_request(RPCEndpoint(method), list(params))
            if response.get("error"):
                error = response["error"]
                message = error.get("message", error) if isinstance(error, Mapping) else error
                raise RuntimeError(f"{method} failed: {message}")
            return response["result"]

        return self.retry(f"calling {method}", once)

    def rpc_batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Independent reads ``(method, params)`` in one JSON-RPC batch request: each call's
        ``result``, or a RuntimeError (not raised) where the node answered that call with an
        error.

        On a node every request costs a round trip of HTTP and JSON handling on both sides
        (1-1.5 ms on this machine), a batch one for all. A node that refuses batches, and the
        embedded chain, get the calls one by one (same answers). Only for reads: the whole
        batch is retried on a transient failure.
        """
        if self._batches and not self._embedded:
            provider: Any = self.w3.provider
            batch = [(RPCEndpoint(method), list(params)) for method, params in calls]

            def once() -> Any:
                with request_lock(self.w3):
                    return provider.make_batch_request(batch)

            replies = self.retry("reading the chain", once)
            if isinstance(replies, list) and len(replies) == len(calls):
                return [
                    _batch_result(method, r) for (method, _), r in zip(calls, replies, strict=True)
                ]
            log.info("the node refused a batch request (%r); sending calls one by one", replies)
            self._batches = False
        out: list[Any] = []
        for method, params in calls:
            try:
                out.append(self.rpc(method, params))
            except RuntimeError as err:
                out.append(err)
        return out

    def retry(self, what: str, call: Callable[[], T]) -> T:
        """Run ``call`` with the reader's quick retries of transient errors."""
        return with_retries(what, call, retries=self._retries, sleep=self._sleep)

    def _view(self, to: str, data: bytes, types: Sequence[str]) -> tuple[Any, ...]:
        if self._embedded:
            # Straight into py-evm: web3's and eth-tester's request formatting around an
            # eth_call costs several times the EVM's own work.
            try:
                _, (raw,) = self.client.chain.view_calls([ViewCall(to, data)], sender=self._caller)
            except ContractLogicError as err:
                raise RuntimeError(f"eth_call failed: {err.message}") from None
            return tuple(abi_decode(list(types), raw))
        result = self.rpc(
            "eth_call", [{"from": self._caller, "to": to, "data": "0x" + data.hex()}, "latest"]
        )
        raw = bytes.fromhex(result[2:]) if isinstance(result, str) else bytes(result)
        return tuple(abi_decode(list(types), raw))

    # -- views ----------------------------------------------------------------------------

    def participant(self, participant: str) -> MeterInfo:
        """``participantInfo(participant)`` (addresses lower-case)."""
        data = _PARTICIPANT_INFO + abi_encode(["address"], [to_checksum_address(participant)])
        meter, index, registered = self._view(self.market, data, ["address", "uint32", "bool"])
        return MeterInfo(str(meter).lower(), int(index), bool(registered))

    def interval(self, t: int) -> IntervalInfo:
        """``intervalInfo(t)``.

        On the embedded chain an answer is kept with the block it was read at, and given
        again while it still holds (a view there costs about 12 ms, the check a few tens of
        microseconds; the service asks for every open interval on every tick):

        * the chain's head is still that block;
        * or that block is still canonical and the interval was ``settled`` (final), or
          ``committed`` with every block since stamped before its reading deadline: only
          ``settle`` changes a committed interval (status, cursor, remaining hash), and it
          reverts before the deadline.
        """
        if not self._embedded:
            return _interval_info(self._view(self.market, self._interval_call(t), _INFO_TYPES))
        cached = self._intervals.get(t)
        if cached is not None and self._still_holds(*cached):
            return cached[2]
        chain = self.client.chain
        try:
            number, (raw,) = chain.view_calls(
                [ViewCall(self.market, self._interval_call(t))], sender=self._caller
            )
        except ContractLogicError as err:
            raise RuntimeError(f"eth_call failed: {err.message}") from None
        info = _interval_info(tuple(abi_decode(_INFO_TYPES, raw)))
        if info.status == "none":
            self._intervals.pop(t, None)
        else:
            self._intervals[t] = (number, chain.block_hash(number), info)
        return info

    @staticmethod
    def _interval_call(t: int) -> bytes:
        return _INTERVAL_INFO + abi_encode(["uint64"], [t])

    def _still_holds(self, number: int, block_hash: bytes, info: IntervalInfo) -> bool:
        """Whether ``info``, read at block ``number`` (``block_hash``), is still the chain's."""
        chain = self.client.chain
        head, head_hash, head_time = chain.head()
        if head == number:
            return head_hash == block_hash
        if head < number or chain.block_hash(number) != block_hash:
            return False  # the chain went back (a snapshot reverted)
        if info.status == "settled":
            return True
        return info.status == "committed" and head_time < info.deadline

    def reading_of(self, t: int, participant: str) -> tuple[bool, int]:
        """``readingOf(t, participant)``: (accepted, exported Wh)."""
        data = _READING_OF + abi_encode(
            ["uint64", "address"], [t, to_checksum_address(participant)]
        )
        submitted, exported = self._view(self.market, data, ["bool", "uint64"])
        return bool(submitted), int(exported)

    def balance_of(self, participant: str) -> tuple[int, int]:
        """``balanceOf(participant)``: (free, locked) base units."""
        data = _BALANCE_OF + abi_encode(["address"], [to_checksum_address(participant)])
        free, locked = self._view(self.market, data, ["uint256", "uint256"])
        return int(free), int(locked)

    def timing(self) -> tuple[int, int]:
        """(epoch, interval length) in seconds; immutable, read once."""
        if self._timing is None:
            (epoch,) = self._view(self.market, _EPOCH, ["uint64"])
            (length,) = self._view(self.market, _INTERVAL_SECONDS, ["uint64"])
            self._timing = (int(epoch), int(length))
        return self._timing

    def window(self, t: int) -> tuple[int, int]:
        """(start, end) of interval ``t``'s delivery, Unix seconds (the contract's formula)."""
        epoch, length = self.timing()
        start = epoch + t * length
        return start, start + length

    def interval_at(self, timestamp: int) -> int:
        """The interval whose delivery contains ``timestamp`` (0 before the epoch)."""
        epoch, length = self.timing()
        return max(0, (timestamp - epoch) // length)

    def escrow(self) -> EscrowSnapshot:
        """Token balance of the market, ``totalEscrowed`` and the sum of every registered
        participant's free and locked balances."""
        if self._token is None:
            self._token = str(self.retry("reading the token", lambda: self.client.token.address))
        data = _BALANCE_OF + abi_encode(["address"], [self.market])
        (held,) = self._view(self._token, data, ["uint256"])
        (total,) = self._view(self.market, _TOTAL_ESCROWED, ["uint256"])
        participants = self.participants()
        balances = sum(sum(self.balance_of(p)) for p in participants)
        return EscrowSnapshot(int(held), int(total), balances, len(participants))

    # -- blocks and time --------------------------------------------------------------------

    def block(self, which: str = "latest") -> Mapping[str, Any]:
        """A block header by tag (``latest``, ``pending``) as the node sends it (anvil's keys
        are camelCase, eth-tester's snake_case; :meth:`now` and :meth:`gas_limit` read both)."""
        block = self.rpc("eth_getBlockByNumber", [which, False])
        if not block:
            raise RuntimeError(f"the node has no {which} block")
        result: Mapping[str, Any] = block
        return result

    def now(self) -> int:
        """Chain time: the timestamp the next transaction's block will have (pending block)."""
        return self.now_and_latest()[0]

    def now_and_latest(self) -> tuple[int, int]:
        """:meth:`now` and the number of the latest block, from one request: the pending
        block is the one after the latest."""
        building = self.client.chain.pending() if self._embedded else None
        if building is not None:
            return building[0], building[1] - 1
        self.header_gas_limit = None
        try:
            pending = self.block("pending")
            now, latest = to_int(pending["timestamp"]), to_int(pending["number"]) - 1
            header = pending
        except (
            RuntimeError,
            KeyError,
            TypeError,
        ):  # no pending block: the latest is the best guess
            header = self.block("latest")
            now, latest = to_int(header["timestamp"]), to_int(header["number"])
        if "gasLimit" in header:
            self.header_gas_limit = to_int(header["gasLimit"])
        return now, latest

    def latest_block(self) -> int:
        """Number of the latest block."""
        if self._embedded:
            return self.client.chain.block_number()
        return to_int(self.rpc("eth_blockNumber", []))

    def gas_limit(self) -> int:
        """The latest block's gas limit."""
        block = self.block("latest")
        return to_int(block["gasLimit"] if "gasLimit" in block else block["gas_limit"])

    # -- events -----------------------------------------------------------------------------

    def _event(self, name: str) -> tuple[str, list[Mapping[str, Any]]]:
        """topic0 and inputs of the market's event ``name`` (from its ABI)."""
        found = self._events.get(name)
        if found is None:
            abi: list[Mapping[str, Any]] = list(self.client.contract.abi)
            entry = next(e for e in abi if e.get("type") == "event" and e.get("name") == name)
            inputs = list(entry["inputs"])
            signature = f"{name}({','.join(str(i['type']) for i in inputs)})"
            found = ("0x" + keccak(signature.encode()).hex(), inputs)
            self._events[name] = found
        return found

    def _logs(
        self,
        event: str,
        filters: Mapping[str, Any] | None = None,
        from_block: int | None = None,
        to_block: int | str = "latest",
    ) -> list[dict[str, Any]]:
        """The market's ``event`` logs, decoded here: each ``{"args", "blockNumber",
        "transactionHash"}`` (web3's event decoding costs about 1 ms per log)."""
        topic0, inputs = self._event(event)
        indexed = [i for i in inputs if i.get("indexed")]
        topics: list[Any] = [topic0]
        for i in indexed:
            value = (filters or {}).get(str(i["name"]))
            topics.append(
                None if value is None else "0x" + abi_encode([str(i["type"])], [value]).hex()
            )
        while topics and topics[-1] is None:
            topics.pop()
        start = self.start_block if from_block is None else from_block
        raw = self._tail_logs(topics, start, to_block)
        if raw is None:
            params: dict[str, Any] = {
                "address": self.market,
                "fromBlock": start,
                "toBlock": to_block,
                "topics": topics,
            }
            raw = self.retry(f"reading {event} events", lambda: self.w3.eth.get_logs(params))  # type: ignore[arg-type]
        plain = [i for i in inputs if not i.get("indexed")]
        plain_types = [str(i["type"]) for i in plain]
        out = []
        for entry in raw:
            args: dict[str, Any] = {}
            for i, topic in zip(indexed, entry["topics"][1:], strict=False):
                (args[str(i["name"])],) = abi_decode([str(i["type"])], bytes(topic))
            for i, value in zip(plain, abi_decode(plain_types, bytes(entry["data"])), strict=True):
                args[str(i["name"])] = value
            out.append(
                {
                    "args": args,
                    "blockNumber": int(entry["blockNumber"]),
                    "transactionHash": bytes(entry["transactionHash"]),
                }
            )
        return out

    def events(
        self,
        event: str,
        filters: Mapping[str, Any] | None = None,
        from_block: int | None = None,
        to_block: int | str = "latest",
    ) -> list[dict[str, Any]]:
        """The market's ``event`` logs in ``[from_block, to_block]`` matching ``filters``
        (indexed arguments by name), each ``{"args", "blockNumber", "transactionHash"}``."""
        return self._logs(event, filters, from_block, to_block)

    def _tail_logs(
        self, topics: Sequence[str | None], start: int, to_block: int | str
    ) -> list[Any] | None:
        """The market's logs matching ``topics`` in ``[start, to_block]`` from the tail of
        recent blocks kept in memory (embedded chain only), or None when the range is not
        one the tail keeps (the caller asks the node).

        On eth-tester a log query costs about 0.1 s whatever its topics (it decodes every
        receipt of every block in the range), and the service asks several per tick over
        the same few new blocks (commits, readings of each interval; the simulation's
        settlement feed too). The tail fetches each block's market logs once. It covers
        the last :data:`TAIL_BLOCKS` blocks and is dropped when the chain went back (a
        snapshot reverted): the hash of its last block is checked on every use.
        """
        if not self._embedded:
            return None
        chain = self.client.chain
        latest = chain.block_number()
        stop = latest if to_block == "latest" else int(to_block)
        stop = min(stop, latest)
        if start < latest - TAIL_BLOCKS or stop < start:
            return None if stop >= start else []
        first, last, last_hash, entries = self._tail
        if last >= 0 and (last > latest or chain.block_hash(last) != last_hash):
            first, last, entries = -1, -1, []  # the chain went back
        if last < 0 or start > last + 1:
            first, last, entries = start, start - 1, []
        if start < first:
            entries = self._market_logs(start, first - 1) + entries
            first = start
        if stop > last:
            entries = entries + self._market_logs(last + 1, stop)
            last = stop
        floor = latest - TAIL_BLOCKS
        if first < floor:
            entries = [e for e in entries if int(e["blockNumber"]) >= floor]
            first = floor
        self._tail = (first, last, chain.block_hash(last), entries)
        return _matching(entries, topics, start, stop)

    def _market_logs(self, from_block: int, to_block: int) -> list[Any]:
        chain = self.client.chain
        return self.retry("reading events", lambda: chain.logs(self.market, from_block, to_block))

    def committed_intervals(self, from_block: int, to_block: int) -> list[CommittedInterval]:
        """``IntervalCommitted`` events in blocks ``[from_block, to_block]`` (remembered: later
        scans of an interval's events start at its commit block)."""
        if to_block < from_block:
            return []
        out = [
            self._commit_of(entry)
            for entry in self._logs("IntervalCommitted", None, from_block, to_block)
        ]
        for c in out:
            self._commits[c.interval] = c
        return out

    @staticmethod
    def _commit_of(entry: Mapping[str, Any]) -> CommittedInterval:
        args = entry["args"]
        return CommittedInterval(
            interval=int(args["interval"]),
            trade_count=int(args["tradeCount"]),
            deadline=int(args["deadline"]),
            penalty_price_per_wh=int(args["penaltyPricePerWh"]),
            tolerance_bps=int(args["toleranceBps"]),
            block_number=int(entry["blockNumber"]),
            tx_hash=_tx_hash(entry),
        )

    def remember_commit(self, t: int, block_number: int) -> None:
        """Note that interval ``t`` was committed in ``block_number`` (a restart knows it from
        its store), so its event scans need not start at the deployment block."""
        if t not in self._commits:
            self._commits[t] = CommittedInterval(t, 0, 0, 0, 0, block_number)

    def commit_of(self, t: int) -> CommittedInterval | None:
        """Interval ``t``'s ``IntervalCommitted`` event, or None if it was never committed.

        Looked up from its block when known, else by one scan from the deployment block.
        """
        known = self._commits.get(t)
        if known is not None and known.tx_hash:
            return known
        start = self.start_block if known is None else known.block_number
        stop: int | str = "latest" if known is None else known.block_number
        found = self._logs("IntervalCommitted", {"interval": t}, start, stop)
        if not found:
            return None
        commit = self._commit_of(found[-1])
        self._commits[t] = commit
        return commit

    def _first_block(self, t: int) -> int:
        """Where interval ``t``'s events start: its commit block (else the deployment's)."""
        commit = self.commit_of(t)
        return self.start_block if commit is None else commit.block_number

    def reading_events(
        self, t: int, from_block: int | None = None, to_block: int | str = "latest"
    ) -> list[ReadingEvent]:
        """``ReadingSubmitted`` events of interval ``t`` in chain order."""
        return [
            ReadingEvent(
                participant=str(e["args"]["participant"]).lower(),
                imported_wh=int(e["args"]["importedWh"]),
                exported_wh=int(e["args"]["exportedWh"]),
                block_number=int(e["blockNumber"]),
                tx_hash=_tx_hash(e),
            )
            for e in self._logs(
                "ReadingSubmitted",
                {"interval": t},
                self._first_block(t) if from_block is None else from_block,
                to_block,
            )
        ]

    def submitted_readings(self, t: int, latest: int | None = None) -> dict[str, ReadingEvent]:
        """The readings of interval ``t`` that are on-chain, by participant (lower-case), as
        of block ``latest`` (default: the latest block).

        Kept per interval and extended from the last block seen, so that a service putting
        1,000 readings on-chain in batches does not decode them all again for every batch,
        and intake, which asks for every reading it takes, scans the logs only when a block
        was mined since it last asked.
        """
        if latest is None:
            latest = self.latest_block()
        first = self._first_block(t)
        start, known = self._readings.get(t, (first, {}))
        if latest + 1 < start:  # the chain went back (a reset node): read everything again
            start, known = first, {}
        known = dict(known)
        if start <= latest:
            for e in self.reading_events(t, start, latest):
                known.setdefault(e.participant, e)
        self._readings[t] = (latest + 1, known)
        return dict(known)

    def participants(self) -> list[str]:
        """Every address ever registered (``ParticipantRegistered``), lower-case, in order."""
        latest = self.latest_block()
        start, known = self._registered
        if start <= latest:
            seen = dict.fromkeys(known)
            for e in self._logs("ParticipantRegistered", None, start, latest):
                seen.setdefault(str(e["args"]["participant"]).lower())
            self._registered = (latest + 1, list(seen))
        return list(self._registered[1])

    def committed_trades(self, t: int) -> tuple[Trade, ...]:
        """Interval ``t``'s trades in commit order, from the commit transaction's calldata.

        Raises :class:`SettlementFailed` when ``t`` has no commit or its calldata cannot be
        decoded as a direct ``commitInterval`` call (a commit relayed through a contract).
        """
        commit = self.commit_of(t)
        if commit is None:
            raise SettlementFailed(t, "interval_not_committed", "no IntervalCommitted event")
        tx = self.retry(
            f"reading the commit of interval {t}",
            lambda: self.w3.eth.get_transaction(commit.tx_hash),  # type: ignore[arg-type]
        )
        try:
            return decode_commit_calldata(bytes(tx["input"]), t)
        except Exception as err:
            raise SettlementFailed(
                t,
                "trades_unavailable",
                f"cannot replay the committed trades from the commit transaction "
                f"{commit.tx_hash}: {type(err).__name__}: {err}",
            ) from None

    def interval_events(self, t: int, *, escrow: bool = True) -> IntervalEvents:
        """Every event of interval ``t`` and its stored state, for reconciliation."""
        info = self.interval(t)
        committed = self.commit_of(t) is not None
        trades = self.committed_trades(t) if committed else ()
        first = self._first_block(t)
        locked: dict[str, int] = {}
        for e in self._logs("CollateralLocked", {"interval": t}, first):
            who = str(e["args"]["participant"]).lower()
            locked[who] = locked.get(who, 0) + int(e["args"]["amount"])
        readings: dict[str, ReadingEvent] = {}
        duplicates: list[str] = []
        for r in self.reading_events(t):
            if r.participant in readings:
                duplicates.append(r.participant)
            readings.setdefault(r.participant, r)
        settled = tuple(
            TradeSettledEvent(
                trade_index=int(e["args"]["tradeIndex"]),
                delivered_wh=int(e["args"]["deliveredWh"]),
                payment=int(e["args"]["paymentBaseUnits"]),
                refund=int(e["args"]["refundBaseUnits"]),
                penalty=int(e["args"]["penaltyBaseUnits"]),
                block_number=int(e["blockNumber"]),
                tx_hash=_tx_hash(e),
            )
            for e in self._logs("TradeSettled", {"interval": t}, first)
        )
        parties = tuple(
            ParticipantSettledEvent(
                participant=str(e["args"]["participant"]).lower(),
                released=int(e["args"]["releasedBaseUnits"]),
                credited=int(e["args"]["creditedBaseUnits"]),
            )
            for e in self._logs("ParticipantSettled", {"interval": t}, first)
        )
        return IntervalEvents(
            interval=t,
            state=IntervalState(
                status=info.status,
                trade_count=info.trade_count,
                cursor=info.cursor,
                deadline=info.deadline,
                tolerance_bps=info.tolerance_bps,
                penalty_price_per_wh=info.penalty_price_per_wh,
            ),
            committed=committed,
            trades=tuple(trades),
            locked=locked,
            readings=readings,
            trade_settled=settled,
            participant_settled=parties,
            interval_settled_events=len(self._logs("IntervalSettled", {"interval": t}, first)),
            escrow=self.escrow() if escrow else None,
            reading_duplicates=tuple(duplicates),
        )


def _matching(
    entries: Sequence[Mapping[str, Any]], topics: Sequence[str | None], start: int, stop: int
) -> list[Any]:
    """The ``entries`` (in chain order, topics as bytes) of blocks ``[start, stop]`` whose
    topics match ``topics`` (None matches any). The blocks are found by bisection: the tail
    holds up to a thousand blocks of logs, and most queries want the last few."""
    low = bisect.bisect_left(entries, start, key=_block_of)
    high = bisect.bisect_right(entries, stop, lo=low, key=_block_of)
    wanted = [(i, bytes.fromhex(t[2:])) for i, t in enumerate(topics) if t is not None]
    count = len(topics)
    return [
        e
        for e in entries[low:high]
        if len(e["topics"]) >= count and all(e["topics"][i] == w for i, w in wanted)
    ]


def _block_of(entry: Mapping[str, Any]) -> int:
    return int(entry["blockNumber"])


def _tx_hash(entry: Mapping[str, Any]) -> str:
    return "0x" + bytes(entry["transactionHash"]).hex().removeprefix("0x")


class ChainClock:
    """A :class:`market.clock.Clock` that tells on-chain time (the pending block's timestamp)."""

    def __init__(self, reader: ChainReader) -> None:
        self.reader = reader

    def now(self) -> int:
        """The timestamp the next block will carry."""
        return self.reader.now()


__all__ = [
    "ChainClock",
    "ChainReader",
    "CommittedInterval",
    "MeterInfo",
    "is_transient",
    "request_lock",
    "serialize_requests",
    "to_int",
    "with_retries",
]
