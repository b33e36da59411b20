"""Self-registration through Keycloak's own form: policy, uniqueness, email verification, roles."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakPutError

from devstack.keycloak import client_secret
from tests.fixtures.keycloak import MailSink
from tests.keycloak_flows import (
    LoginPage,
    browser_client,
    exchange_code,
    jwt_claims,
    link_containing,
    open_login,
)

pytestmark = pytest.mark.keycloak

PRIVILEGED = {"engineer", "manager", "admin", "service"}
VERIFY_EMAIL_PAGE = 'data-page-id="login-login-verify-email"'


@pytest.fixture
def new_username(keycloak_admin: KeycloakAdmin) -> Iterator[str]:
    """A username nobody has; the user is deleted after the test if it was created."""
    username = f"reg{secrets.token_hex(5)}"
    yield username
    user_id = keycloak_admin.get_user_id(username)
    if user_id:
        keycloak_admin.delete_user(user_id)


def _registration_page(client: httpx.Client, keycloak_url: str) -> LoginPage:
    page, resp = open_login(client, keycloak_url)
    assert resp.status_code == 200
    resp = page.get(link_containing(page.html, "login-actions/registration", keycloak_url))
    assert resp.status_code == 200
    return page


def _register(page: LoginPage, username: str, email: str, password: str) -> httpx.Response:
    return page.submit(
        "kc-register-form",
        {
            "username": username,
            "email": email,
            "firstName": "Regi",
            "lastName": "Strant",
            "password": password,
            "password-confirm": password,
            "base_station": "MAN",
            "department": "Line Maintenance",
        },
    )


def _verification_link(sink: MailSink, email: str) -> str:
    mails = sink.to(email)
    assert mails, f"no mail to {email}"
    body = mails[-1].get_body(preferencelist=("plain",))
    assert body is not None
    links = re.findall(r"https?://\S+/login-actions/action-token\S+", body.get_content())
    assert links
    return str(links[0])


def test_registration_form_offers_only_user_editable_attributes(keycloak_url: str) -> None:
    """The form asks for base station and department, not HR-managed employee id or licence."""
    with browser_client() as client:
        html = _registration_page(client, keycloak_url).html
    names = set(re.findall(r'name="([^"]+)"', html))
    assert {"username", "email", "password", "base_station", "department"} <= names
    assert not {"employee_id", "licence_number"} & names


@pytest.mark.parametrize(
    ("password_of", "message"),
    [
        (lambda user: "Short-pw1", "Invalid password: minimum length 12."),
        (lambda user: user, "Invalid password: must not be equal to the username."),
    ],
    ids=["too-short", "username"],
)
def test_weak_password_is_rejected(
    keycloak_url: str,
    keycloak_admin: KeycloakAdmin,
    new_username: str,
    password_of: Any,
    message: str,
) -> None:
    """The password policy refuses the registration with Keycloak's message; no user is made."""
    with browser_client() as client:
        page = _registration_page(client, keycloak_url)
        resp = _register(page, new_username, f"{new_username}@mro.test", password_of(new_username))
    assert resp.status_code == 200
    assert message in resp.text
    assert keycloak_admin.get_user_id(new_username) is None


def test_password_equal_to_email_is_not_accepted(
    keycloak_url: str, keycloak_admin: KeycloakAdmin, new_username: str
) -> None:
    """The email as password cannot finish registration: Keycloak demands a new password first."""
    email = f"{new_username}@mro.test"
    with browser_client() as client:
        resp = _register(_registration_page(client, keycloak_url), new_username, email, email)
    assert resp.status_code == 200
    assert "You need to change your password to activate your account." in resp.text
    user_id = keycloak_admin.get_user_id(new_username)
    assert user_id is not None
    assert "UPDATE_PASSWORD" in keycloak_admin.get_user(user_id)["requiredActions"]


