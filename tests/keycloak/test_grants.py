"""Only the intended grants work: code + PKCE for people, client credentials for services."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from keycloak import KeycloakAdmin

from devstack.keycloak import client_secret
from tests.keycloak_flows import (
    GATEWAY_CALLBACK,
    Pkce,
    authorization_code_tokens,
    browser_client,
    exchange_code,
    jwt_claims,
    oidc_url,
    open_login,
    token_request,
)

pytestmark = pytest.mark.keycloak

OWN_CLIENTS = ("mro-gateway", "mro-planning-sync", "mro-cli", "admin-cli")


def _secret_or_none(client_id: str, credentials: dict[str, Any]) -> str | None:
    try:
        return client_secret(client_id, credentials)
    except KeyError:
        return None


def _error_of_redirect(location: str) -> str:
    return parse_qs(urlsplit(location).query)["error"][0]


def test_no_client_of_the_realm_allows_password_or_implicit_grants(
    keycloak_admin: KeycloakAdmin,
) -> None:
    """Every client of realm mro, built-in ones included, has direct access and implicit off."""
    clients = keycloak_admin.get_clients()
    assert {c["clientId"] for c in clients} >= set(OWN_CLIENTS)
    for client in clients:
        assert client.get("directAccessGrantsEnabled") is False, client["clientId"]
        assert client.get("implicitFlowEnabled") is False, client["clientId"]


@pytest.mark.parametrize("client_id", OWN_CLIENTS)
def test_password_grant_is_refused(
    keycloak_url: str, dev_credentials: dict[str, Any], client_id: str
) -> None:
    """The resource-owner password grant with valid user credentials is refused for each client."""
    user = dev_credentials["users"][0]
    secret = _secret_or_none(client_id, dev_credentials)
    data = {"grant_type": "password", "username": user["username"], "password": user["password"]}
    if secret is None:
        data["client_id"] = client_id
    resp = token_request(keycloak_url, data, (client_id, secret) if secret else None)
    assert resp.status_code in (400, 401)
    assert resp.json()["error"] == "unauthorized_client"
    assert "access_token" not in resp.json()


@pytest.mark.parametrize("client_id", ["mro-gateway", "mro-cli"])
def test_authorization_request_without_pkce_is_refused(keycloak_url: str, client_id: str) -> None:
    """A code request without code_challenge goes back to the client with invalid_request."""
    redirect = GATEWAY_CALLBACK if client_id == "mro-gateway" else "http://127.0.0.1:8765/callback"
    with browser_client() as client:
        _, resp = open_login(
            client, keycloak_url, client_id=client_id, redirect_uri=redirect, use_pkce=False
        )
    assert resp.status_code == 302
    assert _error_of_redirect(resp.headers["location"]) == "invalid_request"


def test_plain_pkce_method_is_refused(keycloak_url: str) -> None:
    """code_challenge_method=plain is refused: only S256 is accepted."""
    pkce = Pkce.new()
    with browser_client() as client:
        resp = client.get(
            oidc_url(keycloak_url, "auth"),
            params={
                "client_id": "mro-gateway",
                "response_type": "code",
                "redirect_uri": GATEWAY_CALLBACK,
                "scope": "openid",
                "state": "s",
                "code_challenge": pkce.verifier,
                "code_challenge_method": "plain",
            },
        )
    assert resp.status_code == 302
    assert _error_of_redirect(resp.headers["location"]) == "invalid_request"


def test_code_exchange_with_a_wrong_verifier_is_refused(
    keycloak_url: str, dev_credentials: dict[str, Any]
) -> None:
    """The token endpoint refuses a code whose PKCE verifier does not match the challenge."""
    user = next(u for u in dev_credentials["users"] if u["username"] == "tech1")
    with browser_client() as client:
        page, _ = open_login(client, keycloak_url)
        code = page.code(page.login(user["username"], user["password"]))
        page.pkce = Pkce.new()
        resp = exchange_code(
            client,
            keycloak_url,
            page,
            code,
            client_secret=client_secret("mro-gateway", dev_credentials),
        )
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"


def test_implicit_flow_is_refused(keycloak_url: str) -> None:
    """response_type=token (implicit) is not allowed for the gateway."""
    with browser_client() as client:
        resp = client.get(
            oidc_url(keycloak_url, "auth"),
            params={
                "client_id": "mro-gateway",
                "response_type": "token",
                "redirect_uri": GATEWAY_CALLBACK,
                "scope": "openid",
                "state": "s",
                "nonce": "n",
            },
        )
    assert resp.status_code == 302
    fragment = parse_qs(urlsplit(resp.headers["location"]).fragment)
    assert fragment["error"] == ["unauthorized_client"]
    assert "access_token" not in fragment


def test_unregistered_redirect_uri_is_refused(keycloak_url: str) -> None:
    """The gateway's redirect URIs match exactly: another port on loopback is refused."""
    with browser_client() as client:
        _, resp = open_login(
            client, keycloak_url, redirect_uri="http://127.0.0.1:8001/auth/callback"
        )
    assert resp.status_code == 400
    assert "location" not in resp.headers


def test_cli_client_accepts_any_loopback_port(
    keycloak_url: str, dev_credentials: dict[str, Any]
) -> None:
    """mro-cli (public) logs in with a loopback redirect on an ephemeral port (RFC 8252)."""
    user = next(u for u in dev_credentials["users"] if u["username"] == "eng1")
    tokens = authorization_code_tokens(
        keycloak_url,
        user["username"],
        user["password"],
        client_id="mro-cli",
        redirect_uri="http://127.0.0.1:53917/callback",
    )
    claims = jwt_claims(tokens["access_token"])
    assert claims["azp"] == "mro-cli"
    assert "mro-gateway" in claims["aud"]


@pytest.mark.parametrize(
    "redirect_uri", ["http://127.0.0.1:53917/elsewhere", "http://evil.example:53917/callback"]
)
def test_cli_client_refuses_other_redirects(keycloak_url: str, redirect_uri: str) -> None:
    """mro-cli only redirects to /callback on 127.0.0.1."""
    with browser_client() as client:
        _, resp = open_login(client, keycloak_url, client_id="mro-cli", redirect_uri=redirect_uri)
    assert resp.status_code == 400


def test_service_client_has_client_credentials_only(
    keycloak_url: str, keycloak_admin: KeycloakAdmin
) -> None:
    """mro-planning-sync has no browser flow and no redirect: no login page is offered for it."""
    client_uuid = keycloak_admin.get_client_id("mro-planning-sync")
    assert client_uuid is not None
    client = keycloak_admin.get_client(client_uuid)
    assert client["standardFlowEnabled"] is False
    assert client["serviceAccountsEnabled"] is True
    assert client["redirectUris"] == []
    with browser_client() as http:
        _, resp = open_login(
            http, keycloak_url, client_id="mro-planning-sync", redirect_uri=GATEWAY_CALLBACK
        )
    assert resp.status_code == 400
    assert 'id="kc-form-login"' not in resp.text


def test_public_cli_client_cannot_use_client_credentials(keycloak_url: str) -> None:
    """A public client has no service account: client credentials are refused."""
    resp = token_request(
        keycloak_url, {"grant_type": "client_credentials", "client_id": "mro-cli"}, None
    )
    assert resp.status_code in (400, 401)
    assert "access_token" not in resp.json()
