"""The market API as the simulation's driver uses it: one async HTTP client, used in order.

:class:`MarketApi` reaches an ASGI app in this process (:func:`asgi_request`, no socket) or
a market over HTTP; it submits signed orders one at a time and meter readings in batches.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import httpx

from market.client import MarketApiError

T = TypeVar("T")

READINGS_PER_REQUEST = 1_000
"""Most readings :meth:`MarketApi.post_readings` sends in one ``POST /meter-readings:batch``:
the settlement service's default ``max_intake_readings`` (a bigger batch is refused, and
its readings then go one by one)."""


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


__all__ = ["READINGS_PER_REQUEST", "MarketApi", "asgi_request"]
