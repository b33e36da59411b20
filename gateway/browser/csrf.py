"""CSRF defence for requests authenticated by the session cookie.

``SameSite=Lax`` already keeps the cookie off cross-site POSTs in current browsers; this module
adds two checks that do not depend on the browser's cookie policy. An unsafe method (anything but
GET, HEAD, OPTIONS, TRACE) with the session cookie needs

1. an ``Origin`` field (or, without one, a ``Referer``) naming the gateway's own origin
   (``public_url``), and
2. an ``X-CSRF-Token`` field equal to the session's CSRF token (random, 256 bits, made at login
   and bound to that session; the browser reads it from ``GET /auth/session``), compared in
   constant time.

Every failure raises ``CsrfFailed`` (403, code ``csrf_failed``) with a reason: ``origin``,
``token``, ``session`` (the session ended before the check) or ``cross_site`` (a cross-site
logout link). Bearer-token and API-key requests are not checked: a browser never adds those
credentials on its own.

Refusals are audited as ``auth.csrf_failed`` (outcome ``denied``): the session's subject, the
route, the reason, the request id and client address, the method and the claimed origin. Never the
token, the cookie, or the path and query of a ``Referer`` (they can carry secrets).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any, Final, Literal, Protocol
from urllib.parse import urlsplit

from gateway.audit.events import AuditEvent, AuditSink
from gateway.browser.sessions import read_cookie
from gateway.edge.request_context import RequestContext
from gateway.errors import PermissionDenied
from gateway.identity import AuthMethod, Identity

__all__ = [
    "CSRF_FAILED",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "CsrfFailed",
    "CsrfGuard",
    "CsrfReason",
    "check_csrf",
    "check_origin",
    "origin_of",
    "refusal_details",
]

CSRF_HEADER: Final = "x-csrf-token"
CSRF_FAILED: Final = "auth.csrf_failed"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# A client-chosen Origin is recorded, but never more of it than a real origin could need.
_MAX_RECORDED_ORIGIN: Final = 200

CsrfReason = Literal["origin", "token", "session", "cross_site"]


class CsrfFailed(PermissionDenied):
    """A cookie-authenticated request failed the CSRF defence; ``reason`` says which check."""

    code = "csrf_failed"

    def __init__(self, detail: str, reason: CsrfReason) -> None:
        super().__init__(detail)
        self.reason: CsrfReason = reason


class HasCsrfToken(Protocol):
    @property
    def csrf_token(self) -> str: ...


class SessionLookup(Protocol):
    """Finds the session a request's cookie names (``gateway.browser.sessions.SessionManager``)."""

    async def current(self, session_id: str) -> HasCsrfToken | None: ...


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of url, lower-cased, default port dropped; None if it has none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _field(headers: Mapping[str, str], name: str) -> str | None:
    getlist = getattr(headers, "getlist", None)
    if getlist is not None:
        values: list[str] = getlist(name)
        return values[0] if len(values) == 1 else None
    return headers.get(name)


def check_origin(headers: Mapping[str, str], allowed_origin: str) -> None:
    """Raise CsrfFailed (reason ``origin``) unless Origin (or Referer) is allowed_origin."""
    origin = _field(headers, "origin")
    source = origin if origin is not None and origin != "null" else _field(headers, "referer")
    expected = origin_of(allowed_origin)
    if source is None or expected is None or origin_of(source) != expected:
        raise CsrfFailed("The request does not come from this site.", "origin")


def check_csrf(
    method: str, headers: Mapping[str, str], session: HasCsrfToken, *, allowed_origin: str
) -> None:
    """Check a cookie-authenticated request; raise CsrfFailed (origin, token) on failure."""
    if method.upper() in SAFE_METHODS:
        return
    check_origin(headers, allowed_origin)
    token = _field(headers, CSRF_HEADER)
    if not token or not hmac.compare_digest(
        token.encode("utf-8", "surrogatepass"), session.csrf_token.encode()
    ):
        raise CsrfFailed("The CSRF token is missing or wrong.", "token")


def refusal_details(method: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """The audit details of a refused request: its method and the origin it claims.

    The origin is the Origin field (cut to 200 characters), else the origin of Referer: never the
    Referer's path or query, which can hold secrets.
    """
    origin = _field(headers, "origin")
    if origin is not None:
        claimed: str | None = origin[:_MAX_RECORDED_ORIGIN]
    else:
        referer = _field(headers, "referer")
        claimed = origin_of(referer) if referer else None
    return {"method": method.upper(), "origin": claimed}


class CsrfGuard:
    """The pipeline's CSRF step: checks session-authenticated unsafe requests."""

    def __init__(self, sessions: SessionLookup, cookie_name: str, allowed_origin: str) -> None:
        self._sessions = sessions
        self._cookie_name = cookie_name
        self._allowed_origin = allowed_origin

    async def check(
        self,
        method: str,
        headers: Mapping[str, str],
        identity: Identity,
        context: RequestContext | None = None,
        audit: AuditSink | None = None,
    ) -> None:
        """Check a session request; refusals are reported to audit as ``auth.csrf_failed``.

        Raises CsrfFailed (403 csrf_failed) for a session request failing the checks.
        """
        if identity.method is not AuthMethod.SESSION or method.upper() in SAFE_METHODS:
            return
        try:
            session_id = read_cookie(headers, self._cookie_name)
            session = await self._sessions.current(session_id) if session_id else None
            if session is None:
                raise CsrfFailed("The session has ended.", "session")
            check_csrf(method, headers, session, allowed_origin=self._allowed_origin)
        except CsrfFailed as exc:
            if audit is not None:
                audit.emit(_refusal(exc, method, headers, identity, context))
            raise


def _refusal(
    exc: CsrfFailed,
    method: str,
    headers: Mapping[str, str],
    identity: Identity,
    context: RequestContext | None,
) -> AuditEvent:
    return AuditEvent(
        action=CSRF_FAILED,
        outcome="denied",
        actor=identity.subject,
        target=context.route if context else None,
        reason=exc.reason,
        request_id=context.request_id if context else None,
        client_ip=context.client_ip if context else None,
        details=refusal_details(method, headers),
    )
