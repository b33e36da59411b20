"""``/healthz`` answers while the process lives; ``/readyz`` checks the database and the keys."""

from __future__ import annotations

from pathlib import Path

import httpx

from orchestrator.jwks import RemoteKeySource
from tests.fixtures.orchestrator import AssertionSigner, Orchestrator, orchestrator_for
from tests.fixtures.orchestrator import settings_for_tests as settings


async def test_healthz_is_ok(orchestrator: Orchestrator) -> None:
    """/healthz answers 200 ok."""
    response = await orchestrator.http.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_reports_each_check(orchestrator: Orchestrator) -> None:
    """/readyz answers 200 with the database and key checks ok."""
    response = await orchestrator.http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "jwks": "ok"}}


async def test_readyz_fails_without_the_gateway_keys(
    database_url: str, assertion_signer: AssertionSigner
) -> None:
    """With the JWKS unreachable and nothing cached, /readyz is 503 naming the failed check."""

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(unreachable))
    keys = RemoteKeySource("http://gateway.invalid/jwks", client)
    async with orchestrator_for(settings(database_url, None), assertion_signer, jwks=keys) as app:
        response = await app.http.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "not_ready"
    assert body["checks"] == {"database": "ok", "jwks": "keys_unavailable"}
    assert "jwks" in body["detail"]


async def test_readyz_fails_when_the_database_does_not_answer(
    tmp_path: Path, assertion_signer: AssertionSigner
) -> None:
    """A database that cannot be opened makes /readyz 503 while /healthz stays 200."""
    broken = settings(f"sqlite+aiosqlite:///{tmp_path}", None)  # a folder, not a database file
    async with orchestrator_for(broken, assertion_signer) as app:
        ready = await app.http.get("/readyz")
        alive = await app.http.get("/healthz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": "storage_unavailable", "jwks": "ok"}
    assert alive.status_code == 200
