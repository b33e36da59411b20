"""Request bodies are capped, declared or streamed."""

from __future__ import annotations

import pytest
from starlette.types import Message, Receive

from gateway.edge.body_limit import limit_body
from gateway.errors import BadRequest, PayloadTooLarge


def _receiver(*chunks: bytes) -> Receive:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1}
        for n, chunk in enumerate(chunks)
    ]

    async def receive() -> Message:
        return messages.pop(0)

    return receive


def test_declared_length_over_the_limit_fails_at_once() -> None:
    """A Content-Length above the limit is refused before any byte is read."""
    scope = {"headers": [(b"content-length", b"11")]}
    with pytest.raises(PayloadTooLarge):
        limit_body(scope, _receiver(b""), 10)


def test_conflicting_lengths_are_a_bad_request() -> None:
    """Two different Content-Length values are refused."""
    scope = {"headers": [(b"content-length", b"1"), (b"content-length", b"2")]}
    with pytest.raises(BadRequest) as caught:
        limit_body(scope, _receiver(b""), 10)
    assert caught.value.code == "bad_content_length"


async def test_streamed_body_is_counted() -> None:
    """Chunks pass until their sum exceeds the limit."""
    receive = limit_body({"headers": []}, _receiver(b"12345", b"67890", b"x"), 10)
    assert (await receive())["body"] == b"12345"
    assert (await receive())["body"] == b"67890"
    with pytest.raises(PayloadTooLarge):
        await receive()
