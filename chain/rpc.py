"""Requests to a node: transient failures told apart and retried, and one Web3 shared by threads.

* :func:`is_transient` says whether an error means "the node did not answer" (connection
  refused, a timeout, an HTTP 5xx) rather than "the node said no" (a revert, an RPC error);
  :func:`with_retries` retries the former a few times and then raises
  :class:`~chain.errors.ChainUnavailable`, which a service answers by backing off and resuming
  from chain state.
* :func:`serialize_requests` makes one ``Web3`` safe to share between threads for the
  embedded eth-tester chain (``wattledger serve`` runs the market's gate closure and the
  settlement loop on two threads, and py-evm is not thread-safe).
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import requests
from web3 import Web3
from web3.exceptions import ProviderConnectionError, TimeExhausted
from web3.middleware import Web3Middleware
from web3.types import RPCEndpoint, RPCResponse

from chain.errors import ChainUnavailable

T = TypeVar("T")
QUICK_RETRIES = 3
QUICK_RETRY_SECONDS = 0.2

# ----------------------------------------------------------------------------- threads

_LOCKS: weakref.WeakKeyDictionary[Web3, threading.RLock] = weakref.WeakKeyDictionary()


def serialize_requests(w3: Web3) -> threading.RLock:
    """Make every request through ``w3`` (and :class:`chain.reader.MarketReader`'s raw ones)
    take one lock.

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


def unreachable_reason(err: Exception) -> str:
    """A short cause for a request that got no answer, for an error message (the full text
    of a requests or httpx error is noise)."""
    text = str(err)
    if "Connection refused" in text:
        return "connection refused (nothing is listening there)"
    if "timed out" in text.lower():
        return "the connection timed out"
    return f"{type(err).__name__}: {text[:300]}"


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


# ----------------------------------------------------------------------------- answers


def to_int(value: Any) -> int:
    """A JSON-RPC quantity (``0x`` hex string, or an int from eth-tester) as an int."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    raise TypeError(f"not a quantity: {value!r}")


def rpc_result(method: str, reply: Any) -> Any:
    """One JSON-RPC reply's ``result``; RuntimeError with the node's error message when it
    answered with an error (or did not answer this call at all)."""
    if not isinstance(reply, Mapping):
        raise RuntimeError(f"{method} failed: no answer ({reply!r})"[:300])
    error = reply.get("error")
    if error or "result" not in reply:
        message = error.get("message", error) if isinstance(error, Mapping) else error
        raise RuntimeError(f"{method} failed: {message}")
    return reply["result"]


__all__ = [
    "QUICK_RETRIES",
    "QUICK_RETRY_SECONDS",
    "is_transient",
    "request_lock",
    "rpc_result",
    "serialize_requests",
    "to_int",
    "unreachable_reason",
    "with_retries",
]
