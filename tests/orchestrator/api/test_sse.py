"""Server-sent events: Accept negotiation, the wire format, and a stream that always finishes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, MutableMapping
from typing import Any

import pytest

from orchestrator.api.sse import EventStreamResponse, encode_event, wants_event_stream


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("text/event-stream", True),
        ("application/json, text/event-stream;q=0.9", True),
        ("TEXT/EVENT-STREAM", True),
        (None, False),
        ("", False),
        ("application/json", False),
        ("text/event-streams", False),
        ("*/*", False),
    ],
)
def test_event_stream_is_chosen_only_when_asked_for(accept: str | None, expected: bool) -> None:
    """Only an Accept field naming text/event-stream asks for a stream."""
    assert wants_event_stream(accept) is expected


def test_events_are_one_json_line_each() -> None:
    """An event is its name and one data line of JSON; newlines in text stay escaped."""
    encoded = encode_event("delta", {"content": "line one\nline two, ü ok"})
    assert encoded == ('event: delta\ndata: {"content":"line one\\nline two, ü ok"}\n\n'.encode())


async def test_disconnect_closes_the_stream_and_runs_on_close() -> None:
    """When the client goes away mid-stream the generator is closed and on_close still runs."""
    closed: list[str] = []
    sent: list[MutableMapping[str, Any]] = []

    async def endless() -> AsyncGenerator[bytes, None]:
        try:
            while True:
                yield b"event: delta\ndata: {}\n\n"
                await asyncio.sleep(0.01)
        finally:
            closed.append("generator")

    async def on_close() -> None:
        await asyncio.sleep(0)
        closed.append("on_close")

    body_sent = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await body_sent.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            body_sent.set()

    response = EventStreamResponse(endless(), on_close=on_close)
    scope = {"type": "http", "asgi": {"spec_version": "2.3"}}
    await asyncio.wait_for(response(scope, receive, send), timeout=5)
    assert closed == ["generator", "on_close"]
    assert sent[0]["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]
