"""Group commit: the orders of many requests stored in one durable transaction.

``POST /orders`` and ``POST /orders:batch`` check orders on the event loop, then hand them
to a :class:`GroupCommitter`, which writes everything that queued up meanwhile in one SQLite
transaction (``synchronous=FULL``: one fsync for the group) on a worker thread and answers
only after that transaction committed, so a ``201`` always means durably stored.
"""

from __future__ import annotations

import asyncio

from market.intake import Prepared
from market.service import MarketService


class GroupCommitter:
    """Stores prepared orders from many requests in one durable transaction per round.

    ``inline``: write each request's orders on the event loop itself instead of on a worker
    thread. Only for a client in the same process that sends one request at a time (the
    simulation): nothing can queue up behind a write then, and the handover to a worker
    thread and back is all a thread would add (about a quarter of an order's time there).
    A server keeps the default, so the loop never waits for a disk.
    """

    def __init__(self, service: MarketService, *, inline: bool = False) -> None:
        self.service = service
        self.inline = inline
        self._queue: list[tuple[Prepared, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def commit(self, prepared: Prepared) -> None:
        """Return once ``prepared`` is durably stored; raise if storing failed."""
        if self.inline:
            try:
                self.service.commit_prepared([prepared])
            except BaseException:
                self.service.abort_prepared([prepared])
                raise
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((prepared, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        await asyncio.shield(future)

    async def _run(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            try:
                await asyncio.to_thread(self.service.commit_prepared, [p for p, _ in group])
            except BaseException as err:
                self.service.abort_prepared([p for p, _ in group])
                for _, future in group:
                    if not future.done():
                        future.set_exception(err)
                if not isinstance(err, Exception):
                    raise
            else:
                for _, future in group:
                    if not future.done():
                        future.set_result(None)


__all__ = ["GroupCommitter"]
