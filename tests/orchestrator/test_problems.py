"""Errors become RFC 9457 problem+json in one place; unexpected ones reveal nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import StreamingResponse

from orchestrator.errors import IdempotencyInProgress, StorageUnavailable
from orchestrator.llm import LLMBadResponse, LLMError, LLMRejected, LLMTimeout, LLMUnavailable
from orchestrator.logs import RequestIdMiddleware
from orchestrator.problems import CONTENT_TYPE, CatchAll, install


def app_raising(error: BaseException) -> FastAPI:
    app = FastAPI()
    install(app)
    app.add_middleware(CatchAll)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/boom")
    async def boom() -> None:
        raise error

    @app.get("/late")
    async def late() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"first part"
            raise RuntimeError("after the headers")

        return StreamingResponse(body())

    return app


async def get(app: FastAPI, path: str = "/boom") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers={"x-request-id": "test-request-0001"})


@pytest.mark.parametrize(
    ("error", "status", "code", "retry_after"),
    [
        (LLMUnavailable("busy", retry_after=5), 503, "llm_unavailable", "5"),
        (LLMUnavailable("busy"), 503, "llm_unavailable", None),
        (LLMTimeout(), 504, "llm_timeout", None),
        (LLMBadResponse(), 502, "llm_bad_response", None),
        (LLMRejected(), 502, "llm_rejected", None),
        (LLMError("odd", code="llm_custom"), 502, "llm_custom", None),
        (StorageUnavailable(), 503, "storage_unavailable", None),
        (IdempotencyInProgress(retry_after=42), 409, "idempotency_in_progress", "42"),
        (IdempotencyInProgress(), 409, "idempotency_in_progress", None),
    ],
)
async def test_domain_errors_map_to_status_code_and_retry_after(
    error: Exception, status: int, code: str, retry_after: str | None
) -> None:
    """Model, storage and idempotency errors answer their status, code and Retry-After if known."""
    response = await get(app_raising(error))
    assert response.status_code == status
    assert response.headers["content-type"] == CONTENT_TYPE
    assert response.headers.get("retry-after") == retry_after
    body = response.json()
    assert body["type"] == f"https://mro-gateway.dev/problems/{code}"
    assert (body["status"], body["code"], body["request_id"]) == (
        status,
        code,
        "test-request-0001",
    )
    assert set(body) == {"type", "title", "status", "detail", "code", "request_id"}


async def test_unexpected_error_is_a_bare_500(caplog: pytest.LogCaptureFixture) -> None:
    """An unexpected exception answers a generic 500; the details go to the log only."""
    with caplog.at_level(logging.ERROR, logger="orchestrator.problems"):
        response = await get(app_raising(RuntimeError("password=hunter2 in db url")))
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "hunter2" in caplog.text


async def test_error_after_the_response_started_is_logged_not_resent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failure after the headers went out cannot change the status; it is only logged."""
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}  # pragma: no cover - never reached

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/late", "headers": [],
             "query_string": b"", "asgi": {"spec_version": "2.4"}}  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="orchestrator.problems"):
        await app_raising(RuntimeError("unused"))(scope, receive, send)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [200]
    assert sent[-1]["body"] == b"first part"
    assert "after the headers" in caplog.text


async def test_other_http_errors_keep_their_status() -> None:
    """Framework HTTP errors other than 404/405 keep their status under a generic code."""
    response = await get(app_raising(HTTPException(status_code=418)))
    assert response.status_code == 418
    assert response.json()["code"] == "http_error"
