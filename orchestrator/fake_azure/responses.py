"""ASGI responses that misbehave on purpose: paced streams, pauses and cut connections.

Returning from an ASGI app without the final body message makes the server close the
connection, which a client sees as a truncated body: that is how a cut is played.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class ScriptedStream(Response):
    """Server-sent events sent one by one; optionally paused once and/or cut before an index."""

    media_type = "text/event-stream"

    def __init__(
        self,
        events: Sequence[bytes],
        *,
        chunk_delay: float = 0.0,
        pause_before: int | None = None,
        pause: float = 0.0,
        cut_before: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # Response.__init__ would add a Content-Length for an empty body.
        self.status_code = 200
        self.background = None
        self.events = list(events)
        self.chunk_delay = chunk_delay
        self.pause_before = pause_before
        self.pause = pause
        self.cut_before = cut_before
        self.init_headers({"cache-control": "no-cache", **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            for index, event in enumerate(self.events):
                if index == self.cut_before:
                    return
                if index == self.pause_before:
                    await asyncio.sleep(self.pause)
                await send({"type": "http.response.body", "body": event, "more_body": True})
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            return  # the client went away


class CutBody(Response):
    """Announces the whole body's length, sends its first half, then drops the connection."""

    media_type = "application/json"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytes(self.body)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            half = body[: len(body) // 2]
            await send({"type": "http.response.body", "body": half, "more_body": True})
        except OSError:
            return
