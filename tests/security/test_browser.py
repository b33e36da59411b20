"""Browser attacks on the session (BFF) routes: open redirects, CSRF, CORS and cookie flags.

A throwaway technician logs in through the running gateway and the real Keycloak with a
cookie-keeping client; Keycloak's single sign-on makes every further login a few redirects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import unquote, urljoin, urlsplit

import httpx
import pytest
from keycloak import KeycloakAdmin

from devstack.procs import free_port
from tests.fixtures.live import LiveStack
from tests.gateway.login_stack import (
    Browser,
    KeycloakUser,
    cookie_attributes,
    keycloak_client,
    keycloak_user,
    login,
)
from tests.security.evidence import (
    AuditReader,
    LoopbackAddresses,
    assert_problem,
    bearer,
    since,
    transport,
)
from tests.security.lab import Lab, LabFactory

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]

SESSION_COOKIE = "mro-session"  # the live stack runs with the plain-http development switch


def _browser(source: str) -> Browser:
    """A cookie-keeping browser whose connections come from the loopback address source, so its
    page loads count against an address of this suite's own."""
    browser = Browser()
    browser.recorder._inner.close()
    browser.recorder._inner = transport(source)
    return browser


@pytest.fixture(scope="module")
def person(keycloak_admin: KeycloakAdmin) -> Iterator[KeycloakUser]:
    """A throwaway technician."""
    with keycloak_user(keycloak_admin) as user:
        yield user


@pytest.fixture(scope="module")
def browser(
    live_stack: LiveStack, person: KeycloakUser, addresses: LoopbackAddresses
) -> Iterator[Browser]:
    """A browser logged in to the running gateway (and to Keycloak, for single sign-on)."""
    with _browser(addresses.next()) as logged_in:
        done = login(logged_in, live_stack.gateway_url, person)
        assert done.status_code == 302, done.text
        yield logged_in


def _csrf_token(browser: Browser, gateway_url: str) -> str:
    session = browser.get(f"{gateway_url}/auth/session").json()
    assert session["authenticated"] is True
    return str(session["csrf_token"])


# --- Open redirects ---------------------------------------------------------------------------

FOREIGN_RETURN_PATHS = {
    "absolute-url": "https://evil.example/",
    "scheme-relative": "//evil.example/",
    "triple-slash": "///evil.example/",
    "slash-backslash": "/\\evil.example/",
    "backslashes": "\\\\evil.example/",
    "encoded-slashes": "/%2F%2Fevil.example/",
    "encoded-slash-start": "%2F%2Fevil.example/",
    "encoded-backslash": "/%5Cevil.example/",
    "scheme-without-slashes": "https:evil.example",
    "javascript": "javascript:alert(document.cookie)",
    "data": "data:text/html,<script>alert(1)</script>",
    "tab-inside": "/\t/evil.example/",
    "newline-inside": "/\n/evil.example/",
    "leading-space": " //evil.example/",
    "oversize": "/" + "a" * 5000,
}


def _same_origin_location(gateway_url: str, location: str) -> None:
    """location may only lead to a path on the gateway's own origin, for every URL parser."""
    assert location.startswith("/"), location
    assert not location.startswith(("//", "/\\")), location
    assert "\\" not in location, location
    assert not any(ord(c) < 0x21 for c in unquote(location)), location
    assert not unquote(location).startswith(("//", "/\\")), location
    resolved = urlsplit(urljoin(gateway_url + "/", location))
    assert (resolved.scheme, resolved.netloc) == tuple(urlsplit(gateway_url)[:2]), location


@pytest.mark.parametrize(
    "return_to", FOREIGN_RETURN_PATHS.values(), ids=FOREIGN_RETURN_PATHS.keys()
)
def test_login_never_returns_to_another_origin(
    live_stack: LiveStack, browser: Browser, person: KeycloakUser, return_to: str
) -> None:
    """After a real login, a foreign or ambiguous ``return_to`` becomes ``/``."""
    done = login(browser, live_stack.gateway_url, person, return_to=return_to)
    assert done.status_code == 302, done.text
    location = done.headers["location"]
    _same_origin_location(live_stack.gateway_url, location)
    assert location == "/"


@pytest.mark.parametrize("path", ["/app/chat?c=42", "/@evil.example/"], ids=["query", "at-sign"])
def test_login_keeps_a_same_origin_return_path(
    live_stack: LiveStack, browser: Browser, person: KeycloakUser, path: str
) -> None:
    """The control: a path on the gateway's origin (even one that looks like userinfo) is kept."""
    done = login(browser, live_stack.gateway_url, person, return_to=path)
    assert done.headers["location"] == path
    _same_origin_location(live_stack.gateway_url, path)


# --- CSRF -------------------------------------------------------------------------------------

