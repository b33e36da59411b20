"""RFC 9457 problem details: the one place where errors become HTTP responses.

Every error the gateway answers with is ``application/problem+json``::

    {"type": "https://mro-gateway.dev/problems/<code>", "title": "...", "status": 401,
     "detail": "...", "code": "<code>", "request_id": "..."}

``type`` is a stable URI built from the machine ``code``; clients switch on ``code`` (or on
``type``), never on ``title`` or ``detail``. Unexpected exceptions become a 500
``internal_error`` without any detail of what went wrong.

Only the gateway's own ``AuthenticationError`` is a 401 with a ``WWW-Authenticate`` challenge:
it alone means "this credential is not accepted, sign in again". The orchestrator refusing the
gateway's assertion is ``UpstreamRejectedIdentity`` (502 ``upstream_rejected_identity``), with
no challenge, since a new sign-in cannot fix it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Send

from gateway.edge.request_context import current_context
from gateway.errors import (
    AuthenticationError,
    GatewayError,
    NotFound,
    RateLimited,
    UpstreamUnavailable,
)

__all__ = [
    "CONTENT_TYPE",
    "TYPE_BASE",
    "MethodNotAllowed",
    "ValidationFailed",
    "install",
    "problem_headers",
    "render",
    "send_problem",
]

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://mro-gateway.dev/problems/"
# Code of the 401 for a request without any credential: no ``error`` parameter in the challenge.
CREDENTIALS_MISSING = "authentication_required"
_REALM = 'Bearer realm="mro"'

logger = logging.getLogger(__name__)


class MethodNotAllowed(GatewayError):
    """The path exists but not for this method; ``allow`` lists the methods that do."""

    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"

    def __init__(self, allow: Iterable[str], detail: str = "") -> None:
        super().__init__(detail)
        self.allow = sorted(allow)


class ValidationFailed(GatewayError):
    """The request's parameters or body did not validate; ``errors`` says where."""

    status = 422
    code = "validation_failed"
    title = "Validation failed"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("The request did not validate.")
        self.errors = errors


def problem_headers(exc: GatewayError) -> list[tuple[str, str]]:
    """The response fields an error carries besides its body (challenge, Retry-After, Allow)."""
    headers: list[tuple[str, str]] = []
    if isinstance(exc, AuthenticationError):
        challenge = _REALM
        if exc.code != CREDENTIALS_MISSING:
            challenge += ', error="invalid_token"'
        headers.append(("www-authenticate", challenge))
    elif isinstance(exc, RateLimited):
        headers.append(("retry-after", str(exc.retry_after)))
        headers.extend((name.lower(), value) for name, value in exc.headers.items())
    elif isinstance(exc, UpstreamUnavailable) and exc.retry_after is not None:
        headers.append(("retry-after", str(exc.retry_after)))
    elif isinstance(exc, MethodNotAllowed):
        headers.append(("allow", ", ".join(exc.allow)))
    return headers


def render(exc: GatewayError, request_id: str | None) -> bytes:
    """The problem+json body of exc."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + exc.code,
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
        "code": exc.code,
        "request_id": request_id,
    }
    if isinstance(exc, ValidationFailed):
        body["errors"] = exc.errors
    return json.dumps(body, separators=(",", ":")).encode()


async def send_problem(send: Send, exc: GatewayError, request_id: str | None) -> None:
    """Answer a plain ASGI request with exc as problem+json."""
    body = render(exc, request_id)
    headers = [
        (b"content-type", CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *((name.encode(), value.encode()) for name, value in problem_headers(exc)),
    ]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def problem_response(exc: GatewayError, request_id: str | None) -> Response:
    """exc as a Starlette response (for FastAPI's exception handlers)."""
    return Response(
        render(exc, request_id),
        status_code=exc.status,
        headers=dict(problem_headers(exc)),
        media_type=CONTENT_TYPE,
    )


def _request_id(request: Request) -> str | None:
    context = current_context(request.scope)
    return None if context is None else context.request_id


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only where and what: the rejected input may hold secrets and is not echoed.
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]


def _from_http_exception(exc: StarletteHTTPException) -> GatewayError:
    if exc.status_code == 404:
        return NotFound("No such resource.")
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return MethodNotAllowed([m.strip() for m in allow.split(",") if m.strip()])
    error = GatewayError("The request could not be processed.", code="http_error")
    error.status = exc.status_code
    error.title = "Request failed"
    return error


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error of app's own routes into problem+json."""

    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)  # noqa: S101 - registered for this type only
        return problem_response(exc, _request_id(request))

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type
        return problem_response(ValidationFailed(_validation_errors(exc)), _request_id(request))

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type
        return problem_response(_from_http_exception(exc), _request_id(request))

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
