"""A phone (390 x 844): the latest answer is in view, the menu folds, every control is 44 px."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import Ui
from tests.fixtures.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

PHONE = {"width": 390, "height": 844}
TAP = 44
MANAGER_PAGES = [
    ("#/", "Your conversations"),
    ("#/new", "New conversation"),
    ("#/profile", None),
    ("#/admin/conversations", "Everyone's conversations"),
    ("#/admin/users", "Users"),
    ("#/admin/audit", "Audit log"),
    ("#/admin/usage", "Usage"),
    ("#/admin/api-keys", "API keys"),
]

# Controls smaller than a fingertip: links inside a sentence are exempt (WCAG 2.5.8), a
# checkbox counts with its label, and what is not rendered (closed menus, details) is skipped.
SMALL_CONTROLS = """() => {
  const small = [];
  for (const el of document.querySelectorAll("a[href], button, input, select, textarea, summary")) {
    if (el.type === "hidden" || el.classList.contains("skip-link")) continue;
    if (el.tagName === "A" && !el.classList.contains("btn") && el.closest("p")) continue;
    const box = (el.type === "checkbox" ? el.closest(".check") || el : el).getBoundingClientRect();
    if (!box.width || !box.height) continue;
    if (box.width < 43.5 || box.height < 43.5) {
      const name = (el.getAttribute("aria-label") || el.textContent || el.name || "").trim();
      const size = `${Math.round(box.width)}x${Math.round(box.height)}`;
      small.push(`${el.tagName.toLowerCase()} "${name.slice(0, 40)}" ${size}`);
    }
  }
  return small;
}"""


def _user(dev_credentials: dict[str, Any], role: str) -> tuple[str, str]:
    user = next(u for u in dev_credentials["users"] if u["roles"] == [role])
    return user["username"], user["password"]


def _phone(
    open_ui: Callable[..., Ui], gateway_url: str, credentials: tuple[str, str], route: str = ""
) -> Ui:
    """Signed in at tablet size (where Sign out is in view), then turned into a phone."""
    ui = open_ui(gateway_url)
    ui.sign_in(*credentials)
    ui.page.set_viewport_size(PHONE)
    ui.open(route)
    return ui


def _small_controls(page: Page) -> list[str]:
    return list(page.evaluate(SMALL_CONTROLS))


def test_opening_a_conversation_on_a_phone_shows_the_latest_answer(
    live_stack: LiveStack,
    open_ui: Callable[..., Ui],
    dev_credentials: dict[str, Any],
    user_tokens: Callable[[str], dict[str, Any]],
) -> None:
    """With three exchanges, the last answer starts in view above the question box."""
    token = user_tokens("tech1")["access_token"]
    with live_stack.client(headers={"Authorization": f"Bearer {token}"}) as http:
        conversation = http.post("/api/conversations", json={"title": "Phone"}).json()["id"]
        for question in ("Hydraulic pump noise?", "Which task card?", "Torque for the fitting?"):
            answer = http.post(
                f"/api/conversations/{conversation}/messages", json={"content": question}
            )
            assert answer.status_code == 201, answer.text
    try:
        credentials = _user(dev_credentials, "technician")
        ui = _phone(open_ui, live_stack.gateway_url, credentials, f"#/conversations/{conversation}")
        page = ui.page
        last = page.locator(".message-assistant").last
        expect(last).to_be_visible()
        expect(page.get_by_role("link", name="Your conversations")).to_have_count(1)
        page.wait_for_function(
            """() => {
              const last = [...document.querySelectorAll(".message-assistant")].pop();
              const composer = document.querySelector(".composer");
              const top = last.getBoundingClientRect().top;
              return top >= 0 && composer.getBoundingClientRect().top - top >= 96;
            }"""
        )
        ui.shot("56-phone-latest-answer", full_page=False)
        assert _small_controls(page) == []
        assert ui.errors == []
    finally:
        with live_stack.client(headers={"Authorization": f"Bearer {token}"}) as http:
            http.delete(f"/api/conversations/{conversation}")


def test_managers_menu_folds_and_every_control_is_a_fingertip_wide(
    live_stack: LiveStack, open_ui: Callable[..., Ui], dev_credentials: dict[str, Any]
) -> None:
    """The top bar is one row with a Menu button that opens the navigation and folds again after
    a choice; on every page each control is at least 44 x 44 px."""
    ui = _phone(open_ui, live_stack.gateway_url, _user(dev_credentials, "manager"))
    page = ui.page
    ui.heading("Your conversations")
    bar = page.locator(".topbar").bounding_box()
    assert bar is not None
    assert bar["height"] <= 70, bar
    menu = page.get_by_role("button", name="Menu")
    users = page.get_by_role("link", name="Users", exact=True)
    expect(users).to_be_hidden()
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    ui.shot("57-phone-menu-open", full_page=False)
    users.click()
    ui.heading("Users")
    expect(users).to_be_hidden()
    expect(menu).to_have_attribute("aria-expanded", "false")

    small: dict[str, list[str]] = {}
    for route, heading in MANAGER_PAGES:
        ui.open(route)
        if heading:
            ui.heading(heading)
        expect(page.locator("[aria-busy='true']")).to_have_count(0)
        for disclosure in page.locator("main details").all()[:3]:
            disclosure.locator("summary").click()
        menu.click()
        found = _small_controls(page)
        if found:
            small[route] = found
    assert small == {}
    assert ui.errors == []
