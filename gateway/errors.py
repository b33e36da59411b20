"""Domain errors of the gateway, each with a stable machine code.

Hierarchy::

    GatewayError
    ├── AuthenticationError      401, WWW-Authenticate
    ├── PermissionDenied         403
    ├── NotFound                 404
    ├── BadRequest               400 (malformed path, header, body)
    │   └── PayloadTooLarge      413
    ├── Conflict                 409
    ├── RateLimited              429, Retry-After and RateLimit fields
    ├── UpstreamError            502
    │   ├── UpstreamRejectedIdentity  502 (the orchestrator refused the gateway's assertion)
    │   ├── UpstreamUnavailable  503
    │   └── UpstreamTimeout      504
    └── DependencyUnavailable    503 (Keycloak, Redis, database)

``gateway.problems`` maps them to RFC 9457 problem+json in one place.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of all gateway errors; ``code`` is stable, ``detail`` is safe to show clients."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code is not None:
            self.code = code


class AuthenticationError(GatewayError):
    status = 401
    code = "invalid_token"
    title = "Authentication required"


class PermissionDenied(GatewayError):
    status = 403
    code = "permission_denied"
    title = "Permission denied"


class NotFound(GatewayError):
    status = 404
    code = "not_found"
    title = "Not found"


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"
    title = "Bad request"


class PayloadTooLarge(BadRequest):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class Conflict(GatewayError):
    status = 409
    code = "conflict"
    title = "Conflict"


class RateLimited(GatewayError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(
        self, detail: str = "", *, retry_after: int, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.headers = headers or {}


class UpstreamError(GatewayError):
    status = 502
    code = "upstream_error"
    title = "Bad gateway"


class UpstreamRejectedIdentity(UpstreamError):
    """The orchestrator answered 401: it refused the gateway's identity assertion (clock skew,
    unknown signing key), not the client's credential, so no challenge reaches the client."""

    code = "upstream_rejected_identity"


class UpstreamUnavailable(UpstreamError):
    status = 503
    code = "upstream_unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str = "", *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"
    title = "Gateway timeout"


class DependencyUnavailable(GatewayError):
    status = 503
    code = "dependency_unavailable"
    title = "Service unavailable"
