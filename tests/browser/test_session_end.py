"""An administrator ends a user's sessions: the open browser is signed out, its tokens refused."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from keycloak import KeycloakAdmin
from playwright.sync_api import expect

from devstack.keycloak import client_secret
from tests.browser.pages import Ui
from tests.browser.people import Person, throwaway_user
from tests.fixtures.live import LiveStack
from tests.keycloak_flows import (
    GATEWAY_CALLBACK,
    GATEWAY_CLIENT_ID,
    Pkce,
    jwt_claims,
    oidc_url,
    token_request,
)

pytestmark = [pytest.mark.browser, pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def technician(keycloak_admin: KeycloakAdmin) -> Iterator[Person]:
    """A verified technician whose sessions the test ends."""
    with throwaway_user(keycloak_admin, "ended", "Sean", "Ended") as person:
        yield person


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token_of_browser_session(ui: Ui, keycloak_url: str, secret: str) -> str:
    """An access token Keycloak issues from the browser's single sign-on session (same sid).

    With the browser's cookies, Keycloak authorizes the realm's mro-gateway client at once and
    redirects to that client's callback with a code, which is exchanged like a script would.
    """
    pkce = Pkce.new()
    state = secrets.token_urlsafe(16)
    query = {
        "client_id": GATEWAY_CLIENT_ID,
        "response_type": "code",
        "redirect_uri": GATEWAY_CALLBACK,
        "scope": "openid",
        "state": state,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    authorized = ui.page.context.request.get(
        f"{oidc_url(keycloak_url, 'auth')}?{urlencode(query)}", max_redirects=0
    )
    assert authorized.status == 302, authorized.text()
    location = authorized.headers["location"]
    assert location.startswith(GATEWAY_CALLBACK), location
    answer = parse_qs(urlsplit(location).query)
    assert answer["state"] == [state]
    grant = {
        "grant_type": "authorization_code",
        "code": answer["code"][0],
        "redirect_uri": GATEWAY_CALLBACK,
        "code_verifier": pkce.verifier,
    }
    response = token_request(keycloak_url, grant, (GATEWAY_CLIENT_ID, secret))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_admin_ending_the_sessions_signs_the_browser_out_and_revokes_its_tokens(
    live_stack: LiveStack,
    open_ui: Callable[..., Ui],
    user_tokens: Callable[[str], dict[str, Any]],
    dev_credentials: dict[str, Any],
    technician: Person,
) -> None:
    """After a manager's POST …/logout the next UI call is 401 (sign-in) and the sid is revoked."""
    manager = next(u for u in dev_credentials["users"] if u["roles"] == ["manager"])
    ui = open_ui(live_stack.gateway_url)
    page = ui.page
    ui.sign_in(technician.username, technician.password)
    ui.heading("Your conversations")
    expect(page.locator(".list-region")).not_to_have_attribute("aria-busy", "true")
    ui.shot("60-before-session-end")
    token = _token_of_browser_session(
        ui, live_stack.keycloak_url, client_secret(GATEWAY_CLIENT_ID, dev_credentials)
    )
    assert jwt_claims(token)["sub"] == technician.id
    with live_stack.client() as gateway:
        assert gateway.get("/api/me", headers=_bearer(token)).status_code == 200

        ended = gateway.post(
            f"/api/admin/users/{technician.id}/logout",
            headers=_bearer(user_tokens(manager["username"])["access_token"]),
        )
        assert ended.status_code == 204, ended.text

        refused = gateway.get("/api/me", headers=_bearer(token))
        assert refused.status_code == 401
        assert refused.json()["code"] == "token_revoked"

    with page.expect_response(lambda r: r.url.endswith("/api/agents")) as call:
        page.get_by_role("navigation", name="Main").get_by_role(
            "link", name="New conversation"
        ).click()
    assert call.value.status == 401
    ui.heading("Sign in")
    # The visible notice; the screen-reader status region may carry the same words.
    expect(page.locator("p.notice", has_text="Your session has ended.")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    ui.shot("61-session-ended")
    page.reload()
    ui.heading("Sign in")
    session = page.request.get(f"{live_stack.gateway_url}/auth/session").json()
    assert session["authenticated"] is False
    assert ui.errors == []
