"""The dev stack's mail: Keycloak sends to Mailpit, whose HTTP API shows the mail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from keycloak import KeycloakAdmin

from devstack import mailpit
from devstack.keycloak import REALM, keycloak_env
from devstack.procs import Service, free_port
from tests.keycloak_flows import browser_client, link_containing, open_login


def test_keycloak_is_told_to_send_to_mailpits_smtp_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dev stack's Keycloak gets Mailpit's SMTP address, following MRO_MAILPIT_SMTP_PORT."""
    monkeypatch.delenv("MRO_KC_SMTP_HOST", raising=False)
    monkeypatch.delenv("MRO_KC_SMTP_PORT", raising=False)
    monkeypatch.setenv("MRO_MAILPIT_SMTP_PORT", "2626")
    env = keycloak_env()
    assert (env["MRO_KC_SMTP_HOST"], env["MRO_KC_SMTP_PORT"]) == (mailpit.HOST, "2626")


@pytest.fixture
def mailpit_inbox(keycloak_admin: KeycloakAdmin) -> Iterator[Service]:
    """A Mailpit on free ports that realm mro sends its mail to for the test (restored after)."""
    if not mailpit.BINARY.is_file():
        pytest.skip("mailpit is not built: scripts/bootstrap.sh builds it with Go")
    smtp = free_port()
    service = mailpit.ensure_mailpit(free_port(), smtp)
    previous = keycloak_admin.get_realm(REALM).get("smtpServer", {})
    keycloak_admin.update_realm(
        REALM, {"smtpServer": {**previous, "host": mailpit.HOST, "port": str(smtp)}}
    )
    try:
        yield service
    finally:
        keycloak_admin.update_realm(REALM, {"smtpServer": previous})
        service.stop()


def _messages_to(inbox: str, address: str, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Mailpit's message summaries addressed to address, waiting until there is one."""
    deadline = time.monotonic() + timeout
    while True:
        listing = httpx.get(f"{inbox}/api/v1/messages", timeout=5).json()
        found = [m for m in listing["messages"] if any(to["Address"] == address for to in m["To"])]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.mark.keycloak
def test_forgot_password_mail_arrives_in_mailpit(
    keycloak_url: str, dev_credentials: dict[str, Any], mailpit_inbox: Service
) -> None:
    """Keycloak's "Forgot password?" form puts a reset mail with its link in Mailpit's inbox."""
    user = next(u for u in dev_credentials["users"] if u["username"] == "tech1")
    with browser_client() as client:
        page, _ = open_login(client, keycloak_url)
        page.get(link_containing(page.html, "login-actions/reset-credentials", keycloak_url))
        sent = page.submit("kc-reset-password-form", {"username": user["username"]})
    assert sent.status_code == 200
    mails = _messages_to(mailpit_inbox.url, user["email"])
    assert mails, "no reset mail in Mailpit"
    message = httpx.get(f"{mailpit_inbox.url}/api/v1/message/{mails[0]['ID']}", timeout=5).json()
    assert "login-actions/action-token" in message["Text"]