CSRF_ATTEMPTS: dict[str, Callable[[str, str], dict[str, str]]] = {
    "no-origin-no-token": lambda origin, token: {},
    "foreign-origin-with-token": lambda origin, token: {
        "Origin": "https://evil.example",
        "X-CSRF-Token": token,
    },
    "look-alike-origin": lambda origin, token: {
        "Origin": origin + ".evil.example",
        "X-CSRF-Token": token,
    },
    "null-origin": lambda origin, token: {"Origin": "null", "X-CSRF-Token": token},
    "foreign-referer": lambda origin, token: {
        "Referer": "https://evil.example/page",
        "X-CSRF-Token": token,
    },
    "same-origin-no-token": lambda origin, token: {"Origin": origin},
    "same-origin-wrong-token": lambda origin, token: {
        "Origin": origin,
        "X-CSRF-Token": token[:-2] + "xx",
    },
    "same-origin-token-twice": lambda origin, token: {
        "Origin": origin,
        "X-CSRF-Token": f"{token}, {token}",
    },
}


@pytest.mark.parametrize("name", CSRF_ATTEMPTS)
def test_cookie_authenticated_unsafe_request_needs_origin_and_token(
    live_stack: LiveStack, browser: Browser, name: str
) -> None:
    """A cross-site or tokenless POST with the session cookie is 403 csrf_failed, and nothing is
    created in the orchestrator."""
    url = live_stack.gateway_url
    token = _csrf_token(browser, url)
    title = f"csrf-{name}"
    headers = CSRF_ATTEMPTS[name](url, token)
    answer = browser.post(f"{url}/api/conversations", json={"title": title}, headers=headers)
    assert_problem(answer, 403, "csrf_failed")
    listed = browser.get(f"{url}/api/conversations").json()
    items = listed["items"] if isinstance(listed, dict) else listed
    assert title not in [item.get("title") for item in items]


def test_same_origin_request_with_token_passes(live_stack: LiveStack, browser: Browser) -> None:
    """The control: Origin of the gateway plus the session's token creates the conversation."""
    url = live_stack.gateway_url
    token = _csrf_token(browser, url)
    answer = browser.post(
        f"{url}/api/conversations",
        json={"title": "csrf-control"},
        headers={"Origin": url, "X-CSRF-Token": token},
    )
    assert answer.status_code == 201, answer.text


def test_csrf_refusal_is_audited(
    live_stack: LiveStack, browser: Browser, person: KeycloakUser, audit_reader: AuditReader
) -> None:
    """A refused cross-site request leaves an auth.csrf_failed record naming its request id,
    the session's user, the reason and the claimed origin, and no token."""
    url = live_stack.gateway_url
    token = _csrf_token(browser, url)
    after = since()
    answer = browser.post(
        f"{url}/api/conversations",
        json={},
        headers={"Origin": "https://evil.example", "X-CSRF-Token": token},
    )
    assert_problem(answer, 403, "csrf_failed")
    request_id = answer.headers["x-request-id"]
    (event,) = audit_reader.wait_for(
        "auth.csrf_failed", after=after, where=lambda e: e["request_id"] == request_id, seconds=3
    )
    assert (event["outcome"], event["actor"], event["reason"], event["target"]) == (
        "denied",
        person.id,
        "origin",
        "/api/conversations",
    )
    assert event["details"] == {"method": "POST", "origin": "https://evil.example"}
    assert token not in str(event)


def test_cross_site_logout_is_audited(
    live_stack: LiveStack, browser: Browser, person: KeycloakUser, audit_reader: AuditReader
) -> None:
    """A refused cross-site logout leaves an auth.csrf_failed record for the session's user."""
    url = live_stack.gateway_url
    after = since()
    answer = browser.post(f"{url}/auth/logout", headers={"Origin": "https://evil.example"})
    assert_problem(answer, 403, "csrf_failed")
    request_id = answer.headers["x-request-id"]
    (event,) = audit_reader.wait_for(
        "auth.csrf_failed", after=after, where=lambda e: e["request_id"] == request_id, seconds=3
    )
    assert (event["actor"], event["reason"], event["target"]) == (
        person.id,
        "origin",
        "/auth/logout",
    )


