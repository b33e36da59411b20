"""Server-sent events: the wire format, and a response that always finishes its stream."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

MEDIA_TYPE = "text/event-stream"


def wants_event_stream(accept: str | None) -> bool:
    """True when the Accept field asks for server-sent events."""
    if not accept:
        return False
    return any(part.split(";")[0].strip().lower() == MEDIA_TYPE for part in accept.split(","))


def encode_event(event: str, data: dict[str, Any]) -> bytes:
    """One SSE event: ``event: <name>`` and a single-line JSON ``data`` field."""
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"event: {event}\ndata: {payload}\n\n".encode()


class EventStreamResponse(StreamingResponse):
    """A streamed SSE response whose ``on_close`` runs however the stream ends.

    Starlette abandons the body iterator when the client disconnects; this response closes it
    and then awaits ``on_close`` under a shield, so work such as storing a partial answer
    completes even while the request is being cancelled.
    """

    media_type = MEDIA_TYPE

    def __init__(
        self,
        events: AsyncGenerator[bytes, None],
        *,
        on_close: Callable[[], Awaitable[None]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            events,
            headers={"cache-control": "no-store", "x-accel-buffering": "no", **(headers or {})},
        )
        self._events = events
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._events.aclose()
                if self._on_close is not None:
                    await self._on_close()
