"""Admins administer people in Keycloak's console with their own account; managers cannot.

The tokens come from a real authorization code + PKCE login at ``security-admin-console``, the
client the console at /admin/mro/console/ uses, and call the admin REST API the console calls.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from keycloak import KeycloakAdmin

from devstack.keycloak import REALM, REALM_FILE
from tests.keycloak_flows import browser_client, exchange_code, open_login

pytestmark = pytest.mark.keycloak

CONSOLE_CLIENT = "security-admin-console"
# What an administrator of people needs in the console: users, their roles and groups, their
# sessions and login/admin events. Nothing that configures the realm or its clients.
PEOPLE_ADMINISTRATION = {"view-users", "manage-users", "query-users", "query-groups", "view-events"}
CONFIGURATION = {
    "realm-admin",
    "view-realm",
    "manage-realm",
    "view-clients",
    "manage-clients",
    "query-clients",
    "create-client",
    "manage-events",
    "view-identity-providers",
    "manage-identity-providers",
    "view-authorization",
    "manage-authorization",
    "query-realms",
    "impersonation",
}

ConsoleApi = Callable[[str], httpx.Client]


@pytest.fixture(scope="module")
def console_api(keycloak_url: str, dev_credentials: dict[str, Any]) -> Iterator[ConsoleApi]:
    """username -> an httpx client calling the admin API with that user's console token."""
    passwords = {user["username"]: user["password"] for user in dev_credentials["users"]}
    clients: list[httpx.Client] = []

    def login(username: str) -> httpx.Client:
        redirect = f"{keycloak_url}/admin/{REALM}/console/"
        with browser_client() as browser:
            page, _ = open_login(
                browser, keycloak_url, client_id=CONSOLE_CLIENT, redirect_uri=redirect
            )
            code = page.code(page.login(username, passwords[username]))
            tokens = exchange_code(browser, keycloak_url, page, code, client_id=CONSOLE_CLIENT)
        assert tokens.status_code == 200, tokens.text
        client = httpx.Client(
            base_url=keycloak_url,
            headers={"Authorization": f"Bearer {tokens.json()['access_token']}"},
            timeout=30,
        )
        clients.append(client)
        return client

    yield login
    for client in clients:
        client.close()


def test_admin_role_carries_people_administration_only(keycloak_admin: KeycloakAdmin) -> None:
    """Realm role admin includes exactly the realm-management roles for people, in the file and
    live; no configuration role and no other realm role."""
    realm = json.loads(REALM_FILE.read_text(encoding="utf-8"))
    role = next(r for r in realm["roles"]["realm"] if r["name"] == "admin")
    assert role["composites"] == {"client": {"realm-management": sorted(PEOPLE_ADMINISTRATION)}}
    composites = keycloak_admin.get_composite_realm_roles_of_role("admin")
    management = keycloak_admin.get_client_id("realm-management")
    from_management = [r for r in composites if r.get("containerId") == management]
    names = {r["name"] for r in from_management}
    assert names == PEOPLE_ADMINISTRATION
    assert not names & CONFIGURATION
    assert [r["name"] for r in composites if not r.get("clientRole")] == []


def test_admin_signs_into_the_console_and_lists_users(console_api: ConsoleApi) -> None:
    """admin1's console token opens the console (whoami) and lists the realm's users."""
    api = console_api("admin1")
    whoami = api.get(f"/admin/{REALM}/console/whoami", params={"currentRealm": REALM})
    assert whoami.status_code == 200
    assert set(whoami.json()["realm_access"][REALM]) >= {"view-users", "manage-users"}
    users = api.get(f"/admin/realms/{REALM}/users", params={"briefRepresentation": "true"})
    assert users.status_code == 200
    assert "tech1" in {u["username"] for u in users.json()}


def test_admin_creates_a_person_grants_a_role_and_reads_events(console_api: ConsoleApi) -> None:
    """admin1 creates a user, maps realm role engineer, reads sessions and events, deletes it."""
    api = console_api("admin1")
    admin = f"/admin/realms/{REALM}"
    username = f"console{secrets.token_hex(4)}"
    created = api.post(
        f"{admin}/users",
        json={"username": username, "email": f"{username}@mro.test", "enabled": True},
    )
    assert created.status_code == 201, created.text
    user = created.headers["Location"].rsplit("/", 1)[-1]
    try:
        available = api.get(f"{admin}/users/{user}/role-mappings/realm/available")
        assert available.status_code == 200
        engineer = [r for r in available.json() if r["name"] == "engineer"]
        assert engineer
        mapped = api.post(f"{admin}/users/{user}/role-mappings/realm", json=engineer)
        assert mapped.status_code == 204, mapped.text
        assert api.get(f"{admin}/users/{user}/sessions").status_code == 200
        assert api.get(f"{admin}/events", params={"max": 1}).status_code == 200
        assert api.get(f"{admin}/admin-events", params={"max": 1}).status_code == 200
    finally:
        assert api.delete(f"{admin}/users/{user}").status_code == 204


def test_admin_cannot_configure_the_realm_or_its_clients(console_api: ConsoleApi) -> None:
    """admin1 may not read clients, list realm roles' definitions, or change realm settings."""
    api = console_api("admin1")
    admin = f"/admin/realms/{REALM}"
    assert api.get(f"{admin}/clients").status_code == 403
    assert api.get(f"{admin}/roles").status_code == 403
    assert api.put(admin, json={"displayName": "taken over"}).status_code == 403


@pytest.mark.parametrize("username", ["mgr1", "eng1", "tech1"])
def test_people_without_admin_are_refused_by_the_console(
    console_api: ConsoleApi, username: str
) -> None:
    """A manager (or anyone below) signs in but the console's API answers 403 to everything."""
    api = console_api(username)
    whoami = api.get(f"/admin/{REALM}/console/whoami", params={"currentRealm": REALM})
    assert whoami.status_code == 403
    assert api.get(f"/admin/realms/{REALM}/users").status_code == 403
