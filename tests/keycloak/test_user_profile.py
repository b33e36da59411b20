"""The realm's user profile at Keycloak itself: a person sees their Part-66 licence number but
cannot change it, neither on Keycloak's update-profile form nor through its account REST API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from keycloak import KeycloakAdmin

from tests.gateway.idp.test_admin_client import People, Person, person_tokens
from tests.keycloak_flows import browser_client, open_login, realm_url

pytestmark = pytest.mark.keycloak

LICENCE = "UK.66.55555A"
READ_ONLY = "This field is read only."


@pytest.fixture
def people(keycloak_admin: KeycloakAdmin) -> Iterator[People]:
    """Throwaway people, deleted after the test."""
    made = People(keycloak_admin)
    yield made
    made.cleanup()


def _licence(keycloak_admin: KeycloakAdmin, person: Person) -> list[str] | None:
    attributes: dict[str, list[str]] = keycloak_admin.get_user(person.id).get("attributes", {})
    return attributes.get("licence_number")


def _input(html: str, name: str) -> str:
    match = re.search(rf'<input[^>]*\bname="{name}"[^>]*>', html, re.DOTALL)
    assert match, f"no input {name!r} on the page"
    return match.group(0)


def test_update_profile_form_shows_the_licence_but_refuses_a_new_one(
    keycloak_url: str, keycloak_admin: KeycloakAdmin, people: People
) -> None:
    """Keycloak's own profile form shows the licence disabled and refuses a changed value."""
    person = people.create(licence_number=LICENCE, base_station="LHR")
    keycloak_admin.update_user(person.id, {"requiredActions": ["UPDATE_PROFILE"]})
    with browser_client() as client:
        page, _ = open_login(client, keycloak_url)
        page.login(person.username, person.password)
        field = _input(page.html, "licence_number")
        assert f'value="{LICENCE}"' in field
        assert re.search(r"\sdisabled\b", field)
        answer = page.submit(
            "kc-update-profile-form",
            {
                "email": person.email,
                "firstName": "Throw",
                "lastName": "Away",
                "base_station": "LHR",
                "licence_number": "FORGED.66.1",
            },
        )
    assert answer.status_code == 200
    assert READ_ONLY in answer.text
    assert _licence(keycloak_admin, person) == [LICENCE]


def test_account_api_refuses_a_licence_change(
    keycloak_url: str,
    keycloak_admin: KeycloakAdmin,
    people: People,
    dev_credentials: dict[str, Any],
) -> None:
    """With manage-account, the account API stores a new base station but refuses a licence."""
    person = people.create(licence_number=LICENCE, base_station="LHR")
    account = keycloak_admin.get_client_id("account")
    roles = [keycloak_admin.get_client_role(account, n) for n in ("manage-account", "view-profile")]
    keycloak_admin.assign_client_role(person.id, account, roles)
    # People hold no account roles by default; this person's token carries them (aud account).
    tokens = person_tokens(keycloak_url, person, dev_credentials)
    headers = {"Authorization": f"Bearer {tokens['access_token']}", "Accept": "application/json"}
    with httpx.Client(base_url=realm_url(keycloak_url), headers=headers, trust_env=False) as api:
        own = api.get("/account/")
        assert own.status_code == 200, own.text
        names = {k: own.json()[k] for k in ("username", "email", "firstName", "lastName")}

        def post(attributes: dict[str, list[str]]) -> httpx.Response:
            return api.post("/account/", json={**names, "attributes": attributes})

        moved = post({"base_station": ["MAN"], "licence_number": [LICENCE]})
        assert moved.status_code == 204, moved.text
        forged = post({"base_station": ["MAN"], "licence_number": ["FORGED.66.1"]})
    assert forged.status_code == 400
    assert forged.json()["field"] == "licence_number"
    assert forged.json()["errorMessage"] == "error-user-attribute-read-only"
    stored = keycloak_admin.get_user(person.id)["attributes"]
    assert (stored["base_station"], stored["licence_number"]) == (["MAN"], [LICENCE])
