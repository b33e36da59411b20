"""The audit log names people: actor and target by name with the id on hover, filter by name."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from keycloak import KeycloakAdmin
from playwright.sync_api import Page, expect

from tests.browser.pages import Ui
from tests.browser.people import Person, throwaway_user
from tests.fixtures.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def target(keycloak_admin: KeycloakAdmin) -> Iterator[Person]:
    """A technician whose sessions the manager ends."""
    with throwaway_user(keycloak_admin, "audited", "Audrey", "Target") as person:
        yield person


def _manager(dev_credentials: dict[str, Any]) -> tuple[str, str]:
    user = next(u for u in dev_credentials["users"] if u["roles"] == ["manager"])
    return user["username"], user["password"]


def _filter_until_listed(page: Page, action: str, attempts: int = 10) -> None:
    """Filter until action shows (the audit queue writes in batches)."""
    event = page.get_by_role("rowheader", name=action).first
    for _ in range(attempts):
        page.get_by_role("button", name="Filter").click()
        try:
            expect(event).to_be_visible(timeout=1_000)
            return
        except AssertionError:
            continue
    expect(event).to_be_visible()


def test_manager_filters_the_audit_log_by_name_and_reads_names(
    live_stack: LiveStack,
    open_ui: Callable[..., Ui],
    dev_credentials: dict[str, Any],
    keycloak_admin: KeycloakAdmin,
    target: Person,
) -> None:
    """After ending a person's sessions, the manager finds the event by typing their own name;
    actor and target read as names, with each id in the title."""
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    username, password = _manager(dev_credentials)
    manager_id = keycloak_admin.get_user_id(username)
    ui.sign_in(username, password, route=f"#/admin/users?q={target.username}")
    ui.heading("Users")
    page.get_by_role("button", name=f"End sessions of {target.name}").click()
    page.get_by_role("dialog").get_by_role("button", name="End sessions").click()
    expect(page.locator("#banner")).to_contain_text(f"Ended every session of {target.name}")

    page.get_by_role("link", name="Audit", exact=True).click()
    ui.heading("Audit log")
    page.get_by_label("Person").fill("Maya Manager")
    page.get_by_label("Action").fill("users.logged_out")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(rf"actor={manager_id}"))
    _filter_until_listed(page, "users.logged_out")
    expect(page.get_by_label("Person")).to_have_value("Maya Manager (mgr1)")

    row = page.get_by_role("row").filter(has_text=target.name).first
    actor = row.get_by_role("link", name="Maya Manager (mgr1)")
    expect(actor).to_have_attribute("title", re.compile(manager_id))
    expect(row.get_by_text(f"{target.name} ({target.username})")).to_have_attribute(
        "title", target.id
    )
    ui.shot("53-audit-names")

    page.get_by_label("Person").fill("zz-nobody-by-this-name")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#banner")).to_contain_text("Nobody matches")
    assert ui.errors == []
