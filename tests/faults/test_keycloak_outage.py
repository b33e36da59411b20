"""Drill: Keycloak unreachable. The gateway reaches Keycloak through a relay the drill cuts.

Promised (docs/operations.md, "Keycloak is down"): tokens signed by keys the gateway already
holds keep working, even after the key cache time; a token naming a key the gateway does not
hold is never accepted (503 while Keycloak cannot be asked, 401 once it answers that the key is
unknown); the browser login answers 503 problem+json, never 500; readiness stays green while
keys are cached, so running replicas are not pulled out of rotation by an identity-provider
outage, while a replica started during the outage holds no keys and stays out of it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt

from tests.faults.evidence import assert_problem, bearer
from tests.faults.gateways import TokenMinter, in_process_gateway
from tests.faults.relay import TcpRelay
from tests.gateway.harness import RecordingUpstream, running, settings_for
from tests.gateway.keys import rsa_key
from tests.gateway.login_stack import OffsetClock
from tests.keycloak_flows import jwt_claims

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]

JWKS_CACHE_SECONDS = 60
COOLDOWN_SECONDS = 1
AGENTS = "/api/agents"


def token_with_unknown_kid(genuine: str) -> str:
    """The genuine token's claims, signed by a key Keycloak never published (a retired kid)."""
    key = rsa_key(f"retired-{uuid.uuid4().hex[:8]}")
    return jwt.encode({"alg": "RS256", "kid": key.kid}, jwt_claims(genuine), key)


def login_cookie(response: httpx.Response) -> tuple[str, str]:
    """The login-binding cookie the gateway set on its redirect to Keycloak."""
    name, _, rest = response.headers["set-cookie"].partition("=")
    return name, rest.split(";", 1)[0]


async def test_keycloak_outage_keeps_known_keys_and_refuses_unknown_ones(
    tmp_path: Path,
    redis_url: str,
    keycloak_relay: TcpRelay,
    mint_service_token: TokenMinter,
    stand_in: RecordingUpstream,
) -> None:
    """With Keycloak cut off, cached keys verify new tokens past the cache time, an unknown kid
    answers 503 (then 401 once Keycloak is back), never 200, and the gateway stays ready."""
    clock = OffsetClock()
    settings = settings_for(
        tmp_path,
        keycloak_url=keycloak_relay.url,
        redis_url=redis_url,
        jwks_cache_seconds=JWKS_CACHE_SECONDS,
        jwks_refetch_cooldown_seconds=COOLDOWN_SECONDS,
    )
    warm, fresh = mint_service_token(keycloak_relay.url), mint_service_token(keycloak_relay.url)
    forged = token_with_unknown_kid(fresh)
    app = in_process_gateway(settings, stand_in, clock=clock)
    async with running(app) as http:
        assert (await http.get(AGENTS, headers=bearer(warm))).status_code == 200
        with keycloak_relay.down():
            clock.advance(JWKS_CACHE_SECONDS + 1)  # the held key set is now stale
            during = await http.get(AGENTS, headers=bearer(fresh))
            unknown_during = await http.get(AGENTS, headers=bearer(forged))
            ready = await http.get("/readyz")
        clock.advance(COOLDOWN_SECONDS + 1)
        unknown_after = await http.get(AGENTS, headers=bearer(forged))
    assert during.status_code == 200, during.text
    assert_problem(unknown_during, 503, "dependency_unavailable")
    assert_problem(unknown_after, 401, "unknown_kid")
    assert ready.status_code == 200, ready.text
    assert len(stand_in.received) == 2, "only the two genuine tokens reached the orchestrator"


async def test_finishing_a_login_answers_503_while_keycloak_is_unreachable(
    tmp_path: Path, redis_url: str, keycloak_relay: TcpRelay, stand_in: RecordingUpstream
) -> None:
    """A login started before the outage and finished during it (the code exchange cannot reach
    Keycloak) answers 503 problem+json, never 500."""
    settings = settings_for(tmp_path, keycloak_url=keycloak_relay.url, redis_url=redis_url)
    async with running(in_process_gateway(settings, stand_in)) as http:
        begun = await http.get("/auth/login", params={"return_to": "/"})
        with keycloak_relay.down():
            state = parse_qs(urlsplit(begun.headers["location"]).query)["state"][0]
            name, value = login_cookie(begun)
            finished = await http.get(
                "/auth/callback",
                params={"state": state, "code": "issued-before-the-outage"},
                headers={"Cookie": f"{name}={value}"},
            )
    assert begun.status_code == 302, begun.text
    assert_problem(finished, 503, "dependency_unavailable")


async def test_a_gateway_started_during_the_outage_is_not_ready_and_answers_503(
    tmp_path: Path,
    redis_url: str,
    keycloak_relay: TcpRelay,
    mint_service_token: TokenMinter,
    stand_in: RecordingUpstream,
) -> None:
    """A replica that starts while Keycloak is unreachable holds no keys: it reports not ready,
    and answers a valid token and a login with 503 problem+json, never 500 or 401."""
    token = mint_service_token(keycloak_relay.url)
    settings = settings_for(tmp_path, keycloak_url=keycloak_relay.url, redis_url=redis_url)
    with keycloak_relay.down():
        async with running(in_process_gateway(settings, stand_in)) as http:
            ready = await http.get("/readyz")
            bearer_answer = await http.get(AGENTS, headers=bearer(token))
            login = await http.get("/auth/login", params={"return_to": "/"})
    assert_problem(ready, 503, "not_ready")
    assert ready.json()["checks"]["jwks"] is False
    assert_problem(bearer_answer, 503, "dependency_unavailable")
    assert_problem(login, 503, "dependency_unavailable")
    assert stand_in.received == []
