"""Tokens from the running realm: discovery, role hierarchy, audience, lifetimes, rotation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from keycloak import KeycloakAdmin

from devstack.keycloak import client_secret
from tests.keycloak_flows import (
    authorization_code_tokens,
    jwt_claims,
    oidc_url,
    realm_url,
    token_request,
)

pytestmark = pytest.mark.keycloak

Tokens = Callable[[str], dict[str, Any]]

EFFECTIVE_ROLES = {
    "tech1": {"technician"},
    "eng1": {"engineer", "technician"},
    "mgr1": {"manager", "engineer", "technician"},
    "admin1": {"admin"},
}


def test_discovery_document_is_served(keycloak_url: str) -> None:
    """Realm mro publishes discovery with its issuer, S256 PKCE and the JWKS endpoint."""
    resp = httpx.get(f"{realm_url(keycloak_url)}/.well-known/openid-configuration")
    assert resp.status_code == 200
    document = resp.json()
    assert document["issuer"] == realm_url(keycloak_url)
    assert "S256" in document["code_challenge_methods_supported"]
    assert document["jwks_uri"] == oidc_url(keycloak_url, "certs")
    assert document["backchannel_logout_supported"] is True


def test_dev_users_cover_every_role(dev_credentials: dict[str, Any]) -> None:
    """dev-users.json has one user per human role, each with the shape the stack relies on."""
    users = dev_credentials["users"]
    assert {tuple(u["roles"]) for u in users} == {
        ("technician",),
        ("engineer",),
        ("manager",),
        ("admin",),
    }
    for user in users:
        assert {"username", "password", "roles"} <= set(user)
        assert "dev-only" in user["password"]


@pytest.mark.parametrize(("username", "expected"), sorted(EFFECTIVE_ROLES.items()))
def test_user_token_carries_the_role_hierarchy(
    user_tokens: Tokens, username: str, expected: set[str]
) -> None:
    """A real code + PKCE login yields realm_access.roles expanded along the hierarchy."""
    claims = jwt_claims(user_tokens(username)["access_token"])
    assert set(claims["realm_access"]["roles"]) == expected
    assert claims["preferred_username"] == username
    assert claims["azp"] == "mro-gateway"


@pytest.mark.parametrize("username", sorted(EFFECTIVE_ROLES))
def test_user_token_audience_contains_the_gateway(user_tokens: Tokens, username: str) -> None:
    """Access tokens issued to users name mro-gateway in aud."""
    aud = jwt_claims(user_tokens(username)["access_token"])["aud"]
    assert "mro-gateway" in ([aud] if isinstance(aud, str) else aud)


def test_service_client_gets_service_role_by_client_credentials(service_tokens: Tokens) -> None:
    """mro-planning-sync obtains a token whose only realm role is service, audience the gateway."""
    tokens = service_tokens("mro-planning-sync")
    claims = jwt_claims(tokens["access_token"])
    assert claims["realm_access"]["roles"] == ["service"]
    aud = claims["aud"]
    assert "mro-gateway" in ([aud] if isinstance(aud, str) else aud)
    assert claims["azp"] == "mro-planning-sync"
    assert "refresh_token" not in tokens


def test_access_token_lives_five_minutes(user_tokens: Tokens) -> None:
    """exp - iat of an access token is the realm's 300 seconds."""
    claims = jwt_claims(user_tokens("tech1")["access_token"])
    assert claims["exp"] - claims["iat"] == 300


def test_refresh_token_follows_the_sso_idle_timeout(
    keycloak_url: str, dev_credentials: dict[str, Any]
) -> None:
    """A fresh refresh token expires after the 30-minute SSO idle timeout."""
    tokens = _fresh_login(keycloak_url, dev_credentials, "eng1")
    claims = jwt_claims(tokens["refresh_token"])
    assert claims["exp"] - claims["iat"] == 1800
    assert 1790 <= tokens["refresh_expires_in"] <= 1800


def test_configured_lifetimes_via_admin_api(keycloak_admin: KeycloakAdmin) -> None:
    """The admin API reports the token and session lifetimes the realm file sets."""
    realm = keycloak_admin.get_realm("mro")
    assert realm["accessTokenLifespan"] == 300
    assert realm["ssoSessionIdleTimeout"] == 1800
    assert realm["ssoSessionMaxLifespan"] == 36000
    assert realm["revokeRefreshToken"] is True
    assert realm["refreshTokenMaxReuse"] == 0


def test_reusing_a_rotated_refresh_token_fails(
    keycloak_url: str, dev_credentials: dict[str, Any]
) -> None:
    """Refreshing rotates the refresh token; presenting the old one again is refused."""
    tokens = _fresh_login(keycloak_url, dev_credentials, "tech1")
    auth = ("mro-gateway", client_secret("mro-gateway", dev_credentials))
    grant = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    first = token_request(keycloak_url, grant, auth)
    assert first.status_code == 200
    assert first.json()["refresh_token"] != tokens["refresh_token"]
    replay = token_request(keycloak_url, grant, auth)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"


def _fresh_login(keycloak_url: str, credentials: dict[str, Any], username: str) -> dict[str, Any]:
    password = next(u["password"] for u in credentials["users"] if u["username"] == username)
    return authorization_code_tokens(
        keycloak_url,
        username,
        password,
        client_secret=client_secret("mro-gateway", credentials),
    )