def test_logout_from_another_site_is_refused(live_stack: LiveStack, browser: Browser) -> None:
    """A cross-site logout (POST from a foreign origin, or a cross-site GET) ends no session."""
    url = live_stack.gateway_url
    post = browser.post(f"{url}/auth/logout", headers={"Origin": "https://evil.example"})
    assert_problem(post, 403, "csrf_failed")
    get = browser.get(f"{url}/auth/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert_problem(get, 403, "csrf_failed")
    assert browser.get(f"{url}/auth/session").json()["authenticated"] is True


def test_a_guessed_session_cookie_is_refused(gateway: httpx.Client) -> None:
    """A guessed or stale session cookie is a 401 session_expired, never an anonymous pass."""
    gateway.cookies.set(SESSION_COOKIE, "guessed-session-id")
    assert_problem(gateway.get("/api/me"), 401, "session_expired")


# --- CORS -------------------------------------------------------------------------------------


def test_running_gateway_grants_no_foreign_origin(
    gateway: httpx.Client, service_token: Callable[[], str]
) -> None:
    """Without an allow-list entry, neither a preflight nor an actual request from a foreign
    origin gets CORS fields."""
    evil = "https://evil.example"
    preflight = gateway.options(
        "/api/conversations",
        headers={"Origin": evil, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code in (403, 405)
    actual = gateway.get("/api/agents", headers={"Origin": evil, **bearer(service_token())})
    assert actual.status_code == 200
    for answer in (preflight, actual):
        assert "access-control-allow-origin" not in answer.headers
        assert "access-control-allow-credentials" not in answer.headers


CORS_ORIGINS = {
    "foreign": "https://evil.example",
    "suffix": "https://app.example.evil.example",
    "prefix": "https://evilapp.example",
    "other-port": "https://app.example:8443",
    "other-scheme": "http://app.example",
    "null": "null",
    "trailing-slash": "https://app.example/",
}


@pytest.fixture(scope="module")
def cors_lab(lab_factory: LabFactory) -> Iterator[Lab]:
    """A lab gateway allowing exactly https://app.example."""
    with lab_factory(cors_allowed_origins=["https://app.example"]) as lab:
        yield lab


@pytest.mark.parametrize("origin", CORS_ORIGINS.values(), ids=CORS_ORIGINS.keys())
def test_cors_allows_only_the_exact_listed_origin(
    cors_lab: Lab, service_token: Callable[[], str], origin: str
) -> None:
    """Look-alike origins get a 403 preflight and no CORS fields on actual requests."""
    with cors_lab.client("127.0.0.1") as client:
        preflight = client.options(
            "/api/conversations",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert_problem(preflight, 403, "cors_denied")
        actual = client.get("/api/agents", headers={"Origin": origin, **bearer(service_token())})
    for answer in (preflight, actual):
        assert "access-control-allow-origin" not in answer.headers


def test_cors_answers_the_listed_origin_exactly(
    cors_lab: Lab, service_token: Callable[[], str]
) -> None:
    """The control: the listed origin is echoed (never ``*``), with Vary: Origin."""
    origin = "https://app.example"
    with cors_lab.client("127.0.0.1") as client:
        preflight = client.options(
            "/api/conversations",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        actual = client.get("/api/agents", headers={"Origin": origin, **bearer(service_token())})
    assert preflight.status_code == 204
    for answer in (preflight, actual):
        assert answer.headers["access-control-allow-origin"] == origin
        assert answer.headers["vary"] == "Origin"


# --- Cookie flags -----------------------------------------------------------------------------


def test_development_session_cookie_flags(
    live_stack: LiveStack, person: KeycloakUser, client_ip: str
) -> None:
    """On the plain-http development stack the session cookie is still HttpOnly, SameSite=Lax,
    host-only and path /."""
    with _browser(client_ip) as fresh:
        login(fresh, live_stack.gateway_url, person)
        attributes = cookie_attributes(fresh.set_cookie_field(SESSION_COOKIE))
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "lax"
    assert attributes["path"] == "/"
    assert "domain" not in attributes


@pytest.fixture(scope="module")
def secure_lab(lab_factory: LabFactory, keycloak_admin: KeycloakAdmin) -> Iterator[Lab]:
    """A lab gateway with production cookie settings and its own Keycloak client."""
    port = free_port()
    with (
        keycloak_client(keycloak_admin, [f"http://127.0.0.1:{port}"]) as client,
        lab_factory(port=port, client_id=client.client_id, client_secret=client.secret) as lab,
    ):
        yield lab


def test_production_cookies_are_host_prefixed_secure_httponly_lax(
    secure_lab: Lab, person: KeycloakUser
) -> None:
    """With secure cookies (the default), login and session cookies carry ``__Host-``, Secure,
    HttpOnly, SameSite=Lax, Path=/ and no Domain."""
    with Browser() as fresh:
        done = login(fresh, secure_lab.url, person)
        assert done.status_code == 302, done.text
        for name in ("__Host-mro-login", "__Host-mro-session"):
            attributes = cookie_attributes(fresh.set_cookie_field(name))
            assert "secure" in attributes, name
            assert "httponly" in attributes, name
            assert attributes["samesite"].lower() == "lax", name
            assert attributes["path"] == "/", name
            assert "domain" not in attributes, name


def test_a_planted_session_cookie_is_never_adopted(secure_lab: Lab, person: KeycloakUser) -> None:
    """Session fixation: a cookie set before login is replaced by a new id and stays invalid."""
    planted = "attacker-chosen-session-id-0123456789"
    with Browser() as victim:
        victim.cookies.set("__Host-mro-session", planted, domain="127.0.0.1", path="/")
        login(victim, secure_lab.url, person)
        issued = victim.set_cookie_field("__Host-mro-session").split(";", 1)[0].split("=", 1)[1]
        assert issued != planted
    with httpx.Client(timeout=30) as attacker:
        attacker.cookies.set("__Host-mro-session", planted)
        assert_problem(attacker.get(f"{secure_lab.url}/api/me"), 401)
