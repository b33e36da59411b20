"""Drill: the gateway's clock is off. Its clock is injected (``create_app(clock=...)``).

Against Keycloak's tokens it is pinned relative to a real token's own ``iat`` and ``exp``, a
second inside and a second outside the leeway (``MRO_GATEWAY_JWT_LEEWAY_SECONDS``, 30 s).
Against the orchestrator (a real one, on the real clock) it runs ahead by less, then by more,
than the orchestrator's assertion leeway (``MRO_ORCHESTRATOR_ASSERTION_LEEWAY_SECONDS``, 30 s).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from joserfc.jwk import ECKey

from gateway.app import create_app
from gateway.proxy.assertion import AssertionSigner, generate_signing_key_pem
from orchestrator.api import create_app as create_orchestrator
from orchestrator.settings import OrchestratorSettings
from tests.faults.evidence import assert_problem, bearer
from tests.faults.gateways import TokenMinter, in_process_gateway
from tests.gateway.harness import RecordingUpstream, running, serve, settings_for
from tests.keycloak_flows import jwt_claims

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]

LEEWAY = 30
ASSERTION_LEEWAY = 30


@pytest.mark.parametrize(
    ("claim", "skew", "code"),
    [
        ("iat", -(LEEWAY - 1), None),
        ("iat", -(LEEWAY + 1), "token_issued_in_future"),
        ("exp", LEEWAY - 1, None),
        ("exp", LEEWAY + 1, "token_expired"),
    ],
    ids=["behind-within", "behind-beyond", "ahead-within", "ahead-beyond"],
)
async def test_gateway_clock_skew_is_tolerated_within_the_leeway_only(
    tmp_path: Path,
    keycloak_url: str,
    redis_url: str,
    mint_service_token: TokenMinter,
    claim: str,
    skew: int,
    code: str | None,
) -> None:
    """A gateway whose clock is behind the token's iat, or past its exp, by less than the leeway
    accepts it; by more it refuses it with 401 and the reason."""
    token = mint_service_token(keycloak_url)
    instant = float(jwt_claims(token)[claim] + skew)
    settings = settings_for(
        tmp_path, keycloak_url=keycloak_url, redis_url=redis_url, jwt_leeway_seconds=LEEWAY
    )
    app = in_process_gateway(settings, RecordingUpstream(), clock=lambda: instant)
    async with running(app) as http:
        response = await http.get("/api/agents", headers=bearer(token))
    if code is None:
        assert response.status_code == 200, response.text
    else:
        assert_problem(response, 401, code)


@pytest.fixture
def orchestrator_trusting(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An orchestrator (served over HTTP, real clock) trusting one gateway signing key; yields
    the key's PEM and the orchestrator's URL."""
    pem = generate_signing_key_pem()
    signer = AssertionSigner([ECKey.import_key(pem)], "mro-gateway", "mro-orchestrator")
    settings = OrchestratorSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'orchestrator.db'}"
    )
    with serve(create_orchestrator(settings, jwks=signer.jwks())) as url:
        yield pem, url


@pytest.mark.parametrize(
    "skew",
    [ASSERTION_LEEWAY - 5, ASSERTION_LEEWAY + 15],
    ids=["within-leeway", "beyond-leeway"],
)
async def test_gateway_ahead_of_the_orchestrator_never_looks_like_a_bad_login(
    tmp_path: Path,
    keycloak_url: str,
    redis_url: str,
    mint_service_token: TokenMinter,
    orchestrator_trusting: tuple[str, str],
    skew: int,
) -> None:
    """A gateway whose clock runs ahead of the orchestrator's by less than the assertion leeway
    is served; beyond it the client gets 502 upstream_rejected_identity without a challenge,
    never a 401 for a valid token."""
    pem, orchestrator_url = orchestrator_trusting
    settings = settings_for(
        tmp_path,
        keycloak_url=keycloak_url,
        redis_url=redis_url,
        orchestrator_url=orchestrator_url,
        assertion_signing_keys=[pem],
    )
    app = create_app(settings, clock=lambda: time.time() + skew)
    async with running(app) as http:
        response = await http.get("/api/agents", headers=bearer(mint_service_token(keycloak_url)))
    if skew < ASSERTION_LEEWAY:
        assert response.status_code == 200, response.text
    else:
        assert_problem(response, 502, "upstream_rejected_identity")
        assert "www-authenticate" not in response.headers
