"""Drill: the gateway's PostgreSQL stops and comes back (a private server, fast shutdown).

Promised (docs/operations.md, "The database is down"): bearer traffic does not need the
database; an API key verified before the outage keeps working for ``api_key_cache_seconds``,
then answers 503 (fails closed: never accepted unchecked, never a misleading 401); audit events
go to the spool and are replayed once the database answers, each stored exactly once, also when
the gateway is killed while events sit in the spool; ``/readyz`` reports the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.keycloak import GATEWAY_CLIENT_ID, client_secret
from devstack.procs import free_port
from tests.faults.evidence import (
    AuditRow,
    assert_problem,
    bearer,
    database_audit,
    request_ids,
    spooled_request_ids,
    wait_for,
)
from tests.faults.gateways import TokenMinter, in_process_gateway
from tests.faults.postgres import PrivatePostgres
from tests.faults.processes import ForkServer, gateway_process
from tests.gateway.harness import RecordingUpstream, running, settings_for
from tests.gateway.login_stack import OffsetClock

pytestmark = [pytest.mark.keycloak, pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

AGENTS = "/api/agents"
AUDIT = "/api/admin/audit"  # a service account lacks audit:read: 403 and one audit event
DENIED = "auth.permission_denied"
API_KEY_CACHE_SECONDS = 30
# The audit writer retries the database every 5 s (not configurable), then replays the spool.
REPLAY_TIMEOUT_SECONDS = 20.0
POLL_SECONDS = 0.2


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    """The module's own PostgreSQL, which its drills stop and start."""
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.close()


@dataclass
class Outage:
    """What an in-process gateway answered before, during and after the outage."""

    key_before: int = 0
    key_cached: int = 0
    key_expired: httpx.Response | None = None
    key_after: int = 0
    denied_before: list[str] = field(default_factory=list)
    denied_during: list[str] = field(default_factory=list)
    ready_during: dict[str, Any] = field(default_factory=dict)
    service_during: int = 0
    admin_during: list[httpx.Response] = field(default_factory=list)
    spooled_during: float = 0.0
    rows: list[AuditRow] = field(default_factory=list)


async def _denials(http: httpx.AsyncClient, headers: dict[str, str], count: int) -> list[str]:
    answers = [await http.get(AUDIT, headers=headers) for _ in range(count)]
    assert [a.status_code for a in answers] == [403] * count
    return [a.headers["x-request-id"] for a in answers]


def _metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


async def _until(check: Callable[[], Awaitable[Any]], within: float) -> Any:
    """Await check() until it is truthy, for at most within seconds (the product's own timers
    run meanwhile, and they are not injectable); its last value."""
    polls = max(1, int(within / POLL_SECONDS))
    for _ in range(polls):
        if value := await check():
            return value
        await asyncio.sleep(POLL_SECONDS)
    return await check()


