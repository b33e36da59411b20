"""``/api/admin/users…`` against the real Keycloak, called as the dev manager (mgr1) and admin
(admin1) with their real access tokens; every effect is checked in Keycloak itself, and the
dev users are only ever the subject of refused requests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from keycloak import KeycloakAdmin

from gateway.audit.events import AuditEvent
from tests.fixtures.keycloak import MailSink
from tests.gateway.idp.test_admin_client import (
    Api,
    dead_keycloak,
    fixed_caller_client,
    serve_api,
    unique,
)
from tests.keycloak_flows import jwt_claims

pytestmark = pytest.mark.keycloak

USERS = "/api/admin/users"


@pytest.fixture(scope="module")
async def api(
    keycloak_url: str,
    dev_credentials: dict[str, Any],
    keycloak_admin: KeycloakAdmin,
    user_tokens: Callable[[str], dict[str, Any]],
) -> AsyncIterator[Api]:
    async with serve_api(keycloak_url, dev_credentials, keycloak_admin, user_tokens) as served:
        yield served


def sub(api: Api, username: str) -> str:
    """The Keycloak user id of a dev user (their token's subject)."""
    return str(jwt_claims(api.tokens(username)["access_token"])["sub"])


def roles_in_keycloak(api: Api, user_id: str) -> set[str]:
    return {r["name"] for r in api.master.get_composite_realm_roles_of_user(user_id)}


def only_event(api: Api, user_id: str, action: str) -> AuditEvent:
    events = api.audit.about(user_id, action)
    assert len(events) == 1, events
    return events[0]


def assert_problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


async def test_manager_invites_a_technician_without_a_password(
    api: Api, mail_sink: MailSink
) -> None:
    """A new user gets no credential, must verify email and set a password, and gets the mail."""
    username = unique("new")
    body = {
        "username": username,
        "email": f"{username}@mro.test",
        "first_name": "Nadia",
        "last_name": "Newcomer",
        "employee_id": "e-4242",
        "base_station": "MAN",
    }
    response = await api.call("mgr1", "POST", USERS, json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    api.people.track(created["id"])
    assert response.headers["location"] == f"{USERS}/{created['id']}"
    assert created["roles"] == ["technician"]
    assert created["attributes"]["employee_id"] == "E-4242"
    assert set(created["required_actions"]) == {"VERIFY_EMAIL", "UPDATE_PASSWORD"}
    assert created["invitation_sent"] is True
    assert api.master.get_credentials(created["id"]) == []
    assert "technician" in roles_in_keycloak(api, created["id"])
    # Keycloak answers only after the SMTP server accepted the message.
    (mail,) = mail_sink.to(body["email"])
    assert "Update Password" in mail.get_body(("plain", "html")).get_content()
    event = only_event(api, created["id"], "users.created")
    assert event.actor == sub(api, "mgr1")
    assert event.details["after"] == {"roles": ["technician"], "enabled": True}


async def test_manager_promotes_to_engineer_but_cannot_grant_manager(api: Api) -> None:
    """technician -> engineer works for a manager; manager is refused (403) and nothing changes."""
    person = api.people.create("technician")
    promoted = await api.call("mgr1", "PUT", f"{USERS}/{person.id}/roles/engineer")
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["roles"] == ["engineer", "technician"]
    assert "engineer" in roles_in_keycloak(api, person.id)
    granted = only_event(api, person.id, "users.role_granted")
    assert granted.details["before"]["roles"] == ["technician"]
    assert granted.details["after"]["roles"] == ["engineer", "technician"]

    refused = await api.call("mgr1", "PUT", f"{USERS}/{person.id}/roles/manager")
    assert_problem(refused, 403, "privileged_role")
    assert "manager" not in roles_in_keycloak(api, person.id)
    denied = [e for e in api.audit.about(person.id) if e.outcome == "denied"]
    assert [(e.action, e.reason) for e in denied] == [("users.role_granted", "privileged_role")]


async def test_admin_grants_manager_then_managers_cannot_touch_that_user(api: Api) -> None:
    """An admin can make a manager; a manager cannot then disable or demote them."""
    person = api.people.create("engineer")
    response = await api.call("admin1", "PUT", f"{USERS}/{person.id}/roles/manager")
    assert response.status_code == 200, response.text
    assert "manager" in response.json()["roles"]
    assert "manager" in roles_in_keycloak(api, person.id)
    disable = await api.call("mgr1", "POST", f"{USERS}/{person.id}/disable")
    assert_problem(disable, 403, "privileged_target")
    demote = await api.call("mgr1", "DELETE", f"{USERS}/{person.id}/roles/engineer")
    assert_problem(demote, 403, "privileged_target")
    assert api.master.get_user(person.id)["enabled"] is True


@pytest.mark.parametrize(
    ("who", "method", "suffix"),
    [
        ("mgr1", "PUT", "/roles/admin"),
        ("mgr1", "PUT", "/roles/engineer"),
        ("mgr1", "POST", "/disable"),
        ("admin1", "DELETE", "/roles/admin"),
        ("admin1", "POST", "/disable"),
        ("admin1", "PATCH", ""),
    ],
)
async def test_nobody_changes_their_own_account(
    api: Api, who: str, method: str, suffix: str
) -> None:
    """Own roles, own enabled flag and own admin-owned fields are refused (self_modification)."""
    me = sub(api, who)
    before = roles_in_keycloak(api, me)
    kwargs: dict[str, Any] = {"json": {"employee_id": "E-0000"}} if method == "PATCH" else {}
    response = await api.call(who, method, f"{USERS}/{me}{suffix}", **kwargs)
    assert_problem(response, 403, "self_modification")
    assert roles_in_keycloak(api, me) == before
    assert api.master.get_user(me)["enabled"] is True


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("POST", "/disable"), ("POST", "/logout"), ("DELETE", "/roles/technician"), ("PATCH", "")],
)
async def test_a_manager_cannot_touch_an_admin(api: Api, method: str, suffix: str) -> None:
    """admin1 holds admin: mgr1's changes to them are refused and audited as denied."""
    admin_id = sub(api, "admin1")
    kwargs: dict[str, Any] = {"json": {"department": "Hangar 2"}} if method == "PATCH" else {}
    response = await api.call("mgr1", method, f"{USERS}/{admin_id}{suffix}", **kwargs)
    assert_problem(response, 403, "privileged_target")
    assert api.master.get_user(admin_id)["enabled"] is True
    assert api.audit.about(admin_id)[-1].outcome == "denied"