def test_admin_password_changes_follow_the_policy(
    keycloak_admin: KeycloakAdmin, new_username: str
) -> None:
    """Setting the email, or one of the last five passwords, as password is refused."""
    email = f"{new_username}@mro.test"
    user_id = keycloak_admin.create_user(
        {
            "username": new_username,
            "email": email,
            "enabled": True,
            "firstName": "P",
            "lastName": "Q",
        }
    )
    with pytest.raises(KeycloakPutError, match="must not be equal to the email"):
        keycloak_admin.set_user_password(user_id, email, temporary=False)
    keycloak_admin.set_user_password(user_id, "First-dev-only-pass-1", temporary=False)
    keycloak_admin.set_user_password(user_id, "Second-dev-only-pass-2", temporary=False)
    with pytest.raises(KeycloakPutError, match="last 5 passwords"):
        keycloak_admin.set_user_password(user_id, "First-dev-only-pass-1", temporary=False)


def test_duplicate_email_is_rejected(
    keycloak_url: str, keycloak_admin: KeycloakAdmin, new_username: str
) -> None:
    """Registering with a dev user's email answers 'Email already exists.' and creates nobody."""
    with browser_client() as client:
        page = _registration_page(client, keycloak_url)
        resp = _register(page, new_username, "tech1@mro.test", "Strong-dev-only-pass-42")
    assert resp.status_code == 200
    assert "Email already exists." in resp.text
    assert keycloak_admin.get_user_id(new_username) is None


def test_a_person_cannot_register_as_a_service_account(
    keycloak_url: str, keycloak_admin: KeycloakAdmin
) -> None:
    """A username starting with service-account- is refused by the realm's user profile, so no
    person can take the name Keycloak gives its clients' service accounts."""
    username = f"service-account-{secrets.token_hex(4)}"
    with browser_client() as client:
        page = _registration_page(client, keycloak_url)
        resp = _register(page, username, f"{username}@mro.test", "Strong-dev-only-pass-42")
    created = keycloak_admin.get_user_id(username)
    if created:
        keycloak_admin.delete_user(created)
    assert resp.status_code == 200
    assert "belong to Keycloak" in resp.text
    assert created is None


def test_invalid_base_station_is_rejected(
    keycloak_url: str, keycloak_admin: KeycloakAdmin, new_username: str
) -> None:
    """The user profile validates base_station as an IATA/ICAO code."""
    with browser_client() as client:
        page = _registration_page(client, keycloak_url)
        resp = page.submit(
            "kc-register-form",
            {
                "username": new_username,
                "email": f"{new_username}@mro.test",
                "firstName": "Regi",
                "lastName": "Strant",
                "password": "Strong-dev-only-pass-42",
                "password-confirm": "Strong-dev-only-pass-42",
                "base_station": "man1",
            },
        )
    assert resp.status_code == 200
    assert "IATA (3) or ICAO (4) code" in resp.text
    assert keycloak_admin.get_user_id(new_username) is None


def test_registration_needs_email_verification_and_grants_technician_only(
    keycloak_url: str,
    keycloak_admin: KeycloakAdmin,
    mail_sink: MailSink,
    dev_credentials: dict[str, Any],
    new_username: str,
) -> None:
    """A new user must verify the emailed link before login completes, and is a technician only."""
    email = f"{new_username}@mro.test"
    password = "Strong-dev-only-pass-42"
    with browser_client() as client:
        resp = _register(_registration_page(client, keycloak_url), new_username, email, password)
    assert resp.status_code == 200
    assert VERIFY_EMAIL_PAGE in resp.text

    user_id = keycloak_admin.get_user_id(new_username)
    assert user_id is not None
    user = keycloak_admin.get_user(user_id)
    assert user["emailVerified"] is False
    assert user["requiredActions"] == ["VERIFY_EMAIL"]
    assert user["attributes"]["base_station"] == ["MAN"]
    effective = {r["name"] for r in keycloak_admin.get_composite_realm_roles_of_user(user_id)}
    assert "technician" in effective
    assert not effective & PRIVILEGED

    with browser_client() as client:
        page, _ = open_login(client, keycloak_url)
        resp = page.login(new_username, password)
        assert resp.status_code == 200
        assert VERIFY_EMAIL_PAGE in resp.text
        code = page.code(page.get(_verification_link(mail_sink, email)))
        token = exchange_code(
            client,
            keycloak_url,
            page,
            code,
            client_secret=client_secret("mro-gateway", dev_credentials),
        )
    assert token.status_code == 200
    roles = set(jwt_claims(token.json()["access_token"])["realm_access"]["roles"])
    assert "technician" in roles
    assert not roles & PRIVILEGED
    assert keycloak_admin.get_user(user_id)["emailVerified"] is True
