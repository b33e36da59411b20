"""The body of an LLM request: read once, what the token estimate needs, handed on to the proxy.

The body is small (the body limit applies first) and read whole before the request goes upstream,
so that the estimate can be reserved. ``max_tokens`` follows the orchestrator's rule exactly:
absent or null (the gateway writes the policy's default into the body, so that the answer cannot
run past the estimate), or a JSON integer (not a boolean, float or string) from 1 to
``MAX_COMPLETION_TOKENS``. Anything else is refused with 422 before anything is reserved, so the
gateway never reserves for one value while the orchestrator answers with another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.types import Message, Receive, Scope

from gateway.budgets.config import MAX_COMPLETION_TOKENS
from gateway.problems import ValidationFailed
from gateway.proxy.forward import ClientDisconnected

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
    """What the estimate needs from a message body; writes the default max_tokens into a body
    without one (or with null).

    Raises ValidationFailed (422) when max_tokens is anything else than a JSON integer from 1 to
    MAX_COMPLETION_TOKENS.
    """
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):
        # Not JSON, or past the parser's limits (nesting depth, 4,300-digit integers): the
        # orchestrator refuses it too, and nothing is charged for a refusal.
        data = None
    if not isinstance(data, dict):
        # The orchestrator will refuse it (422); reserve as for its size.
        return Question(body, None, len(body), default_max_tokens, False)
    content = data.get("content")
    chars = len(content) if isinstance(content, str) else len(body)
    agent = data.get("agent") if isinstance(data.get("agent"), str) else None
    max_tokens = data.get("max_tokens")
    if max_tokens is not None:
        return Question(body, agent, chars, _check_max_tokens(max_tokens), False)
    data["max_tokens"] = default_max_tokens
    # ASCII escapes: a lone surrogate the client escaped stays an escape, never invalid UTF-8.
    rewritten = json.dumps(data, separators=(",", ":")).encode()
    return Question(rewritten, agent, chars, default_max_tokens, True)


def _check_max_tokens(value: object) -> int:
    # The orchestrator's strict pydantic field, in the same words: an int (a bool is not one) in
    # range, or a 422 naming the field.
    if type(value) is not int:
        raise _invalid("int_type", "Input should be a valid integer")
    if value < 1:
        raise _invalid("greater_than_equal", "Input should be greater than or equal to 1")
    if value > MAX_COMPLETION_TOKENS:
        raise _invalid(
            "less_than_equal", f"Input should be less than or equal to {MAX_COMPLETION_TOKENS}"
        )
    return value


def _invalid(kind: str, message: str) -> ValidationFailed:
    # The shape of the orchestrator's own validation errors; the value is not echoed.
    return ValidationFailed([{"loc": ["body", "max_tokens"], "msg": message, "type": kind}])


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
