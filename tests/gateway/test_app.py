"""The assembled app: default authenticators, readiness, metrics, JWKS, OpenAPI, audit route."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.types import ASGIApp, Receive, Scope, Send

from devstack.procs import free_port
from gateway.app import create_app
from gateway.audit.events import QueuedAuditWriter
from gateway.dependencies import get_services
from gateway.problems import CONTENT_TYPE as PROBLEM_CONTENT_TYPE
from gateway.proxy.assertion import generate_signing_key_pem
from gateway.proxy.upstream import HttpxUpstreamClient, Timeouts
from tests.gateway.harness import RecordingUpstream, running, settings_for
from tests.gateway.keys import FakeClock, LocalIdP, rsa_key, running_idp

pytestmark = pytest.mark.redis


def _app(
    tmp_path: Path, redis_url: str, idp: LocalIdP, upstream: RecordingUpstream, **kw: Any
) -> FastAPI:
    settings = settings_for(tmp_path, redis_url=redis_url, keycloak_url=idp.base_url, **kw)
    client = HttpxUpstreamClient(Timeouts(), transport=httpx.ASGITransport(app=upstream.app()))
    return create_app(settings, clock=idp.clock, upstream=client, key_prefix=f"app-{id(idp)}")


@pytest.fixture
def idp() -> LocalIdP:
    return LocalIdP(keys=[rsa_key("kc-1")], clock=FakeClock())


async def test_real_bearer_token_is_proxied_with_an_assertion(
    tmp_path: Path, redis_url: str, idp: LocalIdP
) -> None:
    """With the default authenticators a Keycloak-shaped token reaches upstream as an assertion."""
    upstream = RecordingUpstream()
    with running_idp(idp):
        app = _app(tmp_path, redis_url, idp, upstream)
        token = idp.factory().token("kc-user-7")
        async with running(app) as http:
            response = await http.get("/api/agents", headers={"Authorization": f"Bearer {token}"})
            keys = (await http.get("/.well-known/jwks.json")).json()
    assert response.status_code == 200
    (assertion,) = upstream.received[0].header("x-mro-assertion")
    claims = jwt.decode(assertion, KeySet.import_key_set(keys), algorithms=["ES256"]).claims
    assert claims["sub"] == "kc-user-7"
    assert claims["auth"] == "jwt"
    assert claims["sid"] == "session-1"


async def test_readyz_reports_each_dependency(
    tmp_path: Path, redis_url: str, idp: LocalIdP
) -> None:
    """Ready while Keycloak's keys, Redis and the database answer; 503 with details otherwise."""
    with running_idp(idp):
        app = _app(tmp_path, redis_url, idp, RecordingUpstream())
        async with running(app) as http:
            ready = await http.get("/readyz")
    app = _app(tmp_path, redis_url, idp, RecordingUpstream())  # the IdP is gone now
    async with running(app) as http:
        not_ready = await http.get("/readyz")
        alive = await http.get("/healthz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"jwks": True, "redis": True, "database": True},
    }
    assert not_ready.status_code == 503
    assert not_ready.headers["content-type"] == "application/problem+json"
    assert not_ready.json()["checks"] == {"jwks": False, "redis": True, "database": True}
    assert alive.json() == {"status": "ok"}


async def test_local_readiness_ignores_shared_dependencies(tmp_path: Path, idp: LocalIdP) -> None:
    """With Redis and the database down, ``/readyz?scope=local`` (the probe) stays 200 while
    the replica holds Keycloak's keys; ``/readyz`` still names both."""
    (tmp_path / "not-a-database").mkdir()
    redis_down = f"redis://127.0.0.1:{free_port()}/0"
    database_down = f"sqlite+aiosqlite:///{tmp_path / 'not-a-database'}"
    with running_idp(idp):
        app = _app(tmp_path, redis_down, idp, RecordingUpstream(), database_url=database_down)
        async with running(app) as http:
            local = await http.get("/readyz", params={"scope": "local"})
            full = await http.get("/readyz")
    assert local.status_code == 200
    assert local.json() == {"status": "ready", "checks": {"jwks": True}}
    assert full.status_code == 503
    assert full.json()["checks"] == {"jwks": True, "redis": False, "database": False}


async def test_local_readiness_fails_without_keycloak_keys(
    tmp_path: Path, redis_url: str, idp: LocalIdP
) -> None:
    """A replica that holds no Keycloak keys and cannot fetch them is not ready for the probe
    either; an unknown scope is a 422 problem."""
    app = _app(tmp_path, redis_url, idp, RecordingUpstream())  # the IdP does not answer
    async with running(app) as http:
        local = await http.get("/readyz", params={"scope": "local"})
        unknown = await http.get("/readyz", params={"scope": "everything"})
    assert local.status_code == 503
    assert local.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert local.json()["code"] == "not_ready"
    assert local.json()["checks"] == {"jwks": False}
    assert unknown.status_code == 422
    assert unknown.headers["content-type"] == PROBLEM_CONTENT_TYPE


