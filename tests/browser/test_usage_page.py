"""The usage page reads in words and fits a 1280 px screen and a phone, no sideways scroll."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import Ui
from tests.fixtures.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

PHONE = {"width": 390, "height": 844}


def _manager(dev_credentials: dict[str, Any]) -> tuple[str, str]:
    user = next(u for u in dev_credentials["users"] if u["roles"] == ["manager"])
    return user["username"], user["password"]


def _subject(token: str) -> str:
    """The subject of an access token (read, not verified: the test fetched it itself)."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sub"])


def _overflow(page: Page, selector: str) -> int:
    """How many pixels the element is wider than its box (0: no sideways scrolling)."""
    return int(page.eval_on_selector(selector, "el => el.scrollWidth - el.clientWidth"))


def test_usage_names_people_and_fits_desktop_and_phone(
    live_stack: LiveStack,
    open_ui: Callable[..., Ui],
    dev_credentials: dict[str, Any],
    user_tokens: Callable[[str], dict[str, Any]],
) -> None:
    """A technician's answer shows under their name with the agent in words; at 1280 px the
    table needs no scrolling, and on a phone each row is a card that names its numbers."""
    token = user_tokens("tech1")["access_token"]
    with live_stack.client(headers={"Authorization": f"Bearer {token}"}) as http:
        conversation = http.post("/api/conversations", json={"title": "Usage page"}).json()["id"]
        answer = http.post(
            f"/api/conversations/{conversation}/messages",
            json={"content": "Which service bulletin covers the APU starter?"},
        )
        assert answer.status_code == 201, answer.text
        http.delete(f"/api/conversations/{conversation}")

    ui = open_ui(live_stack.gateway_url, width=1280)
    page = ui.page
    ui.sign_in(*_manager(dev_credentials), route="#/admin/usage")
    ui.heading("Usage")
    table = page.get_by_role("region", name="Usage")
    row = table.get_by_role("row").filter(has_text="Tara Technician (tech1)").first
    expect(row).to_be_visible()
    expect(row.get_by_role("rowheader")).to_have_attribute("title", _subject(token))
    headers = table.locator("thead th").all_inner_texts()
    assert headers[:3] == ["Who", "Kind", "Agent"], headers
    assert "Total tokens" in headers
    expect(page.get_by_text("Period")).to_be_visible()
    assert _overflow(page, "html") == 0
    assert _overflow(page, ".usage-table") <= 0
    assert _overflow(page, ".table-wrap") == 0
    ui.shot("54-usage-1280")

    page.set_viewport_size(PHONE)
    expect(row).to_be_visible()
    assert _overflow(page, "html") == 0
    assert _overflow(page, ".table-wrap") == 0
    expect(row.locator("td[data-label='Total tokens']")).to_be_visible()
    ui.shot("55-usage-phone", full_page=False)

    page.get_by_label("Totals per").select_option("agent")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**group_by=agent**")
    expect(table.locator("thead th").first).to_have_text("Agent")
    assert ui.errors == []