async def test_service_and_unknown_roles_are_not_handled_here(api: Api) -> None:
    """Even an admin cannot grant service (403); an unknown role is a 404."""
    person = api.people.create()
    service = await api.call("admin1", "PUT", f"{USERS}/{person.id}/roles/service")
    assert_problem(service, 403, "role_not_manageable")
    unknown = await api.call("admin1", "PUT", f"{USERS}/{person.id}/roles/pilot")
    assert_problem(unknown, 404, "role_not_found")
    assert "service" not in roles_in_keycloak(api, person.id)


@pytest.mark.parametrize(("method", "suffix"), [("PUT", "/roles/admin"), ("POST", "/disable")])
async def test_service_accounts_are_left_alone(api: Api, method: str, suffix: str) -> None:
    """Even an admin cannot give a client's service account a role or disable it here."""
    client_uuid = api.master.get_client_id("mro-planning-sync")
    account = api.master.get_client_service_account_user(client_uuid)
    response = await api.call("admin1", method, f"{USERS}/{account['id']}{suffix}")
    assert_problem(response, 403, "service_account")
    assert "admin" not in roles_in_keycloak(api, account["id"])
    assert api.master.get_user(account["id"])["enabled"] is True


async def test_disable_ends_sessions_and_enable_restores_the_account(api: Api) -> None:
    """Disabling kills the user's live session at Keycloak; both changes are audited."""
    person = api.people.create("technician")
    refresh = api.live_session(person)
    disabled = await api.call("mgr1", "POST", f"{USERS}/{person.id}/disable")
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["enabled"] is False
    assert api.master.get_user(person.id)["enabled"] is False
    assert api.master.get_sessions(person.id) == []
    assert api.refresh(refresh) is None
    event = only_event(api, person.id, "users.disabled")
    assert event.details["before"]["enabled"] is True
    assert event.details["after"]["enabled"] is False
    assert event.details["sessions_ended"] is True
    assert (person.id, "users.disabled") in api.revoker.revoked
    enabled = await api.call("mgr1", "POST", f"{USERS}/{person.id}/enable")
    assert enabled.json()["enabled"] is True
    assert person.id in api.revoker.changed
    assert api.master.get_user(person.id)["enabled"] is True
    assert only_event(api, person.id, "users.enabled").details["after"]["enabled"] is True


