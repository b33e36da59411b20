"""Login and admin events of realm mro are stored and readable through the admin API."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from keycloak import KeycloakAdmin

from devstack.keycloak import client_secret
from tests.keycloak_flows import authorization_code_tokens

pytestmark = pytest.mark.keycloak


def test_login_events_are_stored(
    keycloak_url: str, keycloak_admin: KeycloakAdmin, dev_credentials: dict[str, Any]
) -> None:
    """A completed login and its code exchange are recorded for the user."""
    user = next(u for u in dev_credentials["users"] if u["username"] == "eng1")
    tokens = authorization_code_tokens(
        keycloak_url,
        user["username"],
        user["password"],
        client_secret=client_secret("mro-gateway", dev_credentials),
    )
    user_id = keycloak_admin.get_user_id("eng1")
    events = keycloak_admin.get_events(query={"user": user_id, "max": 50})
    sessions = {e.get("sessionId") for e in events if e["type"] == "LOGIN"}
    assert tokens["session_state"] in sessions
    assert any(e["type"] == "CODE_TO_TOKEN" for e in events)


def test_admin_events_are_stored_with_details(keycloak_admin: KeycloakAdmin) -> None:
    """Creating a user through the admin API leaves an admin event with its representation."""
    username = f"evt{secrets.token_hex(5)}"
    user_id = keycloak_admin.create_user({"username": username, "enabled": True})
    try:
        events = keycloak_admin.get_admin_events(
            query={"operationTypes": "CREATE", "resourceTypes": "USER", "max": 50}
        )
        mine = [e for e in events if e.get("resourcePath") == f"users/{user_id}"]
        assert mine
        assert username in mine[0]["representation"]
    finally:
        keycloak_admin.delete_user(user_id)
