"""``/api/me`` against the real Keycloak, called with real access tokens of dev and throwaway
users; edits are checked in Keycloak itself through the master admin."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from keycloak import KeycloakAdmin

from gateway.identity import AuthMethod, Identity
from tests.gateway.idp.test_admin_client import (
    Api,
    Person,
    bearer,
    dead_keycloak,
    fixed_caller_client,
    serve_api,
)

pytestmark = pytest.mark.keycloak

API_KEY_CALLER = Identity(
    subject="apikey:k7Qm2xR9vT4w",
    method=AuthMethod.API_KEY,
    roles=frozenset({"service", "technician"}),
    username="planning sync",
    api_key_id="k7Qm2xR9vT4w",
    permissions=frozenset({"profile:read:own", "profile:update:own"}),
)


@pytest.fixture(scope="module")
async def api(
    keycloak_url: str,
    dev_credentials: dict[str, Any],
    keycloak_admin: KeycloakAdmin,
    user_tokens: Callable[[str], dict[str, Any]],
) -> AsyncIterator[Api]:
    async with serve_api(keycloak_url, dev_credentials, keycloak_admin, user_tokens) as served:
        yield served


@pytest.fixture(scope="module")
def steady(api: Api) -> Person:
    """One throwaway user whose profile the refusal tests try to change."""
    return api.people.create(
        employee_id="E-7002", licence_number="UK.66.70002", department="Stores"
    )


async def test_profile_of_a_dev_user_comes_from_keycloak(api: Api) -> None:
    """tech1 sees their names, effective roles, MRO attributes and how they authenticated."""
    response = await api.client.get("/api/me", headers=bearer(api.tokens("tech1")))
    assert response.status_code == 200, response.text
    profile = response.json()
    assert profile["username"] == "tech1"
    assert profile["email"] == "tech1@mro.test"
    assert (profile["first_name"], profile["last_name"]) == ("Tara", "Technician")
    assert profile["roles"] == ["technician"]
    assert profile["attributes"] == {
        "employee_id": "E-1001",
        "licence_number": "UK.66.10001",
        "base_station": "LHR",
        "department": "Line Maintenance",
    }
    assert profile["auth_method"] == "jwt"
    assert profile["service"] is False
    assert "profile:update:own" in profile["permissions"]


async def test_profile_roles_are_effective_roles(api: Api) -> None:
    """A manager's profile lists the roles their role includes."""
    response = await api.client.get("/api/me", headers=bearer(api.tokens("mgr1")))
    assert response.json()["roles"] == ["engineer", "manager", "technician"]


async def test_own_profile_edits_reach_keycloak(api: Api) -> None:
    """Names and MRO attributes change in Keycloak; email, employee id, licence stay; audited."""
    person = api.people.create(
        "technician", employee_id="E-7001", licence_number="UK.66.70001", base_station="LHR"
    )
    body = {
        "first_name": "Siobhán",
        "last_name": "O'Neill-Ward",
        "base_station": "egll",
        "department": "Base Maintenance",
    }
    response = await api.client.patch("/api/me", json=body, headers=bearer(api.tokens(person)))
    assert response.status_code == 200, response.text
    assert response.json()["attributes"]["base_station"] == "EGLL"
    stored = api.master.get_user(person.id)
    assert (stored["firstName"], stored["lastName"]) == ("Siobhán", "O'Neill-Ward")
    assert stored["email"] == person.email
    assert stored["attributes"]["base_station"] == ["EGLL"]
    assert stored["attributes"]["licence_number"] == ["UK.66.70001"]
    assert stored["attributes"]["department"] == ["Base Maintenance"]
    assert stored["attributes"]["employee_id"] == ["E-7001"]
    (event,) = api.audit.about(person.id, "profile.updated")
    assert event.actor == person.id
    assert event.details["base_station"] == {"before": "LHR", "after": "EGLL"}
    assert event.details["first_name"] == {"before": "Throw", "after": "Siobhán"}


