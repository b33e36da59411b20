"""create_app and its lifespan: migrations, the gateway's JWKS over HTTP, the model client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from devstack.procs import free_port
from orchestrator.api.app import llm_settings
from orchestrator.db import create_engine
from orchestrator.migrate import current_revision
from orchestrator.settings import OrchestratorSettings
from tests.fixtures.azure import FakeAzure
from tests.fixtures.orchestrator import AssertionSigner, orchestrator_for, settings_for_tests


class JWKSServer:
    """A tiny gateway stand-in serving a JWKS over real HTTP and counting the fetches."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.fetches = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

        async def jwks(request: Request) -> JSONResponse:
            self.fetches += 1
            return JSONResponse(self.document)

        app = Starlette(routes=[Route("/.well-known/jwks.json", jwks)])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                log_config=None, lifespan="off", ws="none")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> JWKSServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "JWKS server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def jwks_server(assertion_signer: AssertionSigner) -> Iterator[JWKSServer]:
    with JWKSServer(assertion_signer.jwks()) as server:
        yield server


async def test_keys_are_fetched_from_the_gateway_over_http(
    database_url: str, azure: FakeAzure, assertion_signer: AssertionSigner, jwks_server: JWKSServer
) -> None:
    """Without a static JWKS the app fetches the gateway's keys over HTTP, once, and caches them."""
    settings = settings_for_tests(database_url, azure, gateway_jwks_url=jwks_server.url)
    async with orchestrator_for(settings, assertion_signer, jwks=None) as app:
        for _ in range(3):
            response = await app.http.get("/api/agents", headers=app.as_user())
            assert response.status_code == 200
        assert (await app.http.get("/readyz")).status_code == 200
    assert jwks_server.fetches == 1


async def test_keys_can_come_from_a_file(
    database_url: str, azure: FakeAzure, assertion_signer: AssertionSigner, tmp_path: Path
) -> None:
    """An air-gapped installation trusts the JWKS file named in the settings."""
    path = tmp_path / "gateway-jwks.json"
    path.write_text(json.dumps(assertion_signer.jwks()))
    settings = settings_for_tests(database_url, azure, gateway_jwks_file=path)
    async with orchestrator_for(settings, assertion_signer, jwks=None) as app:
        response = await app.http.get("/api/agents", headers=app.as_user())
    assert response.status_code == 200


async def test_startup_migrates_and_the_own_model_client_answers(
    tmp_path: Path, azure: FakeAzure, assertion_signer: AssertionSigner
) -> None:
    """The lifespan migrates an empty database and builds the Azure client from the settings."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    settings = settings_for_tests(url, azure, migrate_on_startup=True)
    async with orchestrator_for(settings, assertion_signer) as app:
        conversation_id = await app.conversation()
        response = await app.http.post(
            f"/api/conversations/{conversation_id}/messages",
            json={"content": "Which AMM task covers the wheel change?", "agent": "documentation"},
            headers=app.as_user(),
        )
        assert response.status_code == 201
    call = azure.calls()[0]
    assert (call.deployment, call.api_version, call.auth) == (
        "gpt-4o-mini",
        "2024-10-21",
        "api-key",
    )
    engine = create_engine(url)
    try:
        assert await current_revision(engine) == "0002"
    finally:
        await engine.dispose()


def test_llm_settings_follow_the_orchestrator_settings() -> None:
    """The model client gets endpoint, deployment, version, timeouts and one credential."""
    settings = OrchestratorSettings(
        azure_endpoint="https://mro.openai.azure.com",
        azure_deployment="gpt-4o",
        azure_timeout_seconds=12,
        azure_max_retries=4,
        azure_entra_token=SecretStr("token-from-entra"),
    )
    llm = llm_settings(settings)
    assert (llm.endpoint, llm.deployment, llm.timeout_seconds, llm.max_retries) == (
        "https://mro.openai.azure.com",
        "gpt-4o",
        12,
        4,
    )
    assert llm.api_key is None
    assert llm.entra_token is not None


async def test_production_hides_the_api_docs(
    database_url: str, azure: FakeAzure, assertion_signer: AssertionSigner
) -> None:
    """In production /docs and /openapi.json do not exist, even for authenticated callers."""
    settings = settings_for_tests(database_url, azure, environment="production")
    async with orchestrator_for(settings, assertion_signer) as app:
        for path in ("/docs", "/openapi.json"):
            assert (await app.http.get(path, headers=app.as_user())).status_code == 404
