"""Key rotation without downtime, as docs/rotation.md describes it.

Assertion signing keys: real gateway apps (one per configuration, restarted on the same port as a
rolling update would) proxy to a real orchestrator app that trusts the gateway's JWKS URL; the
orchestrator's key cache runs on a clock the test moves. API-key pepper: the authenticator on a
real database, and the fingerprint ``mro-admin keys pepper-version`` prints.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import ECKey
from pydantic import SecretStr
from sqlalchemy import text
from typer.testing import CliRunner

from devstack.procs import free_port
from gateway.app import create_app
from gateway.auth.api_keys import ApiKeyAuthenticator, Peppers
from gateway.cli.commands import app as admin_cli
from gateway.errors import AuthenticationError
from gateway.identity import AuthMethod, Identity
from gateway.proxy.assertion import generate_signing_key_pem
from gateway.settings import GatewaySettings
from orchestrator.api.app import create_app as create_orchestrator
from orchestrator.jwks import RemoteKeySource
from orchestrator.settings import OrchestratorSettings
from tests.gateway.auth.test_api_keys import Db, db, issue, settings  # noqa: F401 (fixture)
from tests.gateway.keys import FakeClock, serve

CACHE_SECONDS = 600.0
COOLDOWN_SECONDS = 30.0


class Engineer:
    """Authenticates every request as the same engineer (the credential is not the subject)."""

    async def authenticate(self, headers: Mapping[str, str]) -> Identity:
        return Identity(
            subject="engineer-1",
            method=AuthMethod.JWT,
            roles=frozenset({"engineer", "technician"}),
            username="eng1",
        )


def kid(pem: str) -> str:
    """The kid the gateway gives a key: its RFC 7638 thumbprint."""
    return ECKey.import_key(pem).thumbprint()


@dataclass
class Rig:
    """An orchestrator trusting the JWKS at jwks_port, and gateways started on demand."""

    tmp: Path
    redis_url: str
    orchestrator_url: str
    keys: RemoteKeySource
    clock: FakeClock
    jwks_port: int

    @contextmanager
    def gateway(self, *pems: str, port: int | None = None) -> Iterator[str]:
        """A gateway signing with pems[0] and publishing all of them; yields its URL."""
        folder = self.tmp / f"gateway-{free_port()}"
        settings = GatewaySettings(
            assertion_signing_keys=[SecretStr(pem) for pem in pems],
            orchestrator_url=self.orchestrator_url,
            redis_url=self.redis_url,
            keycloak_url=f"http://127.0.0.1:{free_port()}",
            database_url=f"sqlite+aiosqlite:///{folder}.db",
            audit_spool_dir=str(folder / "spool"),
        )
        app = create_app(settings, authenticators=[Engineer()])
        with serve(app, port or self.jwks_port, lifespan=True) as bound:
            yield f"http://127.0.0.1:{bound}"

    def ask(self, gateway_url: str) -> httpx.Response:
        """GET /api/agents through a gateway (the orchestrator checks the assertion)."""
        return httpx.get(
            f"{gateway_url}/api/agents", headers={"Authorization": "Bearer any"}, timeout=10
        )

    def cache_expires(self) -> None:
        self.clock.advance(CACHE_SECONDS + 1)


@pytest.fixture
def rig(tmp_path: Path, redis_url: str) -> Iterator[Rig]:
    jwks_port = free_port()
    clock = FakeClock()
    # No kept-alive connections: the client is used from the server's thread and never closed.
    client = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), trust_env=False)
    keys = RemoteKeySource(
        f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json",
        client,
        cache_seconds=CACHE_SECONDS,
        cooldown_seconds=COOLDOWN_SECONDS,
        clock=clock,
    )
    settings = OrchestratorSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'orch.db'}")
    with serve(create_orchestrator(settings, jwks=keys), lifespan=True) as port:
        yield Rig(tmp_path, redis_url, f"http://127.0.0.1:{port}", keys, clock, jwks_port)


def assert_refused(response: httpx.Response, caplog: pytest.LogCaptureFixture, code: str) -> None:
    """The orchestrator refused the assertion with code: the client sees 502 (its own
    credential was fine), the gateway's log names the orchestrator's code."""
    assert response.status_code == 502, response.text
    assert response.json()["code"] == "upstream_rejected_identity"
    logged = [
        getattr(r, "upstream_code", None)
        for r in caplog.records
        if r.name == "gateway.proxy.forward"
    ]
    assert code in logged, logged


@pytest.mark.redis
def test_signing_key_rotation_keeps_every_request_working(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """Publish new second, wait a cache period, sign with new, drop old: no request fails."""
    old, new = generate_signing_key_pem(), generate_signing_key_pem()
    with rig.gateway(old) as gateway:
        assert rig.ask(gateway).status_code == 200
    fetches = rig.keys.fetch_count

    # 1. Publish: every replica gets [old, new]; the old key still signs.
    with rig.gateway(old, new) as gateway:
        published = httpx.get(f"{gateway}/.well-known/jwks.json").json()
        assert [key["kid"] for key in published["keys"]] == [kid(old), kid(new)]
        assert rig.ask(gateway).status_code == 200
        rig.cache_expires()  # the orchestrators refresh and learn the new key
        assert rig.ask(gateway).status_code == 200
    assert rig.keys.fetch_count == fetches + 1

    # 2. Switch: replicas move to [new, old] one by one; a replica not yet updated signs with
    # the old key, and both kinds of assertion are accepted without another fetch.
    straggler_port = free_port()
    with (
        rig.gateway(new, old) as gateway,
        rig.gateway(old, new, port=straggler_port) as straggler,
    ):
        assert rig.ask(gateway).status_code == 200
        assert rig.ask(straggler).status_code == 200
        assert rig.keys.fetch_count == fetches + 1

    # 3. Drop: once no replica signs with the old key and its last assertions have expired,
    # publish [new] only. An orchestrator keeps the old key until its cache expires.
    with (
        rig.gateway(new) as gateway,
        rig.gateway(old, new, port=straggler_port) as straggler,
    ):
        assert rig.ask(gateway).status_code == 200
        assert rig.ask(straggler).status_code == 200  # cached set still holds the old key
        rig.cache_expires()
        assert rig.ask(gateway).status_code == 200
        assert_refused(rig.ask(straggler), caplog, "unknown_key")


@pytest.mark.redis
def test_signing_with_an_unpublished_key_depends_on_the_refetch_cooldown(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """Skipping the publish step: a new kid is fetched at once, unless a fetch just happened."""
    old, new, newer = (generate_signing_key_pem() for _ in range(3))
    with rig.gateway(old) as gateway:
        assert rig.ask(gateway).status_code == 200
    with rig.gateway(new, old) as gateway:
        rig.clock.advance(COOLDOWN_SECONDS)
        assert rig.ask(gateway).status_code == 200  # unknown kid: one refetch finds it
    with rig.gateway(newer, new) as gateway:
        # Within the cooldown of the last fetch the unknown kid is refused ...
        assert_refused(rig.ask(gateway), caplog, "unknown_key")
        rig.clock.advance(COOLDOWN_SECONDS)
        # ... and accepted once a refetch is allowed again.
        assert rig.ask(gateway).status_code == 200


# --- API-key pepper -------------------------------------------------------------------------

OLD_PEPPER = "old-pepper-for-rotation-tests"
NEW_PEPPER = "new-pepper-for-rotation-tests"


def pepper_version(pepper: str) -> str:
    """What `mro-admin keys pepper-version` prints for pepper (read from the environment)."""
    result = CliRunner().invoke(
        admin_cli, ["keys", "pepper-version"], env={"MRO_GATEWAY_API_KEY_PEPPER": pepper}
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


async def keys_on(database: Db, version: str) -> set[str]:
    """The query docs/rotation.md gives: live keys still hashed under a pepper."""
    query = text("SELECT id FROM api_keys WHERE pepper_version = :version AND revoked_at IS NULL")
    async with database.sessions() as session:
        return {row[0] for row in (await session.execute(query, {"version": version})).all()}


async def test_pepper_rotation_moves_used_keys_and_finds_the_others(db: Db) -> None:  # noqa: F811
    """Keys used after the rotation move to the new pepper; the query lists the rest."""
    clock = FakeClock()
    used = await issue(db, clock, pepper=OLD_PEPPER)
    idle = await issue(db, clock, pepper=OLD_PEPPER)
    assert pepper_version(OLD_PEPPER) == Peppers(OLD_PEPPER).current_version

    rotated = ApiKeyAuthenticator(db.sessions, settings(NEW_PEPPER, (OLD_PEPPER,)), clock)
    assert await rotated.authenticate({"x-api-key": used}) is not None
    await rotated.flush_last_used()

    assert await keys_on(db, pepper_version(OLD_PEPPER)) == {idle.split("_")[1]}
    assert await keys_on(db, pepper_version(NEW_PEPPER)) == {used.split("_")[1]}

    dropped = ApiKeyAuthenticator(db.sessions, settings(NEW_PEPPER), clock)
    assert await dropped.authenticate({"x-api-key": used}) is not None
    with pytest.raises(AuthenticationError):
        await dropped.authenticate({"x-api-key": idle})
