"""A user who forgot the password resets it by mail from Keycloak's login page."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from keycloak import KeycloakAdmin
from playwright.sync_api import expect

from tests.browser.mail import newest_mail
from tests.browser.pages import KEYCLOAK_LOGIN, Ui
from tests.browser.people import Person, new_password, throwaway_user
from tests.fixtures.keycloak import MailSink
from tests.fixtures.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

INVALID_CREDENTIALS = re.compile("Invalid username or password")


@pytest.fixture
def forgetful(keycloak_admin: KeycloakAdmin) -> Iterator[Person]:
    """A verified technician whose password the test replaces."""
    with throwaway_user(keycloak_admin, "reset", "Fergus", "Gotten") as person:
        yield person


def test_forgotten_password_is_reset_by_mail_and_the_old_one_stops_working(
    live_stack: LiveStack,
    open_ui: Callable[..., Ui],
    mail_sink: MailSink,
    forgetful: Person,
) -> None:
    """Forgot password → mail → new password → signed in; afterwards only the new one works."""
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    ui.open()
    ui.heading("Sign in")
    page.get_by_role("link", name="Sign in", exact=True).click()
    page.wait_for_url(KEYCLOAK_LOGIN)
    with page.expect_navigation():
        page.get_by_role("link", name=re.compile("Forgot password", re.IGNORECASE)).click()
    form = page.locator("#kc-reset-password-form")
    form.locator("#username").fill(forgetful.email)
    ui.shot("50-forgot-password")
    with page.expect_navigation():
        form.get_by_role("button", name="Submit").click()
    # Keycloak says the same whether or not the address belongs to someone.
    page.wait_for_url(KEYCLOAK_LOGIN)
    expect(page.locator("body")).to_contain_text("You should receive an email shortly")
    ui.shot("51-reset-mail-sent")

    mail = newest_mail(mail_sink, forgetful.email)
    assert "password" in mail.subject.lower()
    page.goto(mail.link)
    expect(page.locator("#kc-page-title")).to_contain_text("Update password")
    password = new_password()
    page.locator("#password-new").fill(password)
    page.locator("#password-confirm").fill(password)
    ui.shot("52-new-password")
    with page.expect_navigation():
        page.get_by_role("button", name="Submit").click()
    page.wait_for_url(f"{live_stack.gateway_url}/**")
    ui.heading("Your conversations")
    expect(page.get_by_role("link", name=forgetful.name)).to_be_visible()
    expect(page.locator(".list-region")).not_to_have_attribute("aria-busy", "true")
    ui.shot("53-reset-signed-in")
    ui.sign_out()

    page.get_by_role("link", name="Sign in", exact=True).click()
    ui.keycloak_login(forgetful.username, forgetful.password)
    expect(ui.keycloak_error()).to_have_text(INVALID_CREDENTIALS)
    ui.shot("54-old-password-refused")
    ui.keycloak_login(forgetful.username, password)
    page.wait_for_url(f"{live_stack.gateway_url}/**")
    ui.heading("Your conversations")
    assert ui.errors == []
