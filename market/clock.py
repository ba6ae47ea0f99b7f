"""Time for the market service: the wall clock, or a simulated clock a simulation advances.

The service asks a :class:`Clock` for the current time (integer Unix seconds) to decide
whether an order has expired and whether an interval's gate has closed. ``wattledger serve``
uses :class:`SystemClock`; tests and simulations use :class:`SimulatedClock` and call
``service.tick()`` after advancing it, so gate closure happens exactly when they say.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of the current time in whole Unix seconds."""

    def now(self) -> int:
        """The current time in Unix seconds."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def now(self) -> int:
        """``time.time()`` rounded down to whole seconds."""
        return int(time.time())


class SimulatedClock:
    """A clock that only moves when told to; safe to share between threads."""

    def __init__(self, start_seconds: int = 0) -> None:
        self._now = int(start_seconds)
        self._lock = threading.Lock()

    def now(self) -> int:
        """The simulated time in Unix seconds."""
        with self._lock:
            return self._now

    def advance(self, seconds: int) -> int:
        """Move forward by ``seconds`` (>= 0); return the new time."""
        if seconds < 0:
            raise ValueError("a simulated clock cannot go backwards")
        with self._lock:
            self._now += int(seconds)
            return self._now

    def set(self, now_seconds: int) -> None:
        """Jump to ``now_seconds``, which must not be earlier than the current time."""
        with self._lock:
            if now_seconds < self._now:
                raise ValueError("a simulated clock cannot go backwards")
            self._now = int(now_seconds)


__all__ = ["Clock", "SimulatedClock", "SystemClock"]
