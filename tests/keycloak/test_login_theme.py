"""Realm mro's login theme (keycloak/themes/mro) states the password rules before any submit.

The rules come from the realm's live password policy, so these tests change the policy and see
the page follow it rather than compare with a second copy of the rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape

import pytest
from keycloak import KeycloakAdmin

from devstack.keycloak import REALM
from tests.fixtures.keycloak import MailSink
from tests.keycloak_flows import browser_client, link_containing, open_login

pytestmark = pytest.mark.keycloak

RULES = re.compile(r'<div id="mro-password-rules"[^>]*>(.*?)</div>', re.S)


def _rules(html: str) -> list[str]:
    """The rule items the page shows, in order (empty when the block is missing)."""
    block = RULES.search(html)
    if block is None:
        return []
    return [unescape(item).strip() for item in re.findall(r"<li>(.*?)</li>", block.group(1))]


@pytest.fixture
def policy(keycloak_admin: KeycloakAdmin) -> Iterator[str]:
    """The realm's password policy; restored after the test, which may change it."""
    previous = str(keycloak_admin.get_realm(REALM)["passwordPolicy"])
    yield previous
    keycloak_admin.update_realm(REALM, {"passwordPolicy": previous})


def _registration_html(keycloak_url: str) -> str:
    with browser_client() as client:
        page, _ = open_login(client, keycloak_url)
        resp = page.get(link_containing(page.html, "login-actions/registration", keycloak_url))
        assert resp.status_code == 200
        return page.html


def test_registration_page_states_the_realms_rules_before_any_submit(
    keycloak_url: str, policy: str
) -> None:
    """The empty registration form lists the realm file's rules (length, username, history)."""
    assert (
        policy
        == "length(12) and maxLength(128) and notUsername and notEmail and passwordHistory(5)"
    )
    html = _registration_html(keycloak_url)
    assert _rules(html) == [
        "have at least 12 characters",
        "have at most 128 characters",
        "not be your username",
        "not be your email address",
        "not be one of your last 5 passwords",
    ]
    assert "Your password must:" in html


def test_rules_follow_the_live_policy(
    keycloak_url: str, keycloak_admin: KeycloakAdmin, policy: str
) -> None:
    """A changed policy changes the listed rules at once; nothing is written twice."""
    keycloak_admin.update_realm(
        REALM, {"passwordPolicy": "length(14) and digits(2) and specialChars(1)"}
    )
    assert _rules(_registration_html(keycloak_url)) == [
        "have at least 14 characters",
        "contain at least 2 digit(s)",
        "contain at least 1 special character(s)",
    ]


def test_reset_password_page_states_the_rules(keycloak_url: str, mail_sink: MailSink) -> None:
    """The page that the reset mail's link opens lists the rules before the new password is sent."""
    with browser_client() as client:
        page, _ = open_login(client, keycloak_url)
        page.get(link_containing(page.html, "login-actions/reset-credentials", keycloak_url))
        page.submit("kc-reset-password-form", {"username": "eng1"})
        mails = mail_sink.to("eng1@")
        assert mails, "no reset mail"
        body = mails[-1].get_body(preferencelist=("plain",))
        assert body is not None
        link = re.findall(r"https?://\S+/login-actions/action-token\S+", body.get_content())[0]
        resp = page.get(link)
    assert resp.status_code == 200
    assert 'id="kc-passwd-update-form"' in page.html
    assert "have at least 12 characters" in _rules(page.html)
