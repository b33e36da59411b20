"""RFC 9457 problem details: the one place where errors become HTTP responses.

Every error the orchestrator answers with is ``application/problem+json``::

    {"type": "https://mro-gateway.dev/problems/<code>", "title": "...", "status": 404,
     "detail": "...", "code": "<code>", "request_id": "..."}

Both error families map here: ``orchestrator.errors.OrchestratorError`` (storage, identity,
idempotency, permissions; 409 ``idempotency_in_progress`` with ``Retry-After``, the seconds until
the running attempt counts as abandoned) and ``orchestrator.llm.LLMError`` (the model: 502, 503
with ``Retry-After`` when upstream said when, 504). Anything else becomes a 500 ``internal_error``
without a word about what went wrong; the traceback goes to the log only.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.errors import AuthenticationError, IdempotencyInProgress, OrchestratorError
from orchestrator.llm import LLMError, LLMUnavailable
from orchestrator.logs import current_request_id

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://mro-gateway.dev/problems/"
_CHALLENGE = 'MRO-Assertion realm="mro-orchestrator"'

logger = logging.getLogger(__name__)

Problem = OrchestratorError | LLMError


class ValidationFailed(OrchestratorError):
    """The request's parameters or body did not validate; ``errors`` says where."""

    status = 422
    code = "validation_failed"
    title = "Validation failed"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("The request did not validate.")
        self.errors = errors


def problem_type(code: str) -> str:
    """The stable ``type`` URI of a problem code."""
    return TYPE_BASE + code


def problem_body(exc: Problem) -> dict[str, Any]:
    """The problem object of exc (also the payload of a stream's ``error`` event)."""
    body: dict[str, Any] = {
        "type": problem_type(exc.code),
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
        "code": exc.code,
        "request_id": current_request_id(),
    }
    if isinstance(exc, ValidationFailed):
        body["errors"] = exc.errors
    return body


def problem_headers(exc: Problem) -> dict[str, str]:
    """The response fields an error carries besides its body (challenge, Retry-After)."""
    if isinstance(exc, AuthenticationError):
        return {"www-authenticate": _CHALLENGE}
    if isinstance(exc, LLMUnavailable | IdempotencyInProgress) and exc.retry_after is not None:
        return {"retry-after": str(exc.retry_after)}
    return {}


def problem_response(exc: Problem) -> Response:
    """exc as a problem+json response."""
    return Response(
        json.dumps(problem_body(exc), separators=(",", ":")),
        status_code=exc.status,
        headers=problem_headers(exc),
        media_type=CONTENT_TYPE,
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only where and what: the rejected input is not echoed back.
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]


def _from_http_exception(exc: StarletteHTTPException) -> OrchestratorError:
    codes = {404: "not_found", 405: "method_not_allowed"}
    error = OrchestratorError(
        "No such resource." if exc.status_code == 404 else "The request could not be processed.",
        code=codes.get(exc.status_code, "http_error"),
    )
    error.status = exc.status_code
    error.title = "Not found" if exc.status_code == 404 else "Request failed"
    return error


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error of app's routes into problem+json."""

    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OrchestratorError | LLMError)  # noqa: S101 - registered types
        if exc.status >= 500:
            logger.warning("answered %s %s: %s", exc.status, exc.code, exc.detail)
        return problem_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type
        return problem_response(ValidationFailed(_validation_errors(exc)))

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type
        response = problem_response(_from_http_exception(exc))
        if exc.status_code == 405 and exc.headers and "Allow" in exc.headers:
            response.headers["allow"] = exc.headers["Allow"]
        return response

    app.add_exception_handler(OrchestratorError, on_domain_error)
    app.add_exception_handler(LLMError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)


class CatchAll:
    """ASGI middleware: an unexpected exception becomes a bare 500 problem, logged, not raised.

    Sits inside the request-id middleware so the log line carries the id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                # Too late for a status code; the server closes the connection.
                return
            error = OrchestratorError("The server could not process the request.")
            await problem_response(error)(scope, receive, send)
