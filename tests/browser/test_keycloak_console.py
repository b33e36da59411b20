"""An admin works in Keycloak's console for realm mro with their own account; a manager cannot."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from keycloak import KeycloakAdmin
from playwright.sync_api import expect

from tests.browser.pages import Ui
from tests.browser.people import Person, throwaway_user

pytestmark = [pytest.mark.browser, pytest.mark.keycloak, pytest.mark.slow]

NO_PERMISSION = re.compile("You do not have permission to access this resource")


@pytest.fixture
def person(keycloak_admin: KeycloakAdmin) -> Iterator[Person]:
    """A technician the admin edits in the console."""
    with throwaway_user(keycloak_admin, "console", "Connie", "Sole") as made:
        yield made


def _console(open_ui: Callable[..., Ui], keycloak_url: str, username: str, password: str) -> Ui:
    """A browser signed into realm mro's console through Keycloak's own login page."""
    ui = open_ui(keycloak_url, width=1280)
    ui.page.goto(f"{keycloak_url}/admin/mro/console/")
    ui.keycloak_login(username, password)
    ui.page.wait_for_url(f"{keycloak_url}/admin/mro/console/**")
    return ui


def test_admin_lists_and_edits_a_person_in_the_console(
    open_ui: Callable[..., Ui],
    keycloak_url: str,
    keycloak_admin: KeycloakAdmin,
    dev_credentials: dict[str, Any],
    person: Person,
) -> None:
    """admin1 signs in, finds a person under Users, renames them and saves."""
    admin = next(u for u in dev_credentials["users"] if u["username"] == "admin1")
    ui = _console(open_ui, keycloak_url, admin["username"], admin["password"])
    page = ui.page
    page.get_by_role("link", name="Users", exact=True).click()
    search = page.get_by_placeholder(re.compile("Search user", re.IGNORECASE))
    search.fill(person.username)
    search.press("Enter")
    page.get_by_role("link", name=person.username, exact=True).click()
    first_name = page.locator("input[name='firstName']")
    expect(first_name).to_have_value(person.first_name)
    ui.shot("60-console-user-details")
    first_name.fill("Constance")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("The user has been saved")).to_be_visible()
    assert keycloak_admin.get_user(person.id)["firstName"] == "Constance"


def test_manager_is_refused_by_the_console(
    open_ui: Callable[..., Ui], keycloak_url: str, dev_credentials: dict[str, Any]
) -> None:
    """mgr1 signs in with their own password and is told they have no permission."""
    manager = next(u for u in dev_credentials["users"] if u["username"] == "mgr1")
    ui = _console(open_ui, keycloak_url, manager["username"], manager["password"])
    expect(ui.page.get_by_text(NO_PERMISSION)).to_be_visible()
    expect(ui.page.get_by_role("link", name="Users", exact=True)).to_have_count(0)
    ui.shot("61-console-refuses-a-manager")
