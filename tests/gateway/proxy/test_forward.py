"""The reverse proxy: what reaches the orchestrator, what comes back, and how failures look.

Runs the gateway and a recording upstream as real HTTP servers, once with each upstream client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.procs import free_port
from gateway.app import create_app
from gateway.proxy.upstream import (
    AiohttpUpstreamClient,
    HttpxUpstreamClient,
    Timeouts,
    UpstreamClient,
)
from tests.gateway.harness import (
    TOKENS,
    UPSTREAM_SERVER,
    RecordingUpstream,
    TableAuthenticator,
    raw_http,
    serve,
    settings_for,
)

pytestmark = pytest.mark.redis

TECH = {"Authorization": "Bearer tech-token"}
TIMEOUTS = Timeouts(connect=1.0, read=0.5, write=0.5, pool=1.0)


@dataclass
class Gateway:
    url: str
    app: FastAPI
    upstream: RecordingUpstream


@pytest.fixture(scope="module")
def recording() -> Iterator[tuple[RecordingUpstream, str]]:
    upstream = RecordingUpstream()
    with serve(upstream.app()) as url:
        yield upstream, url


def _client(kind: str) -> UpstreamClient:
    if kind == "aiohttp":
        return AiohttpUpstreamClient(TIMEOUTS, pool_size=10)
    return HttpxUpstreamClient(TIMEOUTS, pool_size=10)


def _gateway(tmp_path: Path, redis_url: str, upstream_url: str, kind: str) -> FastAPI:
    settings = settings_for(
        tmp_path, orchestrator_url=upstream_url, redis_url=redis_url, max_body_bytes=1000
    )
    return create_app(
        settings,
        authenticators=[TableAuthenticator(TOKENS)],
        upstream=_client(kind),
        key_prefix=f"test-{uuid.uuid4().hex}",
    )


@pytest.fixture(scope="module", params=["aiohttp", "httpx"])
def shared_gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    recording: tuple[RecordingUpstream, str],
) -> Iterator[Gateway]:
    upstream, upstream_url = recording
    app = _gateway(tmp_path_factory.mktemp("gw"), redis_url, upstream_url, request.param)
    with serve(app, lifespan="on") as url:
        yield Gateway(url, app, upstream)


@pytest.fixture
def gateway(shared_gateway: Gateway) -> Iterator[Gateway]:
    upstream = shared_gateway.upstream
    upstream.received.clear()
    upstream.release.clear()
    upstream.finished.clear()
    yield shared_gateway
    # Let a held stream or slow answer finish before the next test.
    upstream.release.set()


async def test_identity_reaches_upstream_as_a_verifiable_assertion(gateway: Gateway) -> None:
    """The orchestrator gets a signed assertion of the caller and the request's id beside it."""
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        response = await http.get("/api/agents", headers=TECH)
    assert response.status_code == 200
    (seen,) = gateway.upstream.received
    (assertion,) = seen.header("x-mro-assertion")
    keys = KeySet.import_key_set(gateway.app.state.services.signer.jwks())  # type: ignore[arg-type]
    claims = jwt.decode(assertion, keys, algorithms=["ES256"]).claims
    assert claims["sub"] == "tech-1"
    assert claims["aud"] == "mro-orchestrator"
    assert "agents:read" in claims["permissions"]
    # The assertion names the caller, not the request (docs/architecture.md): the id travels
    # in X-Request-ID.
    assert response.headers["x-request-id"] == seen.header("x-request-id")[0]


