"""The budget of chain reads for participants a service has not seen: a token bucket.

An order or a meter reading names its participant, and intake needs the chain's word on that
participant (registered? its free balance, its meter key) before it can accept anything.
Whatever that participant already told the chain is cached, so a participant the service
knows costs no read; an address it has not seen costs one or two. Without a bound, a flood of
validly signed messages from fresh keys (free to make) turns into as many chain reads, and
the node, shared with gate closure and settlement, slows down for everyone.

:class:`LookupBudget` bounds those reads in total: ``rate_per_second`` lookups a second, up
to ``burst`` at once. Only addresses not in a cache spend it, so a flood of unknown addresses
never delays a participant the service knows (its orders need no read at all); a request
that finds the budget spent is answered ``chain_busy`` (503, :class:`ChainBusy`) with
``Retry-After``: the time until the bucket holds a token again.

Why 503 and not 429: the budget is one for the whole service, not per client (a client can
change its address for free, so per-client accounting bounds nothing), and the client that
meets it has usually done nothing wrong: a participant sending its first order during
someone else's flood. ``429 Too Many Requests`` says "you sent too many"; ``503`` with
``Retry-After`` says "the service sheds this load now; come back then", which is what
happens, and it is the status clients already retry for ``chain_unavailable``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from market.http.errors import ChainBusy

DEFAULT_LOOKUPS_PER_SECOND = 20.0
"""Default rate of chain lookups for participants not seen yet (each one or two view calls:
about 5 ms on the embedded chain, a round trip on a remote node; 20 a second is a tenth of a
core at most, and more new participants a second than a neighbourhood market registers in a
day)."""
DEFAULT_LOOKUP_BURST = 40
"""Default bucket size: as many unknown participants at once (a restart, a VPP's first
batch) before the rate applies."""


class LookupBudget:
    """A thread-safe token bucket of chain lookups (see the module).

    ``clock``: monotonic seconds (``time.monotonic`` unless a test passes its own).
    """

    def __init__(
        self,
        rate_per_second: float = DEFAULT_LOOKUPS_PER_SECOND,
        burst: int = DEFAULT_LOOKUP_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("a lookup budget needs a positive rate and a burst of at least 1")
        self.rate = float(rate_per_second)
        self.burst = int(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()
        self.spent = 0
        """Lookups granted so far."""
        self.refused = 0
        """Lookups refused so far."""

    def _refill(self) -> None:
        now = self._clock()
        if now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = max(self._at, now)

    def try_take(self) -> bool:
        """Take one lookup if the budget has one; whether it did."""
        with self._lock:
            self._refill()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self.spent += 1
                return True
            self.refused += 1
            return False

    def retry_after_seconds(self) -> int:
        """Whole seconds (at least 1) until the budget holds a lookup again."""
        with self._lock:
            self._refill()
            missing = max(0.0, 1.0 - self._tokens)
        return max(1, math.ceil(missing / self.rate))

    def take(self, what: str) -> None:
        """Take one lookup, or raise :class:`ChainBusy` naming ``what`` was to be read."""
        if not self.try_take():
            raise self.refusal(what)

    def refusal(self, what: str) -> ChainBusy:
        """The :class:`ChainBusy` that refuses reading ``what`` (the budget is spent)."""
        wait = self.retry_after_seconds()
        return ChainBusy(
            f"chain-read budget for participants not seen yet is spent ({self.rate:g}/s, "
            f"burst {self.burst}): {what} not read; retry in {wait} s",
            retry_after_seconds=wait,
        )


__all__ = ["DEFAULT_LOOKUPS_PER_SECOND", "DEFAULT_LOOKUP_BURST", "LookupBudget"]
