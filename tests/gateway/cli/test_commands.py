"""mro-admin against a real admin API served over HTTP, authenticated by a real OpenID provider."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import ECKey
from typer.testing import CliRunner, Result

from devstack.procs import free_port
from gateway.audit.events import AuditEvent
from gateway.auth.bearer import BearerAuthenticator
from gateway.auth.jwks import JWKSCache
from gateway.cli.commands import app, policy_markdown
from gateway.db import create_engine, create_schema, session_factory
from gateway.identity import Identity
from gateway.policy.policy_file import Policy
from gateway.settings import GatewaySettings
from tests.gateway.keys import FakeClock, LocalIdP, admin_app, rsa_key, running_idp, serve

OPS_SECRET = "ops-client-secret-for-tests"


@dataclass
class ListSink:
    events: list[AuditEvent] = field(default_factory=list)

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)


class IdPBearer:
    """The real bearer authenticator, opened inside the server's event loop by the lifespan."""

    def __init__(self, settings: GatewaySettings, clock: FakeClock) -> None:
        self.settings = settings
        self.clock = clock
        self.inner: BearerAuthenticator | None = None

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        assert self.inner is not None
        return await self.inner.authenticate(headers)


@dataclass
class Stack:
    idp: LocalIdP
    gateway_url: str

    def token(self, *roles: str) -> str:
        return self.idp.factory().token("person-1", realm_access={"roles": list(roles)})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    clock = FakeClock()
    idp = LocalIdP(keys=[rsa_key("cli-key")], clock=clock)
    idp.clients["mro-ops"] = (OPS_SECRET, ["manager"])
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('cli') / 'gateway.db'}"

    async def schema() -> None:
        engine = create_engine(url)
        await create_schema(engine)
        await engine.dispose()

    asyncio.run(schema())
    with running_idp(idp):
        settings = GatewaySettings(keycloak_url=idp.base_url)
        bearer = IdPBearer(settings, clock)
        engine = create_engine(url)

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            async with httpx.AsyncClient(timeout=2.0) as http:
                jwks = JWKSCache(settings.discovery_url, http, clock=clock)
                bearer.inner = BearerAuthenticator(jwks, settings, clock)
                yield
            await engine.dispose()

        gateway = admin_app(
            bearer, session_factory(engine), settings, ListSink(), clock, lifespan=lifespan
        )
        with serve(gateway, lifespan=True) as port:
            yield Stack(idp, f"http://127.0.0.1:{port}")


def run(stack: Stack, *args: str, token: str | None = None, **env: str) -> Result:
    environment = {"MRO_ADMIN_GATEWAY_URL": stack.gateway_url, **env}
    if token is not None:
        environment["MRO_ADMIN_TOKEN"] = token
    return CliRunner().invoke(app, list(args), env=environment)


def test_keys_generate_prints_a_p256_private_key() -> None:
    """`keys generate` prints a PEM an operator can put in the signing-keys setting."""
    result = CliRunner().invoke(app, ["keys", "generate"])
    assert result.exit_code == 0
    key = ECKey.import_key(result.stdout)
    assert key.is_private
    assert key.curve_name == "P-256"


def test_policy_matrix_prints_the_generated_tables() -> None:
    """`policy matrix` prints exactly what docs/authorization.md embeds."""
    result = CliRunner().invoke(app, ["policy", "matrix"])
    assert result.exit_code == 0
    assert result.stdout == policy_markdown(Policy.load())


def test_policy_matrix_reports_an_invalid_file(tmp_path: Path) -> None:
    """An invalid policy file is an error on stderr, exit status 1."""
    bad = tmp_path / "policy.toml"
    bad.write_text("version = 2\n")
    result = CliRunner().invoke(app, ["policy", "matrix", "--policy-file", str(bad)])
    assert result.exit_code == 1
    assert "error:" in result.stderr


def test_key_lifecycle_with_a_bearer_token(stack: Stack) -> None:
    """create, list, rotate and revoke through the admin API with MRO_ADMIN_TOKEN."""
    token = stack.token("manager")
    created = run(
        stack,
        "api-keys",
        "create",
        "--name",
        "erp sync",
        "-p",
        "agents:read",
        "--json",
        token=token,
    )
    assert created.exit_code == 0, created.output
    key = json.loads(created.stdout)
    assert key["key"].startswith(f"mro_{key['id']}_")

    listed = run(stack, "api-keys", "list", token=token)
    assert listed.exit_code == 0
    line = next(row for row in listed.stdout.splitlines() if row.startswith(key["id"]))
    assert "active" in line
    assert "erp sync" in line
    assert key["key"] not in listed.stdout

    rotated = run(stack, "api-keys", "rotate", key["id"], "--grace-hours", "1", token=token)
    assert rotated.exit_code == 0
    assert "replaces" in rotated.stdout
    assert "key:     mro_" in rotated.stdout

    revoked = run(stack, "api-keys", "revoke", key["id"], "--json", token=token)
    assert revoked.exit_code == 0
    assert json.loads(revoked.stdout)["status"] == "revoked"


def test_plain_create_output_shows_the_key_once(stack: Stack) -> None:
    """Without --json, create prints the id, the expiry and the key with a warning."""
    result = run(
        stack,
        "api-keys",
        "create",
        "--name",
        "plain",
        "-p",
        "agents:read",
        "--expires-in-days",
        "7",
        token=stack.token("manager"),
    )
    assert result.exit_code == 0
    assert result.stdout.count("mro_") == 1
    assert "not shown again" in result.stdout


def test_client_credentials_are_exchanged_at_the_provider(stack: Stack) -> None:
    """--client-id with MRO_ADMIN_CLIENT_SECRET gets a token from the provider's token endpoint."""
    before = stack.idp.count("/openid-connect/token")
    result = run(
        stack,
        "api-keys",
        "--client-id",
        "mro-ops",
        "--keycloak-url",
        stack.idp.base_url,
        "list",
        "--json",
        MRO_ADMIN_CLIENT_SECRET=OPS_SECRET,
    )
    assert result.exit_code == 0, result.output
    assert "items" in json.loads(result.stdout)
    assert stack.idp.count("/openid-connect/token") == before + 1


def test_wrong_client_secret_is_reported(stack: Stack) -> None:
    """A refused client-credentials grant ends with exit status 1 and no traceback."""
    result = run(
        stack,
        "api-keys",
        "--client-id",
        "mro-ops",
        "--keycloak-url",
        stack.idp.base_url,
        "list",
        MRO_ADMIN_CLIENT_SECRET="wrong",
    )
    assert result.exit_code == 1
    assert "refused the client credentials" in result.stderr
    assert "Traceback" not in result.output


def test_gateway_refusal_is_reported_with_its_code(stack: Stack) -> None:
    """A technician's token gets the gateway's 403 code on stderr."""
    result = run(stack, "api-keys", "list", token=stack.token("technician"))
    assert result.exit_code == 1
    assert "403 permission_denied" in result.stderr


def test_missing_credentials_are_reported(stack: Stack) -> None:
    """Without a token or client credentials the command says what to set."""
    result = run(stack, "api-keys", "list")
    assert result.exit_code == 1
    assert "MRO_ADMIN_TOKEN" in result.stderr


def test_unreachable_gateway_is_reported(stack: Stack) -> None:
    """A gateway that does not answer is an error message, not a traceback."""
    result = run(
        stack,
        "api-keys",
        "--gateway-url",
        f"http://127.0.0.1:{free_port()}",
        "list",
        token=stack.token("manager"),
    )
    assert result.exit_code == 1
    assert "Cannot reach the gateway" in result.stderr
