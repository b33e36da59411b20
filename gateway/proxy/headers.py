"""Which header fields cross the proxy, in each direction.

Towards the orchestrator the gateway removes

* hop-by-hop fields (RFC 9110 §7.6.1) and every field the ``Connection`` field names;
* the client's credentials (``Authorization``, ``Cookie``, ``X-API-Key``): the orchestrator
  trusts only the gateway's signed assertion;
* anything a client could use to claim an identity or steer a proxy: ``X-MRO-*``, ``X-User-*``,
  ``X-Remote-*``, ``X-Auth-*``, ``X-Forwarded-*``, ``Forwarded``, ``X-Real-IP``, fields naming
  roles, groups, permissions or principals, method and URL overrides;

and adds its own ``X-Forwarded-For/Proto/Host``, ``X-Request-ID`` and ``X-MRO-Assertion``.
Towards the client it removes hop-by-hop fields, ``Set-Cookie``, ``Server``, ``X-Powered-By``
and ``Date`` (the gateway's server writes its own). Names compare case-insensitively, and every
occurrence of a repeated field is removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

__all__ = ["ASSERTION_HEADER", "forward_request_headers", "forward_response_headers"]

ASSERTION_HEADER = "x-mro-assertion"

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_REQUEST_DROP = frozenset(
    {
        "authorization",
        "cookie",
        "x-api-key",
        "host",
        "expect",
        "forwarded",
        "via",
        "x-real-ip",
        "x-client-ip",
        "x-request-id",
        "remote-user",
        "x-user",
        "x-email",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-rewrite-url",
    }
)
_REQUEST_DROP_PREFIXES = (
    "x-mro-",
    "x-user-",
    "x-remote-",
    "x-auth-",
    "x-authenticated-",
    "x-forwarded-",
    "x-original-",
)
_REQUEST_DROP_WORDS = ("role", "group", "permission", "principal")
# Fields the gateway sets itself: an upstream must not widen CORS or weaken the page policy,
# the request id is the gateway's, and a challenge is only the gateway's to make (the client
# never talks to the orchestrator's authentication).
_RESPONSE_DROP = frozenset(
    {
        "set-cookie",
        "www-authenticate",
        "server",
        "x-powered-by",
        "date",
        "x-request-id",
        "strict-transport-security",
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "permissions-policy",
        "cross-origin-opener-policy",
        "cross-origin-resource-policy",
    }
)
_RESPONSE_DROP_PREFIXES = ("access-control-",)


@lru_cache(maxsize=1024)
def _request_field_allowed(name: str) -> bool:
    # Servers and frameworks downstream may fold "_" into "-" (X_MRO_Assertion would become
    # X-MRO-Assertion): refuse such names outright, as nginx does by default.
    if "_" in name:
        return False
    if name in HOP_BY_HOP or name in _REQUEST_DROP:
        return False
    if name.startswith(_REQUEST_DROP_PREFIXES):
        return False
    return not any(word in name for word in _REQUEST_DROP_WORDS)


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[str]:
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.decode("latin-1").split(","))
    return frozenset(tokens)


def forward_request_headers(
    headers: Sequence[tuple[bytes, bytes]], added: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The client's fields that may reach the orchestrator, followed by the gateway's own."""
    named = _connection_tokens(headers)
    kept: list[tuple[str, str]] = []
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if _request_field_allowed(name) and name not in named:
            kept.append((name, raw_value.decode("latin-1")))
    kept.extend(added)
    return kept


def forward_response_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The orchestrator's response fields that may reach the client (names lower-cased)."""
    headers = list(headers)
    named = _connection_tokens(headers)
    kept: list[tuple[bytes, bytes]] = []
    for raw_name, value in headers:
        name = raw_name.lower()
        text = name.decode("latin-1")
        if text in HOP_BY_HOP or text in _RESPONSE_DROP or text in named:
            continue
        if text.startswith(_RESPONSE_DROP_PREFIXES):
            continue
        kept.append((name, value))
    return kept
