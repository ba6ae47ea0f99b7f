"""Wall time per stage of a simulation run, with every request to the chain timed as ``chain``.

:class:`Stopwatch` times the driver's stages (agents, API, clearing, settlement...);
:func:`instrument_chain` makes every request to the chain count as ``chain`` wherever it is
made (market service, settlement service, driver), so the other stages show only their own
work.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from web3.middleware import Web3Middleware
from web3.types import RPCEndpoint, RPCResponse

from chain.connection import Chain

T = TypeVar("T")


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


__all__ = ["Stopwatch", "instrument_chain"]
