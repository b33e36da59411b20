"""Cap request bodies: refuse a too-large ``Content-Length`` at once, count streamed bytes."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope

from gateway.errors import BadRequest, PayloadTooLarge

__all__ = ["limit_body"]


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body exceeds {limit} bytes.")


def _declared_length(scope: Scope) -> int | None:
    lengths = [value for name, value in scope["headers"] if name == b"content-length"]
    if not lengths:
        return None
    if len(set(lengths)) != 1 or not lengths[0].isdigit():
        raise BadRequest("Content-Length is malformed.", code="bad_content_length")
    return int(lengths[0])


def limit_body(scope: Scope, receive: Receive, limit: int) -> Receive:
    """A receive that raises PayloadTooLarge once the body passes limit bytes.

    Raises PayloadTooLarge right away when Content-Length already says so, and BadRequest when
    Content-Length is malformed or repeated with different values.
    """
    declared = _declared_length(scope)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    received = 0

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large(limit)
        return message

    return limited
