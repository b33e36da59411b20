"""Managers look after services' API keys in the UI: create, copy once, list, rotate, revoke."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.pages import Ui
from tests.fixtures.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]


def _manager(dev_credentials: dict[str, Any]) -> tuple[str, str]:
    user = next(u for u in dev_credentials["users"] if u["roles"] == ["manager"])
    return user["username"], user["password"]


def _agents_status(live_stack: LiveStack, key: str) -> int:
    with live_stack.client(headers={"X-API-Key": key}) as http:
        return http.get("/api/agents").status_code


def test_manager_creates_copies_rotates_and_revokes_a_key(
    live_stack: LiveStack, open_ui: Callable[..., Ui], dev_credentials: dict[str, Any]
) -> None:
    """The secret shows once with a copy button and works; rotating shows a new one; revoking
    ends it; the list names the owner, what the key may do, its expiry and its last use."""
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    ui.sign_in(*_manager(dev_credentials))
    page.get_by_role("link", name="API keys", exact=True).click()
    ui.heading("API keys")

    name = f"ERP sync {secrets.token_hex(3)}"
    page.get_by_text("Create an API key").click()
    form = page.get_by_role("form", name="New API key")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Expires after").select_option("30")
    form.get_by_label("Planning agent").check()
    form.get_by_role("button", name="Create key").click()

    panel = page.get_by_role("region", name=re.compile("New key"))
    secret = panel.get_by_label(f"Key for {name}")
    expect(secret).to_have_value(re.compile(r".{20,}"))
    key = secret.input_value()
    panel.get_by_role("button", name="Copy key").click()
    expect(panel.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    ui.shot("50-api-key-created")
    assert _agents_status(live_stack, key) == 200

    row = page.get_by_role("region", name="API keys").get_by_role("row").filter(has_text=name)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Maya Manager")
    expect(row.get_by_role("list", name=f"What {name} may do")).to_contain_text("Planning agent")
    expect(row).to_contain_text("Active")
    # The gateway writes last use in batches once a minute: a new key reads "Never used".
    expect(row).to_contain_text("Never used")
    panel.get_by_role("button", name="I have stored the key").click()
    expect(page.get_by_label(f"Key for {name}")).to_have_count(0)

    row.get_by_role("button", name=f"Rotate the key {name}").click()
    page.get_by_role("dialog").get_by_role("button", name="Rotate").click()
    rotated = page.get_by_label(f"Key for {name}")
    expect(rotated).to_have_value(re.compile(r".{20,}"))
    new_key = rotated.input_value()
    assert new_key != key
    expect(row.filter(has_text="Replaced; works until")).to_have_count(1)
    assert _agents_status(live_stack, new_key) == 200
    ui.shot("51-api-key-rotated")

    for _ in range(2):
        active = page.get_by_role("button", name=f"Revoke the key {name}").first
        active.click()
        page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
        expect(page.locator("#banner")).to_contain_text(f"Revoked the key {name}")
    expect(row).to_have_count(0)
    page.get_by_label("Show revoked, expired and replaced keys").check()
    expect(row.filter(has_text="Revoked")).to_have_count(2)
    assert _agents_status(live_stack, key) == 401
    assert _agents_status(live_stack, new_key) == 401
    assert ui.errors == []
