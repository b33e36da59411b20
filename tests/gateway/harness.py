"""Test parts for the gateway's pipeline: a recording upstream, a table authenticator, servers.

``RecordingUpstream`` plays the orchestrator over real HTTP: it records what reached it and
answers with fields the gateway must strip; it streams SSE on request, holds a stream open until
the test releases it, and has a slow route for timeouts. ``TableAuthenticator`` is a real
``Authenticator``: bearer tokens looked up in a table. ``serve`` runs any ASGI app with uvicorn in
a thread, and ``running`` runs an app's lifespan around an in-process httpx client.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from devstack.procs import free_port
from gateway.app import create_app
from gateway.audit.events import AuditEvent
from gateway.errors import AuthenticationError
from gateway.identity import AuthMethod, Identity
from gateway.proxy.upstream import HttpxUpstreamClient, Timeouts
from gateway.settings import GatewaySettings

UPSTREAM_SERVER = "orchestrator-internal/9.9"


class TableAuthenticator:
    """Bearer tokens checked against a table; counts how often it was asked to verify one."""

    def __init__(self, tokens: Mapping[str, Identity]) -> None:
        self.tokens = dict(tokens)
        self.verifications = 0

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        value = headers.get("authorization")
        if value is None:
            return None
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer":
            raise AuthenticationError("Only Bearer tokens are accepted", code="unsupported_scheme")
        self.verifications += 1
        identity = self.tokens.get(token.strip())
        if identity is None:
            raise AuthenticationError("Unknown token", code="invalid_token")
        return identity


def user(subject: str, *roles: str, **extra: Any) -> Identity:
    """An identity as the bearer authenticator would make it."""
    return Identity(subject=subject, method=AuthMethod.JWT, roles=frozenset(roles), **extra)


TECH = user("tech-1", "technician", username="tech1", name="Tina Tech")
MANAGER = user("mgr-1", "manager", "engineer", "technician", username="mgr1")
TOKENS = {"tech-token": TECH, "manager-token": MANAGER}


@dataclass
class Received:
    """One request as the upstream saw it."""

    method: str
    path: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]


@dataclass
class RecordingUpstream:
    """A stand-in orchestrator that records every request it receives."""

    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    async def _record(self, request: Request) -> Received:
        body = await request.body()
        entry = Received(
            method=request.method,
            path=request.url.path,
            raw_path=request.scope.get("raw_path", b""),
            query=request.scope.get("query_string", b""),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            body=body,
        )
        self.received.append(entry)
        return entry

    async def echo(self, request: Request) -> Response:
        entry = await self._record(request)
        response = JSONResponse(
            {"method": entry.method, "path": entry.path, "bytes": len(entry.body)},
            headers={
                "Server": UPSTREAM_SERVER,
                "X-Powered-By": "test-framework",
                "X-Upstream": "yes",
                "Connection": "X-Secret-Hop",
                "X-Secret-Hop": "must-not-pass",
            },
        )
        response.set_cookie("upstream_session", "leak", httponly=True)
        return response

    async def messages(self, request: Request) -> Response:
        await self._record(request)
        if "text/event-stream" not in request.headers.get("accept", ""):
            return JSONResponse({"assistant_message": {"content": "ok"}}, status_code=201)

        async def events() -> AsyncIterator[bytes]:
            yield b'event: meta\ndata: {"agent": "documentation"}\n\n'
            # Hold the stream open until the test has seen the first event.
            released = await asyncio.to_thread(self.release.wait, 10)
            yield b'event: delta\ndata: {"content": "torque"}\n\n'
            yield b'event: done\ndata: {"released": %s}\n\n' % (b"true" if released else b"false")
            self.finished.set()

        return StreamingResponse(events(), media_type="text/event-stream")

    async def slow(self, request: Request) -> Response:
        await self._record(request)
        await asyncio.to_thread(self.release.wait, 5)
        return JSONResponse({"slow": True})

    def app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(
            routes=[
                Route("/api/conversations/slow", self.slow, methods=["GET"]),
                Route("/api/conversations/{cid}/messages", self.messages, methods=["POST"]),
                Route("/{path:path}", self.echo, methods=methods),
            ]
        )


@contextmanager
def serve(app: ASGIApp, *, lifespan: str = "auto", port: int | None = None) -> Iterator[str]:
    """Serve app with uvicorn from a thread on port (a free loopback port by default), as
    ``gateway.__main__`` does (no proxy headers, no server header); yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan=lifespan,
        proxy_headers=False,
        server_header=False,
        access_log=False,
        ws="none",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def settings_for(tmp_path: Path, **overrides: Any) -> GatewaySettings:
    """Development settings on tmp_path storage, a Keycloak that does not answer, and overrides."""
    values: dict[str, Any] = {
        "environment": "development",
        "public_url": "https://gateway.test",
        "keycloak_url": f"http://127.0.0.1:{free_port()}",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        "audit_spool_dir": str(tmp_path / "spool"),
        "orchestrator_url": f"http://127.0.0.1:{free_port()}",
        "upstream_connect_timeout_seconds": 1.0,
        "upstream_read_timeout_seconds": 2.0,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@asynccontextmanager
async def running(
    app: ASGIApp, client: tuple[str, int] = ("203.0.113.7", 40000)
) -> AsyncIterator[httpx.AsyncClient]:
    """Run app's lifespan and yield an in-process client whose requests come from client."""
    lifespan = app.router.lifespan_context  # type: ignore[attr-defined]
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            yield http


def raw_http(base_url: str, request: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send request bytes as they are (no client normalises the path); returns status and body."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class ListAuditSink:
    """An AuditSink that keeps events in a list."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)

    def actions(self) -> list[str]:
        return [event.action for event in self.events]


class FakeMonotonic:
    """A monotonic clock tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def in_process_app(
    tmp_path: Path, redis_url: str, upstream: RecordingUpstream, **overrides: Any
) -> FastAPI:
    """The gateway with the table authenticator, talking to upstream in process."""
    settings = overrides.pop("settings", None) or settings_for(tmp_path, redis_url=redis_url)
    options: dict[str, Any] = {
        "authenticators": [TableAuthenticator(TOKENS)],
        "upstream": HttpxUpstreamClient(
            Timeouts(), transport=httpx.ASGITransport(app=upstream.app())
        ),
        "key_prefix": f"test-{uuid.uuid4().hex}",
    }
    options.update(overrides)
    return create_app(settings, **options)