async def test_client_identity_and_forwarding_fields_never_reach_upstream(gateway: Gateway) -> None:
    """Client-sent identity, credential and Forwarded fields are replaced by the gateway's own."""
    forged = [
        ("X-User-Id", "admin"),
        ("x-user-id", "admin-again"),
        ("X-User-Roles", "admin"),
        ("X-Roles", "admin"),
        ("X-Groups", "admins"),
        ("X-Remote-User", "root"),
        ("X-Forwarded-User", "root"),
        ("X-Auth-Request-User", "root"),
        ("X-MRO-Assertion", "forged"),
        ("Forwarded", "for=6.6.6.6"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-API-Key", "mro_abc_def"),
        ("Cookie", "session=abc"),
        ("X-Request-ID", "chosen-by-client"),
    ]
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        response = await http.get(
            "/api/agents", headers=[("Authorization", "Bearer tech-token"), *forged]
        )
    assert response.status_code == 200
    (seen,) = gateway.upstream.received
    names = {name for name, _ in seen.headers}
    for banned in ("x-user-id", "x-user-roles", "x-roles", "x-groups", "x-remote-user",
                   "x-forwarded-user", "x-auth-request-user", "forwarded", "x-api-key",
                   "cookie", "authorization"):  # fmt: skip
        assert banned not in names, banned
    assert seen.header("x-mro-assertion") != ["forged"]
    assert len(seen.header("x-mro-assertion")) == 1
    assert seen.header("x-forwarded-for") == ["127.0.0.1"]
    assert seen.header("x-forwarded-host") == ["gateway.test"]
    assert seen.header("x-forwarded-proto") == ["https"]
    assert seen.header("x-request-id") != ["chosen-by-client"]


def test_hop_by_hop_and_connection_named_fields_never_reach_upstream(gateway: Gateway) -> None:
    """Fields named in Connection, and the hop-by-hop ones, stop at the gateway."""
    status, _ = raw_http(
        gateway.url,
        b"GET /api/agents HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer tech-token\r\n"
        b"Connection: close, X-Private-Hop\r\nX-Private-Hop: secret\r\nKeep-Alive: timeout=5\r\n"
        b"TE: trailers\r\nUpgrade: h2c\r\nProxy-Authorization: Basic eA==\r\n\r\n",
    )
    assert status == 200
    (seen,) = gateway.upstream.received
    names = {name for name, _ in seen.headers}
    assert not names & {"x-private-hop", "keep-alive", "te", "upgrade", "proxy-authorization"}


async def test_upstream_cookies_and_server_identity_are_stripped(gateway: Gateway) -> None:
    """Set-Cookie, Server, X-Powered-By and Connection-named fields of the upstream are removed,
    and no cookie is kept for a later request."""
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        first = await http.get("/api/agents", headers=TECH)
        await http.get("/api/agents", headers=TECH)
    assert first.status_code == 200
    assert "set-cookie" not in first.headers
    assert UPSTREAM_SERVER not in first.headers.get_list("server")
    assert "x-powered-by" not in first.headers
    assert "x-secret-hop" not in first.headers
    assert first.headers["x-upstream"] == "yes"
    assert all(not seen.header("cookie") for seen in gateway.upstream.received)


async def test_sse_is_streamed_chunk_by_chunk(gateway: Gateway) -> None:
    """The first event reaches the client while the upstream is still holding the stream open."""
    headers = {**TECH, "Accept": "text/event-stream", "Content-Type": "application/json"}
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as http,
        http.stream("POST", "/api/conversations/c1/messages", headers=headers, content=b"{}") as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        chunks = r.aiter_raw()
        first = await anext(chunks)
        assert b"event: meta" in first
        assert not gateway.upstream.finished.is_set()
        gateway.upstream.release.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert b'"released": true' in rest


def test_upstream_down_is_a_503(tmp_path: Path, redis_url: str) -> None:
    """A refused connection to the orchestrator answers 503 problem+json."""
    app = _gateway(tmp_path, redis_url, f"http://127.0.0.1:{free_port()}", "aiohttp")
    with serve(app, lifespan="on") as url:
        response = httpx.get(url + "/api/agents", headers=TECH)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "upstream_unavailable"


async def test_slow_upstream_is_a_504(gateway: Gateway) -> None:
    """No answer within the read timeout is a 504 problem+json."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        response = await http.get("/api/conversations/slow", headers=TECH)
    assert response.status_code == 504
    assert response.json()["code"] == "upstream_timeout"


def test_oversize_body_with_content_length_is_a_413(gateway: Gateway) -> None:
    """A declared length over the limit is refused before anything is forwarded."""
    status, body = raw_http(
        gateway.url,
        b"POST /api/conversations HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer tech-token\r\n"
        b"Content-Type: application/json\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n"
        + b"x"
        * 5000,
    )
    assert status == 413
    assert json.loads(body)["code"] == "payload_too_large"
    assert gateway.upstream.received == []


def test_oversize_chunked_body_is_a_413(gateway: Gateway) -> None:
    """A streamed body is counted as it flows and cut off at the limit."""
    chunk = b"x" * 600
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
    status, body = raw_http(
        gateway.url,
        b"POST /api/conversations HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer tech-token\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + chunked,
    )
    assert status == 413
    assert json.loads(body)["code"] == "payload_too_large"
    assert gateway.upstream.received == []


async def test_request_body_streams_to_upstream(gateway: Gateway) -> None:
    """A body within the limit arrives upstream intact."""
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        response = await http.post("/api/conversations", headers=TECH, json={"title": "A320 hyd"})
    assert response.status_code == 200
    (seen,) = gateway.upstream.received
    assert json.loads(seen.body) == {"title": "A320 hyd"}


@pytest.mark.parametrize(
    "target",
    [
        b"/api/../api/agents",
        b"/api/%2e%2e/api/agents",
        b"/api/conversations%2fx",
        b"/api/conversations/%252e%252e",
        b"/api\\agents",
        b"/api/agents%00",
        b"//api/agents",
    ],
)
def test_path_attacks_are_400_and_never_forwarded(gateway: Gateway, target: bytes) -> None:
    """Raw ambiguous paths answer 400 problem+json and nothing reaches the upstream."""
    status, body = raw_http(
        gateway.url,
        b"GET " + target + b" HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer tech-token\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert status == 400
    assert json.loads(body)["code"] == "ambiguous_path"
    assert gateway.upstream.received == []


async def test_client_leaving_mid_stream_is_recorded_not_crashed(gateway: Gateway) -> None:
    """A client closing an SSE stream early ends the upstream stream at once (the model can
    stop), is counted as 499, and the gateway keeps serving."""
    headers = {**TECH, "Accept": "text/event-stream", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        async with http.stream(
            "POST", "/api/conversations/c2/messages", headers=headers, content=b"{}"
        ) as response:
            assert b"event: meta" in await anext(response.aiter_raw())
        # Wait for the gateway to notice (bounded polling; the upstream is still holding).
        metrics = ""
        for _ in range(40):
            metrics = (await http.get("/metrics")).text
            if 'status="499"' in metrics:
                break
            await asyncio.sleep(0.05)
        after = await http.get("/api/agents", headers=TECH)
    assert not gateway.upstream.finished.is_set()
    assert 'route="/api/conversations/{id}/messages",status="499"' in metrics
    assert after.status_code == 200


ORCHESTRATOR_CHALLENGE = 'MRO-Assertion realm="mro-orchestrator"'


def _problem(status: int, code: str) -> dict[str, object]:
    return {"type": f"https://mro-gateway.dev/problems/{code}", "title": "Refused",
            "status": status, "detail": "Refused by the orchestrator", "code": code}  # fmt: skip


class RefusingUpstream:
    """An orchestrator that refuses: the assertion (401 with its challenge) or the permission
    (403); remembers the assertions it was sent."""

    def __init__(self) -> None:
        self.assertions: list[str] = []

    def _seen(self, request: Request) -> None:
        self.assertions.extend(request.headers.getlist("x-mro-assertion"))

    async def expired(self, request: Request) -> Response:
        self._seen(request)
        return JSONResponse(
            _problem(401, "expired_assertion"),
            status_code=401,
            media_type="application/problem+json",
            headers={"WWW-Authenticate": ORCHESTRATOR_CHALLENGE},
        )

    async def oversized(self, request: Request) -> Response:
        self._seen(request)
        body = json.dumps({**_problem(401, "invalid_assertion"), "padding": "x" * 10_000})
        return Response(body, status_code=401, headers={"WWW-Authenticate": ORCHESTRATOR_CHALLENGE})

    async def forbidden(self, request: Request) -> Response:
        self._seen(request)
        return JSONResponse(
            _problem(403, "permission_denied"),
            status_code=403,
            media_type="application/problem+json",
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/agents", self.expired),
                Route("/api/conversations/{cid}", self.oversized),
                Route("/api/conversations", self.forbidden),
            ]
        )


@dataclass
class RefusedGateway:
    url: str
    upstream: RefusingUpstream


@pytest.fixture(scope="module", params=["aiohttp", "httpx"])
def refused_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[RefusedGateway]:
    upstream = RefusingUpstream()
    with serve(upstream.app()) as upstream_url:
        app = _gateway(tmp_path_factory.mktemp("gw"), redis_url, upstream_url, request.param)
        with serve(app, lifespan="on") as url:
            yield RefusedGateway(url, upstream)


def _identity_errors(metrics: str) -> float:
    found = re.search(
        r'^mro_gateway_upstream_errors_total\{kind="identity"\} (\S+)$', metrics, re.M
    )
    return float(found.group(1)) if found else 0.0


async def test_upstream_401_is_a_502_without_the_upstream_challenge(
    refused_gateway: RefusedGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """The orchestrator refusing the gateway's assertion reaches the client as 502
    upstream_rejected_identity without any challenge, counted and logged without the assertion."""
    async with httpx.AsyncClient(base_url=refused_gateway.url) as http:
        before = _identity_errors((await http.get("/metrics")).text)
        with caplog.at_level(logging.INFO):
            response = await http.get("/api/agents", headers=TECH)
        after = _identity_errors((await http.get("/metrics")).text)
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "upstream_rejected_identity"
    assert "www-authenticate" not in response.headers
    assert after == before + 1
    (logged,) = [r for r in caplog.records if r.name == "gateway.proxy.forward"]
    assert logged.levelno == logging.ERROR
    assert logged.__dict__["upstream_code"] == "expired_assertion"
    assert logged.__dict__["request_id"] == response.headers["x-request-id"]
    (assertion,) = refused_gateway.upstream.assertions[-1:]
    assert all(assertion not in str(r.__dict__) for r in caplog.records)


async def test_upstream_401_with_an_oversized_body_is_still_a_502(
    refused_gateway: RefusedGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A refusal whose body is not a small problem document is a 502 too; its code is not read."""
    async with httpx.AsyncClient(base_url=refused_gateway.url) as http:
        with caplog.at_level(logging.INFO):
            response = await http.get("/api/conversations/c1", headers=TECH)
        after = await http.get("/api/agents", headers=TECH)
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_rejected_identity"
    assert "www-authenticate" not in response.headers
    assert "padding" not in response.text
    (logged, *_) = [r for r in caplog.records if r.name == "gateway.proxy.forward"]
    assert logged.__dict__["upstream_code"] is None
    assert after.status_code == 502


async def test_upstream_403_is_relayed_as_the_callers_answer(
    refused_gateway: RefusedGateway,
) -> None:
    """An orchestrator 403 (a valid assertion without the permission) reaches the client as is."""
    async with httpx.AsyncClient(base_url=refused_gateway.url) as http:
        response = await http.get("/api/conversations", headers=TECH)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
