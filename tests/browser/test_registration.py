"""A stranger registers on Keycloak's page, verifies the mailed link and chats as a technician."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator

import pytest
from keycloak import KeycloakAdmin
from playwright.sync_api import expect

from tests.browser.mail import newest_mail
from tests.browser.pages import Ui
from tests.browser.people import APP_ROLES, app_roles, delete_by_username, new_password
from tests.fixtures.keycloak import MailSink
from tests.fixtures.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

QUESTION = "Fault: the left main gear brake temperature reads high after taxi. How do I check it?"


@pytest.fixture
def new_username(keycloak_admin: KeycloakAdmin) -> Iterator[str]:
    """A username nobody has; whoever registers with it is deleted after the test."""
    username = f"reg{secrets.token_hex(4)}"
    yield username
    delete_by_username(keycloak_admin, username)


def test_stranger_registers_verifies_email_and_chats_as_technician(
    live_stack: LiveStack,
    open_ui: Callable[..., Ui],
    keycloak_admin: KeycloakAdmin,
    mail_sink: MailSink,
    new_username: str,
) -> None:
    """Register, follow the verification mail, land signed in, ask; the only role is technician."""
    email = f"{new_username}@mro.test"
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    ui.open()
    ui.heading("Sign in")
    page.get_by_role("link", name="Register").click()
    form = page.locator("#kc-register-form")
    expect(form).to_be_visible()
    password = new_password()
    for field, value in {
        "username": new_username,
        "email": email,
        "firstName": "Rhea",
        "lastName": "Gistrant",
        "password": password,
        "password-confirm": password,
        "base_station": "MAN",
        "department": "Line Maintenance",
    }.items():
        form.locator(f"#{field}").fill(value)
    ui.shot("40-keycloak-register")
    with page.expect_navigation():
        form.get_by_role("button", name="Register").click()

    expect(page.locator("#kc-page-title")).to_contain_text(re.compile("verif", re.IGNORECASE))
    ui.shot("41-verify-email")
    user_id = keycloak_admin.get_user_id(new_username)
    assert user_id is not None
    assert keycloak_admin.get_user(user_id)["emailVerified"] is False

    mail = newest_mail(mail_sink, email)
    assert "verif" in mail.subject.lower()
    page.goto(mail.link)
    page.wait_for_url(f"{live_stack.gateway_url}/**")
    ui.heading("Your conversations")
    expect(page.get_by_role("link", name="Rhea Gistrant")).to_be_visible()
    expect(page.locator(".list-region")).not_to_have_attribute("aria-busy", "true")
    ui.shot("42-registered-home")
    assert keycloak_admin.get_user(user_id)["emailVerified"] is True
    assert app_roles(keycloak_admin, user_id) == {"technician"}
    session = page.request.get(f"{live_stack.gateway_url}/auth/session").json()
    assert session["user"]["username"] == new_username
    assert set(session["user"]["roles"]) & APP_ROLES == {"technician"}

    page.get_by_role("navigation", name="Main").get_by_role("link", name="New conversation").click()
    ui.heading("New conversation")
    page.get_by_label("Your question").fill(QUESTION)
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".message-assistant").last
    expect(answer.locator(".message-label")).to_contain_text("Troubleshooting agent")
    expect(answer).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=30_000)
    expect(answer.locator(".message-content")).to_contain_text("fault isolation task")
    expect(answer.locator(".badge")).to_have_count(0)
    assert re.search(r"#/conversations/[0-9a-f-]{36}$", page.url)
    ui.shot("43-registered-answer", full_page=False)
    assert ui.errors == []