@pytest.fixture(scope="module")
async def outage(
    postgres: PrivatePostgres,
    keycloak_url: str,
    redis_url: str,
    user_tokens: Any,
    mint_service_token: TokenMinter,
    dev_credentials: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Outage:
    """One outage of the database under an in-process gateway whose wall clock is injected."""
    seen = Outage()
    clock = OffsetClock()
    settings = settings_for(
        tmp_path_factory.mktemp("database-outage"),
        keycloak_url=keycloak_url,
        redis_url=redis_url,
        database_url=postgres.url,
        api_key_cache_seconds=API_KEY_CACHE_SECONDS,
        # The gateway's own client: API keys need their owner's standing from Keycloak.
        client_secret=client_secret(GATEWAY_CLIENT_ID, dev_credentials),
    )
    manager = bearer(str(user_tokens("mgr1")["access_token"]))
    service = bearer(mint_service_token(keycloak_url))
    app = in_process_gateway(settings, RecordingUpstream(), clock=clock)
    async with running(app) as http:
        created = await http.post(
            "/api/admin/api-keys",
            headers=manager,
            json={"name": "database drill", "permissions": ["agents:read"]},
        )
        assert created.status_code == 201, created.text
        key = {"X-API-Key": created.json()["key"]}
        seen.key_before = (await http.get(AGENTS, headers=key)).status_code
        seen.denied_before = await _denials(http, service, 3)
        postgres.stop()
        try:
            seen.key_cached = (await http.get(AGENTS, headers=key)).status_code
            seen.service_during = (await http.get(AGENTS, headers=service)).status_code
            seen.denied_during = await _denials(http, service, 5)
            seen.ready_during = (await http.get("/readyz")).json()
            seen.admin_during = [
                await http.get(path, headers=manager) for path in (AUDIT, "/api/admin/api-keys")
            ]
            clock.advance(API_KEY_CACHE_SECONDS + 1)
            seen.key_expired = await http.get(AGENTS, headers=key)

            async def spooled() -> float:
                text = (await http.get("/metrics")).text
                count = _metric(text, "mro_gateway_audit_spooled_total")
                return count if count >= len(seen.denied_during) else 0.0

            seen.spooled_during = await _until(spooled, within=5)
        finally:
            postgres.start()

        async def database_ready() -> bool:
            return bool((await http.get("/readyz")).json()["checks"]["database"])

        assert await _until(database_ready, REPLAY_TIMEOUT_SECONDS)
        seen.key_after = (await http.get(AGENTS, headers=key)).status_code
        expected = set(seen.denied_before + seen.denied_during)

        async def replayed() -> bool:
            stored = request_ids(await database_audit(postgres.url), DENIED)
            return expected <= set(stored)

        await _until(replayed, REPLAY_TIMEOUT_SECONDS)
    seen.rows = await database_audit(postgres.url)
    return seen


def test_api_key_works_for_its_cache_time_then_fails_closed(outage: Outage) -> None:
    """A key verified before the outage passes within its cache time, then answers 503."""
    assert (outage.key_before, outage.key_cached) == (200, 200)
    assert outage.key_expired is not None
    assert_problem(outage.key_expired, 503, "dependency_unavailable")


def test_bearer_tokens_do_not_need_the_database(outage: Outage) -> None:
    """Service tokens pass while the database is down; readiness names the database."""
    assert outage.service_during == 200
    checks = dict(outage.ready_during["checks"])
    assert checks.pop("database") is False
    assert all(checks.values()), checks


def test_administration_answers_503_while_the_database_is_down(outage: Outage) -> None:
    """Reading the audit log or the API keys during the outage is a 503 problem, never a 500."""
    for response in outage.admin_during:
        assert_problem(response, 503)


def test_outage_events_are_spooled_then_stored_exactly_once(outage: Outage) -> None:
    """Every audit event of the outage went through the spool and is stored once afterwards."""
    assert outage.spooled_during >= len(outage.denied_during)
    stored = request_ids(outage.rows, DENIED)
    assert sorted(stored) == sorted(outage.denied_before + outage.denied_during)
    event_ids = [row.event_id for row in outage.rows]
    assert len(event_ids) == len(set(event_ids))


def test_api_keys_work_again_once_the_database_answers(outage: Outage) -> None:
    """The first key check after the database is back succeeds (no stale pooled connection)."""
    assert outage.key_after == 200


async def test_a_gateway_killed_while_spooling_replays_every_event_once(
    forks: ForkServer,
    postgres: PrivatePostgres,
    tmp_path: Path,
    keycloak_url: str,
    redis_url: str,
    mint_service_token: TokenMinter,
) -> None:
    """Events spooled during the outage survive SIGKILL and are stored once after the restart."""
    spool = tmp_path / "spool"
    gateway = gateway_process(
        forks,
        tmp_path,
        free_port(),
        {
            "MRO_GATEWAY_KEYCLOAK_URL": keycloak_url,
            "MRO_GATEWAY_REDIS_URL": redis_url,
            "MRO_GATEWAY_DATABASE_URL": postgres.url,
            "MRO_GATEWAY_AUDIT_SPOOL_DIR": str(spool),
        },
    )
    service = bearer(mint_service_token(keycloak_url))
    gateway.start()
    try:
        postgres.stop()
        try:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
                answers = [await http.get(AUDIT, headers=service) for _ in range(20)]
            assert {a.status_code for a in answers} == {403}
            answered = {a.headers["x-request-id"] for a in answers}
            spooled = wait_for(
                lambda: set(spooled_request_ids(spool, DENIED)), answered.issubset, timeout=10
            )
            assert answered <= spooled, "events were answered but not spooled"
            gateway.kill()
        finally:
            postgres.start()
        gateway.restart()

        async def replayed() -> bool:
            return answered <= set(request_ids(await database_audit(postgres.url), DENIED))

        await _until(replayed, REPLAY_TIMEOUT_SECONDS)
    finally:
        gateway.stop()
    stored = request_ids(await database_audit(postgres.url), DENIED)
    assert sorted(i for i in stored if i in answered) == sorted(answered)
