"""What the settlement service reads from the chain, fast, and with transient errors told apart.

:class:`ChainReader` sits beside :class:`deploy.ledger.LedgerClient` and adds what the service
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

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.exceptions import ProviderConnectionError, TimeExhausted
from web3.middleware import Web3Middleware
from web3.types import RPCEndpoint, RPCResponse

from deploy.ledger import STATUS_NAMES, IntervalInfo, LedgerClient
from market.signing import keccak
from settlement.errors import ChainUnavailable, SettlementFailed
from settlement.model import Trade
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

    # -- raw JSON-RPC ---------------------------------------------------------------------

    def rpc(self, method: str, params: Sequence[Any]) -> Any:
        def once() -> Any:
            with request_lock(self.w3):
                response = self.w3.provider.make_request(RPCEndpoint(method), list(params))
            if response.get("error"):
                error = response["error"]
                message = error.get("message", error) if isinstance(error, Mapping) else error
                raise RuntimeError(f"{method} failed: {message}")
            return response["result"]

        return self.retry(f"calling {method}", once)

    def retry(self, what: str, call: Callable[[], T]) -> T:
        """Run ``call`` with the reader's quick retries of transient errors."""
        return with_retries(what, call, retries=self._retries, sleep=self._sleep)

    def _view(self, to: str, data: bytes, types: Sequence[str]) -> tuple[Any, ...]:
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
        """``intervalInfo(t)``."""
        data = _INTERVAL_INFO + abi_encode(["uint64"], [t])
        ((status, count, cursor, deadline, tol, pp, root, remaining),) = self._view(
            self.market, data, [_INTERVAL_INFO_TYPE]
        )
        return IntervalInfo(
            STATUS_NAMES[int(status)],
            int(count),
            int(cursor),
            int(deadline),
            int(tol),
            int(pp),
            bytes(root),
            bytes(remaining),
        )

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
        """A block header by tag (``latest``, ``pending``), formatted by web3 (camelCase keys:
        eth-tester's raw answers are snake_case)."""

        def read() -> Mapping[str, Any]:
            try:
                block: Mapping[str, Any] = self.w3.eth.get_block(which)  # type: ignore[arg-type]
            except Exception as err:
                if is_transient(err):
                    raise
                raise RuntimeError(f"the node has no {which} block: {err}") from None
            return block

        return self.retry(f"reading the {which} block", read)

    def now(self) -> int:
        """Chain time: the timestamp the next transaction's block will have (pending block)."""
        try:
            return to_int(self.block("pending")["timestamp"])
        except RuntimeError:  # a node without a pending block: the latest is the best guess
            return to_int(self.block("latest")["timestamp"])

    def latest_block(self) -> int:
        """Number of the latest block."""
        return to_int(self.rpc("eth_blockNumber", []))

    def gas_limit(self) -> int:
        """The latest block's gas limit."""
        return to_int(self.block("latest")["gasLimit"])

    # -- events -----------------------------------------------------------------------------

    def _logs(
        self,
        event: str,
        filters: Mapping[str, Any] | None = None,
        from_block: int | None = None,
        to_block: int | str = "latest",
    ) -> list[Any]:
        getter = self.client.contract.events[event]().get_logs
        start = self.start_block if from_block is None else from_block
        return self.retry(
            f"reading {event} events",
            lambda: list(
                getter(
                    from_block=start,
                    to_block=to_block,
                    argument_filters=dict(filters or {}),
                )
            ),
        )

    def committed_intervals(self, from_block: int, to_block: int) -> list[CommittedInterval]:
        """``IntervalCommitted`` events in blocks ``[from_block, to_block]``."""
        if to_block < from_block:
            return []
        out = []
        for entry in self._logs("IntervalCommitted", None, from_block, to_block):
            args = entry["args"]
            out.append(
                CommittedInterval(
                    interval=int(args["interval"]),
                    trade_count=int(args["tradeCount"]),
                    deadline=int(args["deadline"]),
                    penalty_price_per_wh=int(args["penaltyPricePerWh"]),
                    tolerance_bps=int(args["toleranceBps"]),
                    block_number=int(entry["blockNumber"]),
                )
            )
        return out

    def reading_events(self, t: int) -> list[ReadingEvent]:
        """Every ``ReadingSubmitted`` event of interval ``t`` in chain order."""
        return [
            ReadingEvent(
                participant=str(e["args"]["participant"]).lower(),
                imported_wh=int(e["args"]["importedWh"]),
                exported_wh=int(e["args"]["exportedWh"]),
                block_number=int(e["blockNumber"]),
                tx_hash=_tx_hash(e),
            )
            for e in self._logs("ReadingSubmitted", {"interval": t})
        ]

    def submitted_readings(self, t: int) -> dict[str, ReadingEvent]:
        """The readings of interval ``t`` that are on-chain, by participant (lower-case)."""
        return {e.participant: e for e in self.reading_events(t)}

    def participants(self) -> list[str]:
        """Every address ever registered (``ParticipantRegistered``), lower-case."""
        seen = dict.fromkeys(
            str(e["args"]["participant"]).lower() for e in self._logs("ParticipantRegistered")
        )
        return list(seen)

    def committed_trades(self, t: int) -> tuple[Trade, ...]:
        """Interval ``t``'s trades in commit order, from the commit transaction's calldata.

        Raises :class:`SettlementFailed` when the commit's calldata cannot be decoded as a
        direct ``commitInterval`` call (a commit relayed through another contract).
        """

        def read() -> tuple[Trade, ...]:
            return self.client.committed_trades(t)

        try:
            return self.retry(f"reading the trades of interval {t}", read)
        except ChainUnavailable:
            raise
        except Exception as err:
            if is_transient(err):
                raise ChainUnavailable(str(err)) from None
            raise SettlementFailed(
                t,
                "trades_unavailable",
                f"cannot replay the committed trades from the commit transaction: "
                f"{type(err).__name__}: {err}",
            ) from None

    def interval_events(self, t: int, *, escrow: bool = True) -> IntervalEvents:
        """Every event of interval ``t`` and its stored state, for reconciliation."""
        info = self.interval(t)
        committed = bool(self._logs("IntervalCommitted", {"interval": t}))
        trades = self.committed_trades(t) if committed else ()
        locked: dict[str, int] = {}
        for e in self._logs("CollateralLocked", {"interval": t}):
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
            for e in self._logs("TradeSettled", {"interval": t})
        )
        parties = tuple(
            ParticipantSettledEvent(
                participant=str(e["args"]["participant"]).lower(),
                released=int(e["args"]["releasedBaseUnits"]),
                credited=int(e["args"]["creditedBaseUnits"]),
            )
            for e in self._logs("ParticipantSettled", {"interval": t})
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
            interval_settled_events=len(self._logs("IntervalSettled", {"interval": t})),
            escrow=self.escrow() if escrow else None,
            reading_duplicates=tuple(duplicates),
        )


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
