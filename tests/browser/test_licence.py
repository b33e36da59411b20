"""The Part-66 licence number in the UI: read-only on a person's profile, set by a manager."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from keycloak import KeycloakAdmin
from playwright.sync_api import expect

from tests.browser.pages import Ui
from tests.browser.people import Person, throwaway_user
from tests.fixtures.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

LICENCE = "UK.66.31337A"


@pytest.fixture
def technician(keycloak_admin: KeycloakAdmin) -> Iterator[Person]:
    """A throwaway technician holding a licence number."""
    with throwaway_user(keycloak_admin, "lic", "Lara", "Licensee") as person:
        keycloak_admin.update_user(
            person.id,
            {
                "email": person.email,
                "firstName": person.first_name,
                "lastName": person.last_name,
                "attributes": {"licence_number": [LICENCE], "base_station": ["LHR"]},
            },
        )
        yield person


def _licence(keycloak_admin: KeycloakAdmin, person: Person) -> list[str] | None:
    attributes: dict[str, list[str]] = keycloak_admin.get_user(person.id).get("attributes", {})
    return attributes.get("licence_number")


def test_a_technician_sees_their_licence_number_but_cannot_edit_it(
    live_stack: LiveStack, open_ui: Callable[..., Ui], technician: Person
) -> None:
    """The profile lists the licence number among the facts; no field offers to change it."""
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    ui.sign_in(technician.username, technician.password, route="#/profile")
    ui.heading("Your profile")
    facts = page.locator(".facts")
    expect(facts).to_contain_text("Licence / certification number")
    expect(facts).to_contain_text(LICENCE)
    expect(page.get_by_label("Base station")).to_have_value("LHR")
    expect(page.get_by_role("textbox", name="Licence / certification number")).to_have_count(0)
    expect(page.locator("input[name$='licence_number']")).to_have_count(0)
    ui.shot("33-profile-licence-read-only")
    assert ui.errors == []


def test_a_manager_sets_a_technicians_licence_number(
    live_stack: LiveStack,
    open_ui: Callable[..., Ui],
    dev_credentials: dict[str, Any],
    keycloak_admin: KeycloakAdmin,
    technician: Person,
) -> None:
    """On the users page a manager saves a new licence number; Keycloak stores it in capitals."""
    manager = next(u for u in dev_credentials["users"] if u["roles"] == ["manager"])
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    ui.sign_in(manager["username"], manager["password"], route="#/admin/users")
    ui.heading("Users")
    page.get_by_role("searchbox", name="Search").fill(technician.username)
    page.get_by_role("button", name="Filter").click()
    table = page.get_by_role("region", name="Users")
    row = table.get_by_role("row").filter(has=page.get_by_text(technician.username, exact=True))
    expect(row).to_have_count(1)
    field = row.get_by_role("textbox", name=f"Licence number of {technician.name}", exact=True)
    expect(field).to_have_value(LICENCE)

    field.fill("UK 66")
    row.get_by_role("button", name=f"Save the licence number of {technician.name}").click()
    expect(page.locator("#banner")).to_contain_text("Validation failed")
    expect(field).to_have_attribute("aria-invalid", "true")
    assert _licence(keycloak_admin, technician) == [LICENCE]

    field.fill("uk.66.424242b")
    row.get_by_role("button", name=f"Save the licence number of {technician.name}").click()
    expect(page.locator("#banner")).to_contain_text(
        f"Saved the licence number of {technician.name}"
    )
    expect(field).to_have_value("UK.66.424242B")
    ui.shot("15-manager-sets-licence")
    assert _licence(keycloak_admin, technician) == ["UK.66.424242B"]
    assert ui.errors == []
