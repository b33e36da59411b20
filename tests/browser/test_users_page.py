"""The users page tells a manager what they can and cannot do before they try."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from keycloak import KeycloakAdmin
from playwright.sync_api import Route, expect

from tests.browser.pages import Ui
from tests.browser.people import delete_by_username
from tests.fixtures.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]


def _manager(dev_credentials: dict[str, Any]) -> tuple[str, str]:
    user = next(u for u in dev_credentials["users"] if u["roles"] == ["manager"])
    return user["username"], user["password"]


@pytest.fixture
def new_username(keycloak_admin: KeycloakAdmin) -> Iterator[str]:
    """A username for a user the test creates through the UI; the user is deleted afterwards."""
    username = f"ui{secrets.token_hex(4)}"
    yield username
    delete_by_username(keycloak_admin, username)


def _mail_fails(route: Route) -> None:
    """Let the gateway create the user, then answer as if Keycloak could not send the mail."""
    if route.request.method != "POST":
        route.continue_()
        return
    response = route.fetch()
    body = response.json()
    body["invitation_sent"] = False
    route.fulfill(response=response, json=body)


def test_inherited_role_has_no_remove_button(
    live_stack: LiveStack, open_ui: Callable[..., Ui], dev_credentials: dict[str, Any]
) -> None:
    """An engineer's technician role says it comes with engineer and offers no remove button."""
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    ui.sign_in(*_manager(dev_credentials), route="#/admin/users?q=eng1")
    ui.heading("Users")
    roles = page.get_by_role("list", name="Roles of Eli Engineer")
    expect(roles.get_by_role("listitem").filter(has_text="technician")).to_contain_text(
        "with engineer"
    )
    remove = "Remove role {} from Eli Engineer"
    expect(page.get_by_role("button", name=remove.format("technician"))).to_have_count(0)
    expect(page.get_by_role("button", name=remove.format("engineer"))).to_be_visible()
    assert ui.errors == []


def test_invited_person_shows_pending_and_a_failed_mail_is_an_error(
    live_stack: LiveStack,
    open_ui: Callable[..., Ui],
    dev_credentials: dict[str, Any],
    new_username: str,
) -> None:
    """A failed invitation mail is a red banner saying what to do; the new person is listed as
    invited, with email not verified and no password set yet."""
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    ui.sign_in(*_manager(dev_credentials), route="#/admin/users")
    ui.heading("Users")
    page.route("**/api/admin/users", _mail_fails)
    page.get_by_text("Create a technician or engineer").click()
    form = page.get_by_role("form", name="New user")
    form.get_by_label("Username").fill(new_username)
    form.get_by_label("Email").fill(f"{new_username}@mro.test")
    form.get_by_label("First name").fill("Ivy")
    form.get_by_label("Last name").fill("Invited")
    form.get_by_role("button", name="Create user").click()
    banner = page.locator("#banner .banner")
    expect(banner).to_have_class("banner banner-error")
    expect(banner).to_contain_text("the invitation email could not be sent")
    expect(banner).to_contain_text("Ask an administrator")

    page.get_by_role("searchbox", name="Search").fill(new_username)
    page.get_by_role("button", name="Filter").click()
    row = page.get_by_role("region", name="Users").get_by_role("row").filter(has_text=new_username)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Invitation pending")
    expect(row).to_contain_text("Email not verified")
    expect(row).to_contain_text("No password set yet")
    ui.shot("52-users-invitation-pending")
    assert ui.errors == []
