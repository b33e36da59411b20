"""The page itself: sign-in for strangers, strict CSP obeyed, keyboard and tablet width."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser.pages import Ui
from tests.fixtures.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]


def test_stranger_gets_the_sign_in_page_with_its_way_back(
    live_stack: LiveStack, open_ui: Callable[..., Ui]
) -> None:
    """A deep link without a session shows sign-in; its login link returns to that address."""
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    response = page.goto(f"{live_stack.gateway_url}/#/profile")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    ui.heading("Sign in")
    login = page.get_by_role("link", name="Sign in", exact=True).get_attribute("href")
    assert login is not None
    parts = urlsplit(login)
    assert parts.path == "/auth/login"
    assert parse_qs(parts.query)["return_to"] == ["/#/profile"]
    register = page.get_by_role("link", name="Register").get_attribute("href")
    assert register == "/auth/register"
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    assert ui.errors == []


def test_tablet_portrait_keyboard_and_profile(
    live_stack: LiveStack, open_ui: Callable[..., Ui], dev_credentials: dict[str, Any]
) -> None:
    """At 768 px: no sideways scroll, a skip link, field errors; a lost session shows sign-in."""
    user = next(u for u in dev_credentials["users"] if u["roles"] == ["engineer"])
    ui = open_ui(live_stack.gateway_url, width=768)
    page = ui.page
    ui.sign_in(user["username"], user["password"], route="#/profile")
    ui.heading("Your profile")
    expect(page.get_by_label("First name")).to_have_value(user["first_name"])
    expect(page.get_by_label("Base station")).to_have_value(user["attributes"]["base_station"])
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1]
    ui.shot("30-profile-768")

    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Your profile")).to_be_focused()

    page.get_by_label("Base station").fill("LONDON")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#banner")).to_contain_text("Validation failed")
    expect(page.get_by_label("Base station")).to_have_attribute("aria-invalid", "true")
    ui.shot("31-profile-invalid-768", full_page=False)

    page.get_by_role("link", name="New conversation").click()
    ui.heading("New conversation")
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1]
    ui.shot("32-new-conversation-768")

    page.context.clear_cookies()
    page.get_by_role("link", name="Conversations", exact=True).click()
    ui.heading("Sign in")
    expect(page.get_by_text("Your session has ended.")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    assert ui.errors == []
