"""CORS for an allow-list of origins only (``cors_allowed_origins``); none by default.

A preflight from an allowed origin for a method the path accepts gets 204 with the CORS fields;
any other preflight gets a 403 problem. Actual requests from an allowed origin get
``Access-Control-Allow-Origin`` (the origin itself, with credentials); from other origins they
get no CORS fields, so browsers refuse to show the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from starlette.datastructures import Headers
from starlette.types import Send

from gateway.errors import GatewayError

__all__ = ["CorsDenied", "CorsPolicy"]

_ALLOWED_HEADERS = (
    "authorization, content-type, x-api-key, x-request-id, idempotency-key, last-event-id"
)
_EXPOSED_HEADERS = "x-request-id, ratelimit, ratelimit-policy, retry-after, mro-budget-warning"
_MAX_AGE = "600"


class CorsDenied(GatewayError):
    status = 403
    code = "cors_denied"
    title = "Cross-origin request refused"


class CorsPolicy:
    """The allowed origins and the fields that go with them."""

    def __init__(self, origins: Iterable[str]) -> None:
        self._origins = frozenset(origin.rstrip("/") for origin in origins)

    def __bool__(self) -> bool:
        return bool(self._origins)

    @staticmethod
    def is_preflight(method: str, headers: Headers) -> bool:
        return (
            method == "OPTIONS"
            and "origin" in headers
            and "access-control-request-method" in headers
        )

    def response_fields(self, headers: Headers) -> list[tuple[bytes, bytes]]:
        """Fields for an actual request's response (empty unless the origin is allowed)."""
        origin = headers.get("origin")
        if origin is None or origin not in self._origins:
            return []
        return [
            (b"access-control-allow-origin", origin.encode()),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-expose-headers", _EXPOSED_HEADERS.encode()),
            (b"vary", b"Origin"),
        ]

    async def preflight(
        self, headers: Headers, path: str, allowed_methods: Callable[[str], set[str]], send: Send
    ) -> None:
        """Answer a preflight. Raises CorsDenied for an origin or method not allowed."""
        origin = headers.get("origin", "")
        method = headers.get("access-control-request-method", "").upper()
        methods = allowed_methods(path)
        if origin not in self._origins or method not in methods:
            raise CorsDenied("This origin or method may not call this resource.")
        fields = [
            (b"access-control-allow-origin", origin.encode()),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-allow-methods", ", ".join(sorted(methods)).encode()),
            (b"access-control-allow-headers", _ALLOWED_HEADERS.encode()),
            (b"access-control-max-age", _MAX_AGE.encode()),
            (b"vary", b"Origin"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": fields})
        await send({"type": "http.response.body", "body": b""})
