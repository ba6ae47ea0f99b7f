"""The settlement loop's thread: :meth:`SettlementService.tick` every few seconds, with
backoff while the chain is down.

``wattledger serve`` and ``wattledger settle --watch`` run a :class:`SettlementRunner`; tests
and simulations call :meth:`~settlement.service.SettlementService.tick` themselves after
moving chain time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

from chain.errors import ChainUnavailable
from settlement.service import SettlementService

log = logging.getLogger("wattledger.settle")


def backoff_delays(
    first_seconds: float = 0.5, factor: float = 2.0, cap_seconds: float = 30.0
) -> Iterator[float]:
    """Exponential backoff delays: ``first, first*factor, ...`` capped at ``cap_seconds``."""
    delay = first_seconds
    while True:
        yield delay
        delay = min(delay * factor, cap_seconds)


class SettlementRunner:
    """Calls :meth:`SettlementService.tick` every ``poll_seconds`` on a thread of its own.

    When the chain stops answering it waits with exponential backoff (up to
    ``max_backoff_seconds``) and says so once; when it answers again it resumes from chain
    state. ``before_tick`` runs before each tick (``wattledger serve`` uses it to keep the
    embedded chain's clock moving); ``on_progress`` receives each progress line.
    """

    def __init__(
        self,
        service: SettlementService,
        poll_seconds: float = 2.0,
        *,
        max_backoff_seconds: float = 30.0,
        on_progress: Callable[[str], None] | None = None,
        before_tick: Callable[[], None] | None = None,
    ) -> None:
        self.service = service
        self.poll_seconds = poll_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.on_progress = on_progress or (lambda line: log.info("%s", line))
        service.on_progress = self.on_progress
        self.before_tick = before_tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run the loop on a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="settlement", daemon=True)
        self._thread.start()

    def stop(self, timeout_seconds: float = 30.0) -> None:
        """Ask the loop to stop after the current transaction, and wait for it."""
        self._stop.set()
        self.service.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)

    def run(self) -> None:
        """The loop itself, in the calling thread, until :meth:`stop`."""
        delays = None
        unavailable = False
        while not self._stop.is_set():
            try:
                if self.before_tick is not None:
                    self.before_tick()
                self.service.tick()  # reports progress through on_progress as it goes
                if unavailable:
                    log.warning("the chain answers again; settlement resumed")
                unavailable, delays, wait = False, None, self.poll_seconds
            except Exception as err:
                delays = delays or backoff_delays(self.poll_seconds, 2.0, self.max_backoff_seconds)
                wait = next(delays)
                if isinstance(err, ChainUnavailable):
                    if not unavailable:
                        log.warning("the chain is unavailable (%s); waiting for it", err.message)
                    unavailable = True
                else:
                    log.exception("settlement tick failed; retrying in %.1f s", wait)
            self._stop.wait(wait)


__all__ = ["SettlementRunner", "backoff_delays"]