async def test_revoking_a_role_ends_the_users_sessions(api: Api) -> None:
    """Removing engineer leaves technician and makes the user log in again."""
    person = api.people.create("engineer")
    refresh = api.live_session(person)
    response = await api.call("mgr1", "DELETE", f"{USERS}/{person.id}/roles/engineer")
    assert response.status_code == 200, response.text
    assert response.json()["roles"] == ["technician"]
    assert "engineer" not in roles_in_keycloak(api, person.id)
    assert api.refresh(refresh) is None
    assert (person.id, "users.role_revoked") in api.revoker.revoked
    event = only_event(api, person.id, "users.role_revoked")
    assert event.details["before"]["roles"] == ["engineer", "technician"]
    assert event.details["after"]["roles"] == ["technician"]


async def test_a_role_that_comes_with_another_cannot_be_revoked_alone(api: Api) -> None:
    """technician is part of engineer: revoking it alone is a 409 that changes nothing."""
    person = api.people.create("engineer")
    response = await api.call("mgr1", "DELETE", f"{USERS}/{person.id}/roles/technician")
    assert_problem(response, 409, "role_inherited")
    assert {"engineer", "technician"} <= roles_in_keycloak(api, person.id)


async def test_logout_ends_all_sessions(api: Api) -> None:
    """POST …/logout answers 204, the refresh token dies and users.logged_out is audited."""
    person = api.people.create()
    refresh = api.live_session(person)
    response = await api.call("mgr1", "POST", f"{USERS}/{person.id}/logout")
    assert response.status_code == 204, response.text
    assert api.refresh(refresh) is None
    assert (person.id, "users.logged_out") in api.revoker.revoked
    assert api.master.get_user(person.id)["enabled"] is True
    assert only_event(api, person.id, "users.logged_out").actor == sub(api, "mgr1")


async def test_list_searches_filters_and_pages(api: Api) -> None:
    """q narrows by name, role and enabled filter, limit/offset page through the rest."""
    family = unique("Zq").capitalize()
    tech = api.people.create("technician", last_name=family)
    eng = api.people.create("engineer", last_name=family)
    off = api.people.create("technician", last_name=family)
    api.master.update_user(off.id, {"enabled": False})
    everyone = await api.call("mgr1", "GET", USERS, params={"q": family})
    assert everyone.status_code == 200, everyone.text
    assert everyone.json()["total"] == 3
    names = {u["username"] for u in everyone.json()["items"]}
    assert names == {tech.username, eng.username, off.username}
    engineers = await api.call("mgr1", "GET", USERS, params={"q": family, "role": "engineer"})
    assert [u["username"] for u in engineers.json()["items"]] == [eng.username]
    assert engineers.json()["total"] == 1
    technicians = await api.call("mgr1", "GET", USERS, params={"q": family, "role": "technician"})
    assert technicians.json()["total"] == 3  # an engineer is a technician too
    disabled = await api.call("mgr1", "GET", USERS, params={"q": family, "enabled": "false"})
    assert [u["username"] for u in disabled.json()["items"]] == [off.username]
    first = await api.call("mgr1", "GET", USERS, params={"q": family, "limit": 2})
    second = await api.call("mgr1", "GET", USERS, params={"q": family, "limit": 2, "offset": 2})
    pages = [u["username"] for u in first.json()["items"] + second.json()["items"]]
    assert sorted(pages) == sorted(names)


async def test_role_filtered_scan_says_when_it_stopped_early(
    keycloak_url: str,
    dev_credentials: dict[str, Any],
    keycloak_admin: KeycloakAdmin,
    user_tokens: Callable[[str], dict[str, Any]],
) -> None:
    """When the scan bound is reached before the end, the page's total is unknown (null)."""
    async with serve_api(
        keycloak_url, dev_credentials, keycloak_admin, user_tokens, scan_limit=2
    ) as small:
        family = unique("Zs").capitalize()
        for _ in range(3):
            small.people.create("technician", last_name=family)
        params = {"q": family, "role": "technician"}
        response = await small.call("mgr1", "GET", USERS, params=params)
        assert response.status_code == 200, response.text
        assert response.json()["total"] is None
        assert len(response.json()["items"]) == 2