async def test_null_removes_an_attribute(api: Api) -> None:
    """Sending null for an MRO attribute removes it from the profile in Keycloak."""
    person = api.people.create(department="Stores")
    response = await api.client.patch(
        "/api/me", json={"department": None}, headers=bearer(api.tokens(person))
    )
    assert response.status_code == 200, response.text
    assert "department" not in api.master.get_user(person.id).get("attributes", {})


@pytest.mark.parametrize(
    "body",
    [
        {"roles": ["admin"]},
        {"username": "someone-else"},
        {"email": "new@mro.test"},
        {"enabled": False},
        {"first_name": None},
        {"first_name": "R2D2"},
        {"last_name": "<script>"},
        {"base_station": "LONDON"},
        {"department": "x"},
    ],
)
async def test_forbidden_and_invalid_fields_are_refused(
    api: Api, steady: Person, body: dict[str, Any]
) -> None:
    """Fields outside the own-profile set, and invalid values, are a 422 that changes nothing."""
    person = steady
    before = api.master.get_user(person.id)
    response = await api.client.patch("/api/me", json=body, headers=bearer(api.tokens(person)))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_failed"
    after = api.master.get_user(person.id)
    assert (after["username"], after["email"], after["attributes"]) == (
        before["username"],
        before["email"],
        before["attributes"],
    )


@pytest.mark.parametrize(
    "body",
    [
        {"licence_number": "UK.66.999999Z"},
        {"licence_number": None},
        {"department": "Hangar 9", "licence_number": "UK.66.999999Z"},
        {"employee_id": "E-0001"},
    ],
)
async def test_admin_managed_fields_are_refused_and_nothing_is_stored(
    api: Api, steady: Person, body: dict[str, Any]
) -> None:
    """Setting one's own licence number or employee id is a 403 naming who sets it; no change."""
    before = api.master.get_user(steady.id)
    response = await api.client.patch("/api/me", json=body, headers=bearer(api.tokens(steady)))
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "admin_managed_field"
    assert "manager or an admin" in problem["detail"]
    after = api.master.get_user(steady.id)
    assert after["attributes"] == before["attributes"]
    assert after["attributes"]["licence_number"] == ["UK.66.70002"]
    assert api.audit.about(steady.id, "profile.updated") == []


async def test_password_change_leads_to_the_gateways_login_with_keycloaks_action(
    api: Api,
) -> None:
    """The answered URL starts the gateway's own login flow asking Keycloak's password form."""
    person = api.people.create()
    response = await api.client.post("/api/me/password", headers=bearer(api.tokens(person)))
    assert response.status_code == 200, response.text
    url = response.json()["url"]
    assert url.startswith(f"{api.settings.public_url.rstrip('/')}/auth/login?")
    query = parse_qs(urlsplit(url).query)
    assert query["action"] == ["update_password"]
    assert query["return_to"] == ["/"]


async def test_api_key_callers_get_what_their_key_says_without_keycloak(api: Api) -> None:
    """An API key's profile is built from the credential alone: Keycloak is never asked."""
    async with (
        dead_keycloak(api.settings) as down,
        fixed_caller_client(api.settings, down, API_KEY_CALLER) as client,
    ):
        response = await client.get("/api/me")
        assert response.status_code == 200, response.text
        profile = response.json()
        assert profile["id"] == "apikey:k7Qm2xR9vT4w"
        assert profile["service"] is True
        assert profile["auth_method"] == "api_key"
        assert profile["roles"] == ["service", "technician"]
        refused = await client.patch("/api/me", json={"department": "Ops"})
        assert refused.status_code == 403
        assert refused.json()["code"] == "profile_not_editable"
        password = await client.post("/api/me/password")
        assert password.json()["code"] == "profile_not_editable"


async def test_keycloak_down_is_a_503_problem(api: Api) -> None:
    """With Keycloak's admin API unreachable, a real user's profile answers 503 problem+json."""
    caller = await api.identity("eng1")
    async with (
        dead_keycloak(api.settings) as down,
        fixed_caller_client(api.settings, down, caller) as client,
    ):
        response = await client.get("/api/me")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "keycloak_unavailable"
    assert "Errno" not in problem["detail"]
    assert "httpx" not in response.text
