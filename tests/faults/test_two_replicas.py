"""Drill: two gateway processes on one Redis and one database, a client alternating between them.

Proves the scale-out claims of docs/operations.md ("Scaling"): the rate limit is one limit,
counted exactly, whichever replica answers; a Keycloak session ended through one replica (the
back-channel logout reaches only the replica the load balancer picks) is refused by the other
within ``revocation_cache_seconds``; an API key revoked through one replica is refused by the
other within ``api_key_cache_seconds``. Both replicas sign assertions with the same configured
key, as replicas behind one Service must.
"""

from __future__ import annotations

import importlib.resources
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from keycloak import KeycloakAdmin

from tests.faults.evidence import assert_problem, bearer
from tests.faults.gateways import TokenMinter
from tests.faults.processes import ForkServer
from tests.faults.replicas import Replicas, two_replicas
from tests.gateway.login_stack import keycloak_user
from tests.keycloak_flows import authorization_code_tokens

pytestmark = [pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

SERVICE_LIMIT = 12
API_KEY_CACHE_SECONDS = 2.0
REVOCATION_CACHE_SECONDS = 1.0
# Scheduling margin on top of a cache time: the loaded test machine, one HTTP round trip.
MARGIN_SECONDS = 0.75
AGENTS = "/api/agents"


def policy_with_service_limit(folder: Path, limit: str) -> Path:
    """The packaged policy with the ``service`` tier limited to limit."""
    packaged = (
        importlib.resources.files("gateway.policy").joinpath("policy.toml").read_text("utf-8")
    )
    head, marker, tiers = packaged.partition("[rate_limits.tiers]")
    assert marker, "the packaged policy has no tiers table"
    lines = [
        f'service = "{limit}"' if line.startswith("service =") else line
        for line in tiers.splitlines()
    ]
    path = folder / "policy.toml"
    path.write_text(head + marker + "\n".join(lines) + "\n", "utf-8")
    return path


@pytest.fixture(scope="module")
def replicas(
    forks: ForkServer,
    keycloak_url: str,
    keycloak_admin: KeycloakAdmin,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Replicas]:
    """Replicas a and b: one Redis, one database, one assertion key, one Keycloak client."""
    folder = tmp_path_factory.mktemp("replicas")
    env = {
        "MRO_GATEWAY_POLICY_FILE": str(
            policy_with_service_limit(folder, f"{SERVICE_LIMIT}/minute")
        ),
        "MRO_GATEWAY_API_KEY_CACHE_SECONDS": str(int(API_KEY_CACHE_SECONDS)),
        "MRO_GATEWAY_REVOCATION_CACHE_SECONDS": str(REVOCATION_CACHE_SECONDS),
    }
    with two_replicas(forks, keycloak_url, keycloak_admin, folder, env) as pair:
        yield pair


def test_one_rate_limit_is_counted_exactly_across_replicas(
    replicas: Replicas, keycloak_url: str, mint_service_token: TokenMinter
) -> None:
    """Alternating replicas, a service gets exactly its limit, then 429 from both; the remaining
    count each replica reports goes down by one per request."""
    headers = bearer(mint_service_token(keycloak_url))
    answers = [
        httpx.get(replica.url + AGENTS, headers=headers)
        for replica, _ in zip(replicas.alternate(), range(SERVICE_LIMIT + 2), strict=False)
    ]
    assert [a.status_code for a in answers] == [200] * SERVICE_LIMIT + [429, 429]
    remaining = [a.headers["ratelimit"].split(";r=")[1].split(";")[0] for a in answers]
    assert remaining[:SERVICE_LIMIT] == [str(n) for n in range(SERVICE_LIMIT - 1, -1, -1)]
    assert_problem(answers[-1], 429, "rate_limited")


def seconds_until_refused(url: str, headers: dict[str, str], within: float) -> float:
    """Seconds until url answers 401 for headers (polling), or more than within."""
    began = time.monotonic()
    while time.monotonic() - began <= within + MARGIN_SECONDS:
        if httpx.get(url + AGENTS, headers=headers).status_code == 401:
            return time.monotonic() - began
        time.sleep(0.05)
    return float("inf")


def test_a_backchannel_logout_through_one_replica_ends_the_session_on_both(
    replicas: Replicas, keycloak_url: str, keycloak_admin: KeycloakAdmin
) -> None:
    """Keycloak tells replica a that a session ended; its tokens are refused by a at once and by
    b within the revocation cache time."""
    with keycloak_user(keycloak_admin) as person:
        tokens = authorization_code_tokens(
            keycloak_url,
            person.username,
            person.password,
            client_id=replicas.client.client_id,
            client_secret=replicas.client.secret,
            redirect_uri=f"{replicas.a.url}/auth/callback",
        )
        headers = bearer(tokens["access_token"])
        before = [
            httpx.get(r.url + AGENTS, headers=headers).status_code for r in (replicas.a, replicas.b)
        ]
        keycloak_admin.user_logout(person.id)
        on_a = httpx.get(replicas.a.url + AGENTS, headers=headers)
        on_b = seconds_until_refused(replicas.b.url, headers, REVOCATION_CACHE_SECONDS)
        last_b = httpx.get(replicas.b.url + AGENTS, headers=headers)
    assert before == [200, 200]
    assert_problem(on_a, 401, "token_revoked")
    assert on_b <= REVOCATION_CACHE_SECONDS + MARGIN_SECONDS
    assert_problem(last_b, 401, "token_revoked")


def test_an_api_key_revoked_through_one_replica_is_refused_by_both(
    replicas: Replicas, user_tokens: Callable[[str], dict[str, Any]]
) -> None:
    """A key revoked through replica a is refused by a at once and by b within the key cache."""
    manager = bearer(str(user_tokens("mgr1")["access_token"]))
    created = httpx.post(
        replicas.a.url + "/api/admin/api-keys",
        headers=manager,
        json={"name": "replica drill", "permissions": ["agents:read"]},
    )
    assert created.status_code == 201, created.text
    key = {"X-API-Key": created.json()["key"]}
    before = [httpx.get(r.url + AGENTS, headers=key).status_code for r in (replicas.a, replicas.b)]
    revoked = httpx.post(
        f"{replicas.a.url}/api/admin/api-keys/{created.json()['id']}/revoke", headers=manager
    )
    on_a = httpx.get(replicas.a.url + AGENTS, headers=key)
    on_b = seconds_until_refused(replicas.b.url, key, API_KEY_CACHE_SECONDS)
    assert before == [200, 200]
    assert revoked.status_code == 200, revoked.text
    assert_problem(on_a, 401, "invalid_api_key")
    assert on_b <= API_KEY_CACHE_SECONDS + MARGIN_SECONDS