async def test_one_user_and_unknown_ids(api: Api) -> None:
    """GET /{id} shows a user with effective roles; an unknown id is a 404 problem."""
    person = api.people.create("engineer")
    shown = await api.call("mgr1", "GET", f"{USERS}/{person.id}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["roles"] == ["engineer", "technician"]
    missing = await api.call("mgr1", "GET", f"{USERS}/00000000-0000-0000-0000-000000000000")
    assert_problem(missing, 404, "user_not_found")
    odd = await api.call("mgr1", "GET", f"{USERS}/not..a-user")
    assert_problem(odd, 422, "validation_failed")


async def test_manager_sets_an_employee_id(api: Api) -> None:
    """PATCH /{id} changes admin-owned attributes in Keycloak and audits before/after."""
    person = api.people.create(employee_id="E-1111")
    response = await api.call(
        "mgr1", "PATCH", f"{USERS}/{person.id}", json={"employee_id": "E-2222"}
    )
    assert response.status_code == 200, response.text
    assert api.master.get_user(person.id)["attributes"]["employee_id"] == ["E-2222"]
    assert api.master.get_user(person.id)["email"] == person.email
    event = only_event(api, person.id, "users.updated")
    assert event.details == {"employee_id": {"before": "E-1111", "after": "E-2222"}}


async def test_manager_sets_a_technicians_licence_number(api: Api) -> None:
    """A manager's licence number for a technician is stored in Keycloak (in capitals), audited."""
    person = api.people.create("technician", licence_number="UK.66.10000A", base_station="LHR")
    response = await api.call(
        "mgr1", "PATCH", f"{USERS}/{person.id}", json={"licence_number": "uk.66.424242b"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["attributes"]["licence_number"] == "UK.66.424242B"
    stored = api.master.get_user(person.id)["attributes"]
    assert stored["licence_number"] == ["UK.66.424242B"]
    assert stored["base_station"] == ["LHR"]
    event = only_event(api, person.id, "users.updated")
    assert event.details == {"licence_number": {"before": "UK.66.10000A", "after": "UK.66.424242B"}}


@pytest.mark.parametrize("licence", ["UK 66 123", "A" * 33, "-UK.66", "UK.66.1<b>"])
async def test_an_invalid_licence_number_is_refused(api: Api, licence: str) -> None:
    """A licence number outside 3-32 capitals, digits and . / - is a 422; nothing changes."""
    person = api.people.create("technician", licence_number="UK.66.20000A")
    response = await api.call(
        "mgr1", "PATCH", f"{USERS}/{person.id}", json={"licence_number": licence}
    )
    assert_problem(response, 422, "validation_failed")
    assert api.master.get_user(person.id)["attributes"]["licence_number"] == ["UK.66.20000A"]


@pytest.mark.parametrize(
    "body",
    [
        {"role": "manager"},
        {"role": "service"},
        {"password": "Secret-Password-1"},
        {"username": "x"},
        {"username": "service-account-erp"},
        {"email": "not-an-email"},
    ],
)
async def test_creation_refuses_privileged_roles_passwords_and_bad_fields(
    api: Api, body: dict[str, Any]
) -> None:
    """Only technician or engineer, no password, valid names: anything else is a 422."""
    username = unique("bad")
    base = {
        "username": username,
        "email": f"{username}@mro.test",
        "first_name": "A",
        "last_name": "B",
    }
    response = await api.call("mgr1", "POST", USERS, json={**base, **body})
    assert_problem(response, 422, "validation_failed")
    assert api.master.get_users({"username": username, "exact": True}) == []


async def test_duplicate_username_is_a_conflict(api: Api) -> None:
    """Creating a user whose username exists answers 409 user_exists."""
    person = api.people.create()
    body = {
        "username": person.username,
        "email": f"other-{person.username}@mro.test",
        "first_name": "Du",
        "last_name": "Plicate",
    }
    response = await api.call("mgr1", "POST", USERS, json=body)
    assert_problem(response, 409, "user_exists")


async def test_technicians_cannot_administer_users(api: Api) -> None:
    """Without users:manage every route refuses, even if the policy let the request through."""
    person = api.people.create()
    listing = await api.call("tech1", "GET", USERS)
    assert_problem(listing, 403, "permission_denied")
    grant = await api.call("eng1", "PUT", f"{USERS}/{person.id}/roles/engineer")
    assert_problem(grant, 403, "permission_denied")
    assert "engineer" not in roles_in_keycloak(api, person.id)


async def test_keycloak_down_is_a_503_problem(api: Api) -> None:
    """With the admin API unreachable, listing answers 503 problem+json, no internals."""
    caller = await api.identity("mgr1")
    async with (
        dead_keycloak(api.settings) as down,
        fixed_caller_client(api.settings, down, caller) as client,
    ):
        response = await client.get(USERS)
    assert_problem(response, 503, "keycloak_unavailable")
    assert "Traceback" not in response.text
    assert "ConnectError" not in response.text
