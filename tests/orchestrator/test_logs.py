"""JSON logs carrying the request id; request ids taken from X-Request-ID when well formed."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from orchestrator.logs import (
    JSONFormatter,
    RequestIdMiddleware,
    configure_logging,
    current_request_id,
    set_request_id,
)


def _app() -> RequestIdMiddleware:
    async def echo(request: Request) -> PlainTextResponse:
        logging.getLogger("orchestrator.test").info("handling")
        return PlainTextResponse(current_request_id() or "")

    return RequestIdMiddleware(Starlette(routes=[Route("/", echo)]))


async def call(headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/", headers=headers)


async def test_well_formed_request_id_is_kept_and_echoed() -> None:
    """A well-formed X-Request-ID is used for the request and echoed back."""
    response = await call({"x-request-id": "gateway-req-42"})
    assert response.text == response.headers["x-request-id"] == "gateway-req-42"


@pytest.mark.parametrize("incoming", ["short", "has spaces in it", "a" * 200, "bad\\nline1234"])
async def test_malformed_request_id_is_replaced(incoming: str) -> None:
    """Ids that are too short, too long or carry odd characters are replaced by a fresh one."""
    response = await call({"x-request-id": incoming})
    assert response.headers["x-request-id"] != incoming
    assert len(response.headers["x-request-id"]) == 32


async def test_every_request_is_logged_with_status_and_duration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One access log line per request carries the status and the duration."""
    with caplog.at_level(logging.INFO, logger="orchestrator.access"):
        await call({"x-request-id": "gateway-req-43"})
    record = next(r for r in caplog.records if r.name == "orchestrator.access")
    assert record.getMessage() == "GET / 200"
    assert record.status == 200  # type: ignore[attr-defined]
    assert record.duration_ms >= 0  # type: ignore[attr-defined]


def test_formatter_writes_one_json_object_with_request_id_and_extras() -> None:
    """A record becomes JSON with time, level, logger, message, request id, extras, traceback."""
    set_request_id("req-for-the-formatter")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("orchestrator.x").makeRecord(
            "orchestrator.x", logging.WARNING, __file__, 1, "hello %s", ("world",),
            sys.exc_info(), extra={"code": "llm_timeout"},
        )  # fmt: skip
    entry = json.loads(JSONFormatter().format(record))
    assert (entry["level"], entry["logger"], entry["msg"]) == (
        "warning",
        "orchestrator.x",
        "hello world",
    )
    assert (entry["request_id"], entry["code"]) == ("req-for-the-formatter", "llm_timeout")
    assert "ValueError: boom" in entry["exc"]
    assert entry["ts"].endswith("+00:00")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access = logging.getLogger("uvicorn.access")
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    access.disabled = False
    for name in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_sends_json_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """After configure_logging every logger, uvicorn's included, writes JSON lines to stderr."""
    configure_logging("debug")
    logging.getLogger("uvicorn.error").info("server started")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert json.loads(line)["msg"] == "server started"
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("uvicorn.access").disabled
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
