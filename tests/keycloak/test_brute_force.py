"""Brute-force detection: five wrong passwords lock an account for a while, then it recovers."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from keycloak import KeycloakAdmin

from tests.keycloak_flows import browser_client, open_login

pytestmark = pytest.mark.keycloak

PASSWORD = "Lockout-dev-only-pass-7"
WRONG = "Not-the-right-password-0"
INVALID = "Invalid username or password."


@pytest.fixture
def victim(keycloak_admin: KeycloakAdmin) -> Iterator[tuple[str, str]]:
    """A fresh verified user (username, id) so the dev users never get locked."""
    username = f"bf{secrets.token_hex(5)}"
    user_id = keycloak_admin.create_user(
        {
            "username": username,
            "email": f"{username}@mro.test",
            "emailVerified": True,
            "firstName": "Brute",
            "lastName": "Force",
            "enabled": True,
            "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}],
        }
    )
    yield username, user_id
    keycloak_admin.delete_user(user_id)


@pytest.fixture
def spaced_failures(keycloak_admin: KeycloakAdmin) -> Iterator[None]:
    """Turn off the quick-login check (two failures within 1 s) so failures are only counted.

    The test sends its attempts back to back; without this, the second one would already lock.
    """
    original = keycloak_admin.get_realm("mro")["quickLoginCheckMilliSeconds"]
    keycloak_admin.update_realm("mro", {"quickLoginCheckMilliSeconds": 1})
    yield
    keycloak_admin.update_realm("mro", {"quickLoginCheckMilliSeconds": original})


def test_five_failures_lock_the_account_temporarily(
    keycloak_url: str,
    keycloak_admin: KeycloakAdmin,
    victim: tuple[str, str],
    spaced_failures: None,
) -> None:
    """Four failures leave the account usable; the fifth locks it so the right password fails."""
    username, user_id = victim
    with browser_client() as client:
        page, _ = open_login(client, keycloak_url)
        for _ in range(4):
            assert INVALID in page.login(username, WRONG).text
        status = keycloak_admin.get_bruteforce_detection_status(user_id)
        assert status["numFailures"] == 4
        assert status["disabled"] is False

        assert INVALID in page.login(username, WRONG).text
        status = keycloak_admin.get_bruteforce_detection_status(user_id)
        assert status["disabled"] is True
        locked_for = status["failedLoginNotBefore"] - status["lastFailure"] // 1000
        assert 50 <= locked_for <= 60

        resp = page.login(username, PASSWORD)
        assert resp.status_code == 200
        assert INVALID in resp.text

    keycloak_admin.clear_bruteforce_attempts_for_user(user_id)
    with browser_client() as client:
        page, _ = open_login(client, keycloak_url)
        resp = page.login(username, PASSWORD)
    assert resp.status_code == 302
    assert page.code(resp)
