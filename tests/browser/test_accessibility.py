"""axe-core finds no serious or critical violation on any page, at desktop and phone sizes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.axe import axe_script, violations
from tests.browser.pages import Ui
from tests.fixtures.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
PAGES = [
    "#/",
    "#/new",
    "#/conversations/{conversation}",
    "#/profile",
    "#/admin/conversations",
    "#/admin/users",
    "#/admin/audit",
    "#/admin/usage",
    "#/admin/api-keys",
    "#/nowhere",
]


@pytest.fixture
def conversation(
    live_stack: LiveStack, user_tokens: Callable[[str], dict[str, Any]]
) -> Iterator[str]:
    """A conversation of mgr1's with one answer; deleted afterwards."""
    token = user_tokens("mgr1")["access_token"]
    with live_stack.client(headers={"Authorization": f"Bearer {token}"}) as http:
        created = http.post("/api/conversations", json={"title": "Accessibility"}).json()["id"]
        answer = http.post(
            f"/api/conversations/{created}/messages", json={"content": "Brake wear limits?"}
        )
        assert answer.status_code == 201, answer.text
        yield created
        http.delete(f"/api/conversations/{created}")


@pytest.fixture(scope="session")
def axe() -> str:
    """The path of the pinned axe-core script (fetched from the npm registry on first use)."""
    try:
        return str(axe_script())
    except (RuntimeError, OSError) as exc:
        pytest.fail(str(exc))


def _settled(ui: Ui) -> None:
    """Wait until the page has its heading and nothing is loading any more."""
    expect(ui.page.locator("main h1")).to_be_visible()
    expect(ui.page.locator("[aria-busy='true']")).to_have_count(0)


@pytest.mark.parametrize("size", sorted(SIZES))
def test_no_serious_violations_on_any_page(
    live_stack: LiveStack,
    open_ui: Callable[..., Ui],
    dev_credentials: dict[str, Any],
    conversation: str,
    axe: str,
    size: str,
) -> None:
    """The sign-in page and every page a manager has, with menus and forms opened on a phone."""
    manager = next(u for u in dev_credentials["users"] if u["roles"] == ["manager"])
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    page.context.add_init_script(path=axe)
    page.set_viewport_size(SIZES[size])
    found: dict[str, list[dict[str, Any]]] = {}

    ui.open()
    ui.heading("Sign in")
    found["sign-in"] = violations(page)

    page.set_viewport_size({"width": 1024, "height": 768})
    ui.sign_in(manager["username"], manager["password"])
    page.set_viewport_size(SIZES[size])
    for route in PAGES:
        address = route.format(conversation=conversation)
        ui.open(address)
        _settled(ui)
        for summary in page.locator("main details > summary").all()[:2]:
            summary.click()
        if size == "phone":
            page.get_by_role("button", name="Menu").click()
        found[address] = violations(page)

    problems = {address: found for address, found in found.items() if found}
    assert not problems, json.dumps(problems, indent=1)
    assert ui.errors == []
