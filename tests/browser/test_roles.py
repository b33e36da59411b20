"""What each role sees: managers get the administration pages, technicians never do."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from keycloak import KeycloakAdmin
from playwright.sync_api import Page, expect

from tests.browser.pages import Ui
from tests.fixtures.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

ADMIN_LINKS = ["Everyone's conversations", "Users", "Audit", "Usage", "API keys"]


def _credentials(dev_credentials: dict[str, Any], role: str) -> tuple[str, str]:
    user = next(u for u in dev_credentials["users"] if u["roles"] == [role])
    return user["username"], user["password"]


@pytest.fixture
def new_username(keycloak_admin: KeycloakAdmin) -> Iterator[str]:
    """A username for a user the test creates through the UI; the user is deleted afterwards."""
    username = f"ui{secrets.token_hex(4)}"
    yield username
    for user in keycloak_admin.get_users({"username": username, "exact": True}):
        keycloak_admin.delete_user(user["id"])


def _until_listed(page: Page, action: str, attempts: int = 10) -> None:
    """Filter the audit log until action shows (the audit queue writes in batches)."""
    event = page.get_by_role("rowheader", name=action).first
    for _ in range(attempts):
        page.get_by_role("button", name="Filter").click()
        try:
            expect(event).to_be_visible(timeout=1_000)
            return
        except AssertionError:
            continue
    expect(event).to_be_visible()


def test_manager_sees_administration_and_manages_a_new_user(
    live_stack: LiveStack,
    open_ui: Callable[..., Ui],
    dev_credentials: dict[str, Any],
    new_username: str,
) -> None:
    """A manager has the admin navigation, creates a technician, grants engineer, disables them."""
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    ui.sign_in(*_credentials(dev_credentials, "manager"))
    ui.heading("Your conversations")
    links = ui.nav_links()
    assert all(link in links for link in ADMIN_LINKS), links
    ui.shot("10-manager-home")

    page.get_by_role("link", name="Users", exact=True).click()
    ui.heading("Users")
    table = page.get_by_role("region", name="Users")
    expect(table.get_by_role("rowheader", name="Tara Technician")).to_be_visible()
    own = table.get_by_role("row").filter(has=page.get_by_text("mgr1", exact=True))
    expect(own).to_contain_text("Your own account")

    page.get_by_text("Create a technician or engineer").click()
    form = page.get_by_role("form", name="New user")
    form.get_by_label("Username").fill(new_username)
    form.get_by_label("Email").fill(f"{new_username}@mro.test")
    form.get_by_label("First name").fill("Una")
    form.get_by_label("Last name").fill("Interface")
    form.get_by_label("Base station").fill("LHR")
    form.get_by_role("button", name="Create user").click()
    expect(page.locator("#banner")).to_contain_text(f"Created {new_username}")

    page.get_by_role("searchbox", name="Search").fill(new_username)
    page.get_by_role("button", name="Filter").click()
    row = table.get_by_role("row").filter(has=page.get_by_text(new_username, exact=True))
    expect(row).to_have_count(1)
    expect(row.locator(".chip > span")).to_have_text(["technician"])
    row.get_by_label("Role to grant Una Interface").select_option("engineer")
    row.get_by_role("button", name="Grant the selected role to Una Interface").click()
    expect(page.locator("#banner")).to_contain_text("Granted engineer to Una Interface")
    expect(row.locator(".chip > span")).to_have_text(["engineer", "technician"])

    row.get_by_role("button", name="Disable Una Interface").click()
    page.get_by_role("dialog").get_by_role("button", name="Disable").click()
    expect(row.get_by_text("Disabled", exact=True)).to_be_visible()
    ui.shot("11-manager-users")

    page.get_by_role("link", name="Audit", exact=True).click()
    ui.heading("Audit log")
    page.get_by_label("Action").fill("users.*")
    _until_listed(page, "users.disabled")
    ui.shot("12-manager-audit")

    page.get_by_role("link", name="Usage", exact=True).click()
    ui.heading("Usage")
    expect(page.locator(".list-region")).not_to_have_attribute("aria-busy", "true")
    ui.shot("13-manager-usage")

    page.get_by_role("link", name="Everyone's conversations", exact=True).click()
    ui.heading("Everyone's conversations")
    expect(page.locator(".list-region")).not_to_have_attribute("aria-busy", "true")
    expect(
        page.get_by_label("Person").get_by_role("option", name="Tara Technician (tech1)")
    ).to_be_attached()
    expect(page.locator("#banner")).to_be_empty()
    assert ui.errors == []


def test_technician_has_no_administration(
    live_stack: LiveStack, open_ui: Callable[..., Ui], dev_credentials: dict[str, Any]
) -> None:
    """No admin links; typing an admin address shows a refusal; the gateway answers 403."""
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    ui.sign_in(*_credentials(dev_credentials, "technician"))
    ui.heading("Your conversations")
    links = ui.nav_links()
    assert not set(ADMIN_LINKS) & set(links), links
    expect(page.get_by_role("list", name="Administration")).to_have_count(0)

    ui.open("#/admin/users")
    ui.heading("Not available")
    ui.shot("14-technician-refused")
    response = page.request.get(f"{live_stack.gateway_url}/api/admin/users")
    assert response.status == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert ui.errors == []


def test_manager_sees_this_months_tokens_per_person_and_agent(
    live_stack: LiveStack,
    open_ui: Callable[..., Ui],
    dev_credentials: dict[str, Any],
    user_tokens: Callable[[str], dict[str, Any]],
) -> None:
    """After a technician's question, the manager's Usage page lists that technician with the
    agent that answered and the tokens the answer cost."""
    token = user_tokens("tech1")["access_token"]
    with live_stack.client(headers={"Authorization": f"Bearer {token}"}) as http:
        conversation = http.post("/api/conversations", json={"title": "Usage"}).json()["id"]
        answer = http.post(
            f"/api/conversations/{conversation}/messages",
            json={"content": "Where is the torque table for the main gear axle nut?"},
        )
    assert answer.status_code == 201, answer.text
    agent = answer.json()["assistant_message"]["agent"]

    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    ui.sign_in(*_credentials(dev_credentials, "manager"))
    ui.heading("Your conversations")
    page.get_by_role("link", name="Usage", exact=True).click()
    ui.heading("Usage")
    table = page.get_by_role("region", name="Usage")
    expect(table.get_by_role("columnheader", name="Total tokens")).to_be_visible()
    row = table.get_by_role("row").filter(has_text="Tara Technician (tech1)")
    row = row.filter(has_text=f"{agent.capitalize()} agent")
    expect(row).to_have_count(1)
    columns = table.locator("thead th").all_inner_texts()
    total = row.locator("th, td").nth(columns.index("Total tokens")).inner_text()
    assert int(total.replace(",", "").replace("\u202f", "")) > 0
