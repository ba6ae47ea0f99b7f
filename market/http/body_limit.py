"""The request body size limit: larger bodies are refused with ``body_too_large`` (413).

:class:`BodyLimit` wraps an app (the market API and the settlement API both); the order
intake's fast path (:mod:`market.http.intake`), which runs before it, applies the same limit
with the same answer (:func:`body_too_large`).
"""

from __future__ import annotations

from market.http.asgi import ASGIApp, Message, Receive, Scope, Send
from market.http.errors import BodyTooLarge
from market.http.problems import problem_response

DEFAULT_MAX_BODY_BYTES = 1 << 20
"""Largest request body accepted (1 MiB: a batch of 1,000 orders is about 450 KiB)."""


def body_too_large(max_bytes: int) -> BodyTooLarge:
    """The refusal of a body over ``max_bytes`` bytes."""
    return BodyTooLarge(f"the body exceeds {max_bytes} bytes")


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` with a 413 problem, streamed or not."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = 0
                if length > self.max_bytes:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise body_too_large(self.max_bytes)
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(body_too_large(self.max_bytes), scope.get("path"))
        await response(scope, receive, send)


__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyLimit", "body_too_large"]
