"""What the browser tests do with the UI and Keycloak's pages, named for the user's steps."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from playwright.sync_api import ConsoleMessage, Locator, Page, expect

from devstack.paths import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "browser"
KEYCLOAK_LOGIN = re.compile(r"/realms/mro/(protocol/openid-connect/auth|login-actions/)")


@dataclass
class Ui:
    """One browser page on the gateway, with what went wrong in it."""

    page: Page
    gateway_url: str
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        # Refused loads and CSP violations; failed HTTP answers the UI handles are not errors.
        text = message.text
        if message.type == "error" and "Failed to load resource" not in text:
            self.errors.append(text)

    def shot(self, name: str, *, full_page: bool = True) -> None:
        """Save a screenshot under test-artifacts/browser/ (the window only: full_page=False)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(
            path=ARTIFACTS / f"{name}.png", full_page=full_page, animations="disabled"
        )

    def open(self, route: str = "") -> None:
        """Load the UI at a route such as ``#/profile``."""
        self.page.goto(f"{self.gateway_url}/{route}")

    def heading(self, name: str | re.Pattern[str]) -> None:
        """Wait until the page's main heading is name."""
        expect(self.page.get_by_role("heading", level=1, name=name)).to_be_visible()

    def keycloak_login(self, username: str, password: str) -> None:
        """Fill in and send Keycloak's login form (the browser must be on it)."""
        page = self.page
        page.wait_for_url(KEYCLOAK_LOGIN)
        page.locator("#username").fill(username)
        page.locator("#password").fill(password)
        # Each submission loads a page: Keycloak's form again, or the gateway's callback.
        with page.expect_navigation():
            page.locator("#kc-login").click()

    def keycloak_error(self) -> Locator:
        """The error Keycloak's login form shows under its fields."""
        return self.page.locator("#input-error-username, #input-error-password, #input-error")

    def sign_in(self, username: str, password: str, route: str = "") -> None:
        """From the UI's sign-in page through Keycloak's login page and back, signed in."""
        self.open(route)
        self.heading("Sign in")
        self.page.get_by_role("link", name="Sign in", exact=True).click()
        self.keycloak_login(username, password)
        self.page.wait_for_url(f"{self.gateway_url}/**")
        expect(self.page.get_by_role("button", name="Sign out")).to_be_visible()

    def sign_out(self) -> None:
        """Sign out with the top bar's button; ends back on the sign-in page."""
        self.page.get_by_role("button", name="Sign out").click()
        self.page.wait_for_url(f"{self.gateway_url}/**")
        self.heading("Sign in")

    def finished_answer(self) -> Locator:
        """The conversation's last answer, once it has stopped streaming (30 s at most)."""
        answer = self.page.locator(".message-assistant").last
        expect(answer).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=30_000)
        return answer

    def delete_conversation(self) -> None:
        """Delete the open conversation and confirm; ends on the conversation list."""
        self.page.get_by_role("button", name="Delete conversation").click()
        self.page.get_by_role("dialog").get_by_role("button", name="Delete").click()
        self.heading("Your conversations")

    def nav_links(self) -> list[str]:
        """Names of the links in the main navigation."""
        nav = self.page.get_by_role("navigation", name="Main")
        return [name.strip() for name in nav.get_by_role("link").all_inner_texts()]