async def test_metrics_count_requests_by_route_template(
    tmp_path: Path, redis_url: str, idp: LocalIdP
) -> None:
    """Prometheus text names route templates, never raw paths, and counts auth failures."""
    app = _app(tmp_path, redis_url, idp, RecordingUpstream())
    async with running(app) as http:
        await http.get("/api/conversations/abc-123", headers={"Authorization": "Bearer x.y.z"})
        response = await http.get("/metrics")
    text = response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert 'route="/api/conversations/{id}",status="401"' in text
    assert "abc-123" not in text
    assert "mro_gateway_auth_failures_total{reason=" in text


async def test_openapi_lists_the_gateway_routes_in_development_only(
    tmp_path: Path, redis_url: str, idp: LocalIdP
) -> None:
    """The OpenAPI document describes the gateway's own routes; production does not serve it."""
    async with running(_app(tmp_path, redis_url, idp, RecordingUpstream())) as http:
        document = (await http.get("/openapi.json")).json()
    production = _app(
        tmp_path,
        redis_url,
        idp,
        RecordingUpstream(),
        environment="production",
        client_secret="prod-secret",
        api_key_pepper="prod-pepper-long-enough-for-tests",
        assertion_signing_keys=[generate_signing_key_pem()],
    )
    async with running(production) as http:
        hidden = await http.get("/openapi.json")
    assert {"/api/admin/audit", "/readyz", "/healthz", "/metrics"} <= set(document["paths"])
    assert "/api/agents" not in document["paths"]
    assert hidden.status_code == 404


async def test_admin_audit_route_shows_security_events(
    tmp_path: Path, redis_url: str, idp: LocalIdP
) -> None:
    """A permission denial is written through the queue and listed for an auditor."""
    with running_idp(idp):
        app = _app(tmp_path, redis_url, idp, RecordingUpstream())
        factory = idp.factory()
        tech = factory.token("tech-9")
        manager = factory.token(
            "mgr-9", realm_access={"roles": ["manager", "engineer", "technician"]}
        )
        async with running(app) as http:
            denied = await http.get("/api/admin/usage", headers={"Authorization": f"Bearer {tech}"})
            writer = app.state.services.audit
            assert isinstance(writer, QueuedAuditWriter)
            await writer.flush()
            listed = await http.get(
                "/api/admin/audit?action=auth.*&actor=tech-9",
                headers={"Authorization": f"Bearer {manager}"},
            )
    assert denied.status_code == 403
    assert listed.status_code == 200
    (item,) = listed.json()["items"]
    assert item["action"] == "auth.permission_denied"
    assert item["reason"] == "usage:read"
    assert item["request_id"] == denied.headers["x-request-id"]


async def test_logs_carry_request_ids_and_no_credentials(
    tmp_path: Path, redis_url: str, idp: LocalIdP, caplog: pytest.LogCaptureFixture
) -> None:
    """The access line has the request id; no token appears in any log record."""
    app = _app(tmp_path, redis_url, idp, RecordingUpstream())
    token = idp.factory().token("u-1")
    with caplog.at_level(logging.INFO):
        async with running(app) as http:
            response = await http.get("/api/agents", headers={"Authorization": f"Bearer {token}"})
    access = [r for r in caplog.records if r.name == "gateway.access"]
    assert access[-1].request_id == response.headers["x-request-id"]  # type: ignore[attr-defined]
    assert all(token not in r.getMessage() and token not in str(r.__dict__) for r in caplog.records)


async def test_proxied_requests_do_not_enter_fastapis_middleware_stack(
    tmp_path: Path, redis_url: str, idp: LocalIdP
) -> None:
    """The pipeline answers proxied routes alone; only the gateway's own routes enter FastAPI."""
    entered: list[str] = []

    class Recorder:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            entered.append(scope.get("path", scope["type"]))
            await self.app(scope, receive, send)

    with running_idp(idp):
        app = _app(tmp_path, redis_url, idp, RecordingUpstream())
        app.add_middleware(Recorder)
        token = idp.factory().token("u-1")
        async with running(app) as http:
            proxied = await http.get("/api/agents", headers={"Authorization": f"Bearer {token}"})
            own = await http.get("/healthz")
    assert (proxied.status_code, own.status_code) == (200, 200)
    assert [path for path in entered if path.startswith("/")] == ["/healthz"]


async def test_an_unexpected_error_in_an_own_route_is_a_problem_document(
    tmp_path: Path, redis_url: str, idp: LocalIdP
) -> None:
    """A gateway route that raises answers 500 problem+json with the request id, not plain text."""

    def broken() -> None:
        raise RuntimeError("boom")

    app = _app(tmp_path, redis_url, idp, RecordingUpstream())
    app.dependency_overrides[get_services] = broken
    async with running(app) as http:
        response = await http.get("/readyz")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert "boom" not in response.text
