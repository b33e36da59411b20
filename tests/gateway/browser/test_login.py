"""Helpers shared by the browser login routes: redirects, cookies and audit details."""

from __future__ import annotations

from gateway.browser.login import NO_STORE, redirect, sid_details
from gateway.browser.session_store import SessionRecord


def record(sid: str | None) -> SessionRecord:
    """A stored session with Keycloak session id sid."""
    return SessionRecord(
        subject="u1",
        username="tech1",
        name="T One",
        email="t1@mro.test",
        roles=("technician",),
        sid=sid,
        access_token="a",
        access_expires_at=0.0,
        refresh_token=None,
        refresh_expires_at=None,
        id_token=None,
        created_at=0.0,
        last_seen_at=0.0,
        csrf_token="c",
    )


def test_redirects_are_never_cached() -> None:
    """A redirect carries the location, its status and no-store caching headers."""
    response = redirect("/home", 303)
    assert response.status_code == 303
    assert response.headers["location"] == "/home"
    for name, value in NO_STORE.items():
        assert response.headers[name] == value


def test_sid_details_name_the_keycloak_session_only_when_known() -> None:
    """The audit details carry the sid when the session has one, nothing otherwise."""
    assert sid_details(record("kc-sid-1")) == {"sid": "kc-sid-1"}
    assert sid_details(record(None)) == {}
