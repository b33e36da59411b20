"""The body of an LLM request: read once, what the token estimate needs, handed on to the proxy.

The body is small (the body limit applies first) and read whole before the request goes upstream,
so that the estimate can be reserved; a body without ``max_tokens`` gets the policy's default
written into it, so that the answer cannot run past the estimate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.types import Message, Receive, Scope

from gateway.proxy import ClientDisconnected

__all__ = ["Question", "parse_question", "read_body", "replay", "with_body"]


@dataclass(frozen=True, slots=True)
class Question:
    """What the estimate needs from a message body, and the body to forward."""

    body: bytes
    agent: str | None
    chars: int
    max_tokens: int
    rewritten: bool


def parse_question(body: bytes, default_max_tokens: int) -> Question:
    """What the estimate needs from a message body; adds max_tokens when the body has none."""
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):
        # Not JSON, or nested past the parser's depth: the orchestrator refuses it as 422.
        data = None
    if not isinstance(data, dict):
        # The orchestrator will refuse it (422); reserve as for its size.
        return Question(body, None, len(body), default_max_tokens, False)
    content = data.get("content")
    chars = len(content) if isinstance(content, str) else len(body)
    agent = data.get("agent") if isinstance(data.get("agent"), str) else None
    max_tokens = data.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0:
        return Question(body, agent, chars, max_tokens, False)
    if max_tokens is not None:
        return Question(body, agent, chars, default_max_tokens, False)
    data["max_tokens"] = default_max_tokens
    rewritten = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Question(rewritten, agent, chars, default_max_tokens, True)


async def read_body(receive: Receive) -> bytes:
    """The whole request body. Raises ClientDisconnected when the client leaves first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def with_body(scope: Scope, body: bytes) -> Scope:
    """The scope with its length headers describing body (after a rewrite)."""
    headers = [
        (name, value)
        for name, value in scope["headers"]
        if name not in (b"content-length", b"transfer-encoding")
    ]
    headers.append((b"content-length", str(len(body)).encode()))
    return {**scope, "headers": headers}


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands over the body read earlier, then the client's own messages."""
    pending = True

    async def receive_again() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again
