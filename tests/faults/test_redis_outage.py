"""Drill: Redis stops and comes back under a gateway serving browsers, users and services.

The gateway is served over HTTP (Keycloak's login redirects back to it) on a Redis of the
drill's own, which the drill stops and restarts. Its monotonic clock is injected, so the moment
the fallback limiter probes Redis again is the drill's choice, not a sleep. The drill runs once
(module fixture); each test checks one promise of docs/operations.md ("Redis is down").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
import yaml
from keycloak import KeycloakAdmin

from devstack.paths import ROOT
from devstack.procs import free_port
from tests.faults.evidence import AuditRow, assert_problem, bearer, sqlite_audit, wait_for
from tests.faults.gateways import TokenMinter, in_process_gateway
from tests.fixtures.stack import RedisServer
from tests.gateway.harness import FakeMonotonic, RecordingUpstream, settings_for
from tests.gateway.login_stack import KeycloakUser, keycloak_client, keycloak_user, serve
from tests.keycloak_flows import browser_client, form_action

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]

AGENTS = "/api/agents"
FALLBACK_PROBE_SECONDS = 2.0
GATEWAY_DEPLOYMENT = ROOT / "infra" / "k8s" / "base" / "gateway" / "deployment.yaml"


def browser_login(browser: httpx.Client, gateway_url: str, person: KeycloakUser) -> None:
    """Log person in through the gateway's login, as a browser would."""
    to_keycloak = browser.get(f"{gateway_url}/auth/login", params={"return_to": "/"})
    page = browser.get(to_keycloak.headers["location"])
    back = browser.post(
        form_action(page.text, "kc-form-login"),
        data={"username": person.username, "password": person.password},
    )
    done = browser.get(urljoin(gateway_url, back.headers["location"]))
    assert done.status_code == 302, done.text


def readiness_probe_path() -> str:
    """The path Kubernetes asks to decide whether a gateway replica gets traffic."""
    for document in yaml.safe_load_all(GATEWAY_DEPLOYMENT.read_text("utf-8")):
        for container in document["spec"]["template"]["spec"]["containers"]:
            if container["name"] == "gateway":
                return str(container["readinessProbe"]["httpGet"]["path"])
    raise AssertionError("no gateway container in the deployment")


@dataclass
class Outage:
    """The gateway's answers before, during and after the outage, and its audit rows."""

    before: list[int] = field(default_factory=list)
    session_down: httpx.Response | None = None
    services_down: list[int] = field(default_factory=list)
    user_down: httpx.Response | None = None
    ready_down: httpx.Response | None = None
    probe_down: int = 0
    service_back: int = 0
    ready_back: int = 0
    session_back: httpx.Response | None = None
    rows: list[AuditRow] = field(default_factory=list)


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    """The drill's own Redis, which it stops and starts."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def outage(
    private_redis: RedisServer,
    keycloak_url: str,
    keycloak_admin: KeycloakAdmin,
    user_tokens: Callable[[str], dict[str, Any]],
    mint_service_token: TokenMinter,
    tmp_path_factory: pytest.TempPathFactory,
) -> Outage:
    """One Redis outage under a gateway with a browser session, a user token and a service."""
    folder: Path = tmp_path_factory.mktemp("redis-outage")
    seen = Outage()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    clock = FakeMonotonic()
    service = bearer(mint_service_token(keycloak_url))
    user = bearer(str(user_tokens("tech1")["access_token"]))  # carries a Keycloak sid
    probe = readiness_probe_path()
    with keycloak_client(keycloak_admin, [url]) as client, keycloak_user(keycloak_admin) as person:
        settings = settings_for(
            folder,
            public_url=url,
            keycloak_url=keycloak_url,
            redis_url=private_redis.url,
            client_id=client.client_id,
            client_secret=client.secret,
        )
        app = in_process_gateway(settings, RecordingUpstream(), monotonic=clock)
        with serve(app, port), browser_client() as browser, httpx.Client(base_url=url) as http:
            browser_login(browser, url, person)
            seen.before = [
                browser.get(url + AGENTS).status_code,
                http.get(AGENTS, headers=service).status_code,
            ]
            private_redis.stop()
            try:
                seen.session_down = browser.get(url + AGENTS)
                seen.services_down = [
                    http.get(AGENTS, headers=service).status_code for _ in range(3)
                ]
                seen.user_down = http.get(AGENTS, headers=user)
                seen.ready_down = http.get("/readyz")
                seen.probe_down = http.get(probe).status_code
            finally:
                private_redis.start()
            clock.advance(FALLBACK_PROBE_SECONDS + 1)
            seen.service_back = http.get(AGENTS, headers=service).status_code
            seen.ready_back = http.get("/readyz").status_code
            seen.session_back = browser.get(url + AGENTS)
    # The server has stopped: its shutdown wrote the queued audit events.
    seen.rows = wait_for(lambda: sqlite_audit(folder / "gateway.db"), bool, timeout=5)
    return seen


def test_services_keep_working_on_the_fallback_limiter(outage: Outage) -> None:
    """Service-account requests pass before, during and after the outage (no 5xx)."""
    assert outage.before == [200, 200]
    assert outage.services_down == [200, 200, 200]
    assert outage.service_back == 200


def test_browser_sessions_and_user_tokens_fail_closed(outage: Outage) -> None:
    """A session cookie, and a user token whose Keycloak session cannot be checked against the
    revocation set, answer 503 problem+json while Redis is down."""
    assert outage.session_down is not None
    assert outage.user_down is not None
    assert_problem(outage.session_down, 503, "dependency_unavailable")
    assert_problem(outage.user_down, 503, "dependency_unavailable")


def test_readiness_reports_redis_down_then_up(outage: Outage) -> None:
    """``/readyz`` answers 503 naming Redis (and only Redis) while it is down, 200 after."""
    assert outage.ready_down is not None
    assert_problem(outage.ready_down, 503, "not_ready")
    checks = dict(outage.ready_down.json()["checks"])
    assert checks.pop("redis") is False
    assert all(checks.values()), checks
    assert outage.ready_back == 200


def test_the_outage_is_audited_once_each_way(outage: Outage) -> None:
    """The audit log shows one ``ratelimit.fallback`` followed by one ``ratelimit.recovered``."""
    actions = [row.action for row in outage.rows if row.action.startswith("ratelimit.")]
    assert actions == ["ratelimit.fallback", "ratelimit.recovered"]


def test_sessions_do_not_survive_a_redis_restart(outage: Outage) -> None:
    """Redis keeps nothing on disk: after its restart a browser must log in again (401)."""
    assert outage.session_back is not None
    assert_problem(outage.session_back, 401, "session_expired")


def test_replicas_stay_in_rotation_while_redis_is_down(outage: Outage) -> None:
    """The path the deployment's readiness probe asks answers 200 during a Redis outage, so the
    replicas keep serving what does not need Redis."""
    assert outage.probe_down == 200
