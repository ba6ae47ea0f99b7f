"""Reads of one deployed EnergyMarket, fast, with transient errors told apart.

:class:`MarketReader` sits beside :class:`chain.client.LedgerClient` (which sends the
transactions) and reads what a service needs on its hot path:

* view calls sent as raw ``eth_call`` with precomputed selectors (``participantInfo``,
  ``intervalInfo``, ``readingOf``, balances, ``totalEscrowed``): web3's contract layer costs
  about 6 ms per call on top of the node's 1-2 ms, and intake makes a few calls per reading;
* chain time (:meth:`MarketReader.now`): the timestamp of the *pending* block, which is the
  ``block.timestamp`` the next transaction will see. The latest block's timestamp lags on an
  idle chain (anvil mines no block without a transaction), and the reading window and the
  settlement deadline are on-chain time;
* events, through the one event reader :class:`chain.logs.EventReader` (with its tail of
  recent blocks on the embedded chain): the intervals committed (``IntervalCommitted``, each
  remembered so that later scans of the interval start at its block), the readings on-chain
  (``ReadingSubmitted``), registrations, and any event as ``args`` dicts;
* raw JSON-RPC (:meth:`MarketReader.rpc`, :meth:`MarketReader.rpc_batch`) for what a
  transaction sender asks (nonces, fees, receipts).

A node that does not answer (connection refused, a timeout, an HTTP 5xx) raises
:class:`~chain.errors.ChainUnavailable` after a few quick retries (:mod:`chain.rpc`).
The settlement service's reader (:class:`settlement.chain_reader.ChainReader`) adds what is
its own: the committed trades as a settlement failure, the readings cache of intake and the
reconciliation record of an interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from web3.exceptions import ContractLogicError
from web3.types import RPCEndpoint

from chain.client import LedgerClient
from chain.connection import RPC_TIMEOUT_SECONDS, ViewCall, local_session
from chain.finality import final_block_of
from chain.logs import Block, EventReader
from chain.rpc import QUICK_RETRIES, request_lock, rpc_result, to_int, with_retries
from ledger.events import IntervalCommitted, ParticipantRegistered, ReadingSubmitted
from ledger.hashing import keccak
from ledger.records import IntervalInfo

log = logging.getLogger(__name__)

T = TypeVar("T")
ZERO_ADDRESS = "0x" + "00" * 20


def _selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


_PARTICIPANT_INFO = _selector("participantInfo(address)")
_INTERVAL_INFO = _selector("intervalInfo(uint64)")
_READING_OF = _selector("readingOf(uint64,address)")
_BALANCE_OF = _selector("balanceOf(address)")
_TOTAL_ESCROWED = _selector("totalEscrowed()")
_EPOCH = _selector("epoch()")
_INTERVAL_SECONDS = _selector("intervalSeconds()")
_INFO_TYPES = ["(uint8,uint64,uint64,uint64,uint16,uint128,bytes32,bytes32)"]


def _batch_result(method: str, reply: Any) -> Any:
    """One reply of a batch request: its ``result``, or the RuntimeError :meth:`rpc` would
    raise for it (returned, not raised)."""
    try:
        return rpc_result(method, reply)
    except RuntimeError as err:
        return err


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


class MarketReader:
    """Reads of one deployed EnergyMarket (the market of ``client``).

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
        self._token: str | None = None
        # eth-tester charges view calls gas at the default price: call from a funded account.
        self._caller = client.sender
        # Raw calls to a JSON-RPC node go over a session of their own. For a node on this
        # machine it ignores proxy settings from the environment, whose lookup costs requests
        # about 3 ms per call (the hot path makes two or three calls per reading).
        self._url = client.chain.rpc_url or ""
        self._embedded = client.chain.is_embedded
        self._session: requests.Session | None = None
        if client.chain.rpc_url is not None:
            self._session = local_session(self._url) or requests.Session()
        self.event_reader = EventReader(self.w3, self.market, chain=client.chain, retry=self.retry)
        """The market's events (:class:`chain.logs.EventReader`), with this reader's retries."""
        self._commits: dict[int, IntervalCommitted] = {}
        self._commit_blocks: dict[int, int] = {}
        self._registered: tuple[int, list[str]] = (start_block, [])
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
            return rpc_result(method, response)

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

    def view(
        self, to: str, data: bytes, types: Sequence[str], block: int | None = None
    ) -> tuple[Any, ...]:
        """A view call ``data`` to contract ``to`` at the latest block (or ``block``), its
        answer decoded as ``types``; RuntimeError when it reverts."""
        if block is not None:
            tag = hex(block)
            result = self.rpc(
                "eth_call", [{"from": self._caller, "to": to, "data": "0x" + data.hex()}, tag]
            )
            raw = bytes.fromhex(result[2:]) if isinstance(result, str) else bytes(result)
            return tuple(abi_decode(list(types), raw))
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
        meter, index, registered = self.view(self.market, data, ["address", "uint32", "bool"])
        return MeterInfo(str(meter).lower(), int(index), bool(registered))

    def interval(self, t: int, block: int | None = None) -> IntervalInfo:
        """``intervalInfo(t)`` (at ``block``: a final block, read as it is, never kept).

        On the embedded chain an answer is kept with the block it was read at, and given
        again while it still holds (a view there costs about 12 ms, the check a few tens of
        microseconds; the service asks for every open interval on every tick):

        * the chain's head is still that block;
        * or that block is still canonical and the interval was ``settled`` (final), or
          ``committed`` with every block since stamped before its reading deadline: only
          ``settle`` changes a committed interval (status, cursor, remaining hash), and it
          reverts before the deadline.
        """
        if not self._embedded or block is not None:
            (values,) = self.view(self.market, self._interval_call(t), _INFO_TYPES, block)
            return IntervalInfo.from_values(values)
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
        (values,) = abi_decode(_INFO_TYPES, raw)
        info = IntervalInfo.from_values(values)
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
        submitted, exported = self.view(self.market, data, ["bool", "uint64"])
        return bool(submitted), int(exported)

    def balance_of(self, participant: str) -> tuple[int, int]:
        """``balanceOf(participant)`` of the market: (free, locked) base units."""
        data = _BALANCE_OF + abi_encode(["address"], [to_checksum_address(participant)])
        free, locked = self.view(self.market, data, ["uint256", "uint256"])
        return int(free), int(locked)

    def total_escrowed(self) -> int:
        """``totalEscrowed()``: the sum of every balance the market keeps (base units)."""
        (total,) = self.view(self.market, _TOTAL_ESCROWED, ["uint256"])
        return int(total)

    def token_balance(self) -> int:
        """The market's balance of its settlement token (base units); the token's address is
        read once."""
        if self._token is None:
            self._token = str(self.retry("reading the token", lambda: self.client.token.address))
        data = _BALANCE_OF + abi_encode(["address"], [self.market])
        (held,) = self.view(self._token, data, ["uint256"])
        return int(held)

    def timing(self) -> tuple[int, int]:
        """(epoch, interval length) in seconds; immutable, read once."""
        if self._timing is None:
            (epoch,) = self.view(self.market, _EPOCH, ["uint64"])
            (length,) = self.view(self.market, _INTERVAL_SECONDS, ["uint64"])
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

    def final_block(self, latest: int | None = None) -> int:
        """The newest final block (:mod:`chain.finality`) when the latest is ``latest``
        (read when not given): ``latest`` itself on a chain whose mined blocks are final."""
        if latest is None:
            latest = self.latest_block()
        finality = self.client.chain.finality
        if finality.immediate:
            return latest
        return self.retry(
            "reading the final block", lambda: final_block_of(self.w3, finality, latest)
        )

    def gas_limit(self) -> int:
        """The latest block's gas limit."""
        block = self.block("latest")
        return to_int(block["gasLimit"] if "gasLimit" in block else block["gas_limit"])

    # -- events -----------------------------------------------------------------------------

    def committed_intervals(self, from_block: int, to_block: int) -> list[IntervalCommitted]:
        """``IntervalCommitted`` events in blocks ``[from_block, to_block]`` (remembered: later
        scans of an interval's events start at its commit block)."""
        if to_block < from_block:
            return []
        out = self.event_reader.of(IntervalCommitted, None, from_block, to_block)
        for c in out:
            self._commits[c.interval] = c
        return out

    def remember_commit(self, t: int, block_number: int) -> None:
        """Note that interval ``t`` was committed in ``block_number`` (a restart knows it from
        its store), so its event scans need not start at the deployment block."""
        self._commit_blocks.setdefault(t, block_number)

    def commit_of(self, t: int) -> IntervalCommitted | None:
        """Interval ``t``'s ``IntervalCommitted`` event, or None if it was never committed.

        Looked up from its block when known, else by one scan from the deployment block.
        """
        known = self._commits.get(t)
        if known is not None:
            return known
        block = self._commit_blocks.get(t)
        if block is None:
            found = self.event_reader.commit_of(t, self.start_block, "latest")
        else:
            found = self.event_reader.commit_of(t, block, block)
        if found is not None:
            self._commits[t] = found
        return found

    def first_block(self, t: int) -> int:
        """Where interval ``t``'s events start: its commit's first block (else the
        deployment's)."""
        commit = self.commit_of(t)
        return self.start_block if commit is None else commit.start_block

    def reading_events(
        self, t: int, from_block: int | None = None, to_block: Block = "latest"
    ) -> list[ReadingSubmitted]:
        """``ReadingSubmitted`` events of interval ``t`` in chain order (from its commit
        block by default)."""
        start = self.first_block(t) if from_block is None else from_block
        return self.event_reader.of(ReadingSubmitted, {"interval": t}, start, to_block)

    def participants(self) -> list[str]:
        """Every address ever registered (``ParticipantRegistered``), lower-case, in order."""
        latest = self.latest_block()
        start, known = self._registered
        if start <= latest:
            seen = dict.fromkeys(known)
            for e in self.event_reader.of(ParticipantRegistered, None, start, latest):
                seen.setdefault(e.participant.lower())
            self._registered = (latest + 1, list(seen))
        return list(self._registered[1])


class ChainClock:
    """A :class:`market.clock.Clock` that tells on-chain time (the pending block's timestamp)."""

    def __init__(self, reader: MarketReader) -> None:
        self.reader = reader

    def now(self) -> int:
        """The timestamp the next block will carry."""
        return self.reader.now()


__all__ = [
    "ZERO_ADDRESS",
    "ChainClock",
    "MarketReader",
    "MeterInfo",
]
