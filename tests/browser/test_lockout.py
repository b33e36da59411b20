"""An account locked by Keycloak's brute-force detection never reaches the UI."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator

import pytest
from keycloak import KeycloakAdmin
from playwright.sync_api import expect

from tests.browser.pages import KEYCLOAK_LOGIN, Ui
from tests.fixtures.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

# Keycloak answers a locked account like a wrong password (no hint that the account exists).
KEYCLOAK_REFUSAL = re.compile(r"Invalid username or password|Account is temporarily disabled")
PASSWORD = "Lockout-ui-only-Passw0rd-" + secrets.token_hex(3)


@pytest.fixture
def throwaway(keycloak_admin: KeycloakAdmin) -> Iterator[tuple[str, str]]:
    """A verified technician (username, id) to lock, so no shared dev user is ever locked."""
    username = f"lock{secrets.token_hex(4)}"
    user_id = keycloak_admin.create_user(
        {
            "username": username,
            "email": f"{username}@mro.test",
            "emailVerified": True,
            "firstName": "Locked",
            "lastName": "Out",
            "enabled": True,
            "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}],
        }
    )
    yield username, user_id
    keycloak_admin.delete_user(user_id)


def test_locked_out_user_sees_keycloaks_message_and_no_session(
    live_stack: LiveStack,
    open_ui: Callable[..., Ui],
    keycloak_admin: KeycloakAdmin,
    throwaway: tuple[str, str],
) -> None:
    """After too many wrong passwords even the right one fails on Keycloak's page."""
    username, user_id = throwaway
    failures = int(keycloak_admin.get_realm("mro")["failureFactor"])
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    ui.open()
    ui.heading("Sign in")
    page.get_by_role("link", name="Sign in", exact=True).click()
    for _ in range(failures):
        ui.keycloak_login(username, "Wrong-password-" + secrets.token_hex(4))
        expect(ui.keycloak_error()).to_be_visible()

    assert keycloak_admin.get_bruteforce_detection_status(user_id)["disabled"] is True
    ui.keycloak_login(username, PASSWORD)
    expect(ui.keycloak_error()).to_have_text(KEYCLOAK_REFUSAL)
    ui.shot("20-locked-out")
    page.wait_for_url(KEYCLOAK_LOGIN)
    assert not page.url.startswith(live_stack.gateway_url)
    session = page.request.get(f"{live_stack.gateway_url}/auth/session").json()
    assert session["authenticated"] is False
