"""Claim edges with real Keycloak tokens: expiry and not-before at the leeway's edges, and the
verification cache, on a lab gateway whose clock the tests pin (no waiting for real time)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.keycloak import client_secret
from tests.keycloak_flows import client_credentials_tokens
from tests.security.evidence import assert_problem, bearer
from tests.security.forge import split
from tests.security.lab import Lab, LabFactory

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]

PROTECTED = "/api/agents"


@pytest.fixture(scope="module")
def claims_lab(lab_factory: LabFactory) -> Iterator[Lab]:
    """One lab gateway whose clock the claim-edge tests pin."""
    with lab_factory() as lab:
        yield lab


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-1, True), (+1, False)],
    ids=["just-inside-leeway", "just-past-leeway"],
)
def test_expiry_is_enforced_at_the_leeway_edge(
    claims_lab: Lab, keycloak_url: str, offset: int, accepted: bool
) -> None:
    """A Keycloak token works until ``exp`` + leeway and is refused (token_expired) after it."""
    token = _fresh_service_token(keycloak_url)
    _, claims, _ = split(token)
    leeway = claims_lab.settings.jwt_leeway_seconds
    claims_lab.clock.pin(claims["exp"] + leeway + offset)
    with claims_lab.client() as client:
        answer = client.get(PROTECTED, headers=bearer(token))
    if accepted:
        assert answer.status_code == 200, answer.text
    else:
        assert_problem(answer, 401, "token_expired")


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(+1, True), (-1, False)],
    ids=["just-inside-leeway", "just-before-leeway"],
)
def test_not_before_is_enforced_at_the_leeway_edge(
    claims_lab: Lab, keycloak_url: str, offset: int, accepted: bool
) -> None:
    """A token used before its ``iat`` (Keycloak's not-before) minus leeway is refused."""
    token = _fresh_service_token(keycloak_url)
    _, claims, _ = split(token)
    leeway = claims_lab.settings.jwt_leeway_seconds
    claims_lab.clock.pin(claims["iat"] - leeway + offset)
    with claims_lab.client() as client:
        answer = client.get(PROTECTED, headers=bearer(token))
    if accepted:
        assert answer.status_code == 200, answer.text
    else:
        assert_problem(answer, 401, "token_issued_in_future")


def test_a_cached_verification_does_not_outlive_the_token(
    claims_lab: Lab, keycloak_url: str
) -> None:
    """A token verified (and cached) while valid is refused once the clock passes its expiry."""
    token = _fresh_service_token(keycloak_url)
    _, claims, _ = split(token)
    leeway = claims_lab.settings.jwt_leeway_seconds
    with claims_lab.client() as client:
        claims_lab.clock.pin(claims["iat"])
        assert client.get(PROTECTED, headers=bearer(token)).status_code == 200
        claims_lab.clock.pin(claims["exp"] + leeway + 1)
        assert_problem(client.get(PROTECTED, headers=bearer(token)), 401, "token_expired")


def _fresh_service_token(keycloak_url: str) -> str:
    """A new service-account token (not one an earlier test already had verified and cached)."""
    tokens = client_credentials_tokens(
        keycloak_url, "mro-planning-sync", client_secret("mro-planning-sync")
    )
    return str(tokens["access_token"])
