"""The /auth routes against the real Keycloak and Redis: login, callback, logout, back-channel."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from keycloak import KeycloakAdmin
from redis.asyncio import Redis

from devstack.procs import free_port
from gateway.browser.login_state import LoginStates, safe_return_path
from gateway.browser.session_store import SessionRecord, session_key
from tests.gateway.keys import (
    FakeClock,
    LocalIdP,
    TokenFactory,
    logout_claims,
    rsa_key,
    running_idp,
)
from tests.gateway.login_stack import (
    Browser,
    GatewayUnderTest,
    KeycloakClient,
    KeycloakUser,
    cookie_attributes,
    gateway_settings,
    keycloak_client,
    keycloak_user,
    login,
    query,
    serve,
    submit_login,
    to_keycloak,
)
from tests.keycloak_flows import form_action, jwt_claims

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]

SESSION_COOKIE = "__Host-mro-session"
LOGIN_COOKIE = "__Host-mro-login"


@pytest.fixture(scope="module")
def user(keycloak_admin: KeycloakAdmin) -> Iterator[KeycloakUser]:
    with keycloak_user(keycloak_admin) as created:
        yield created


@pytest.fixture(scope="module")
def gateways(
    keycloak_admin: KeycloakAdmin, keycloak_url: str, redis_url: str
) -> Iterator[tuple[GatewayUnderTest, GatewayUnderTest]]:
    """A production-shaped gateway (Secure cookies) and one with the plain-http dev switch."""
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    with keycloak_client(keycloak_admin, urls) as client:
        secure = GatewayUnderTest(*gateway_settings(ports[0], keycloak_url, client, redis_url))
        dev = GatewayUnderTest(
            *gateway_settings(
                ports[1], keycloak_url, client, redis_url, session_cookie_secure=False
            )
        )
        with serve(secure.app(), ports[0]), serve(dev.app(), ports[1]):
            yield secure, dev


@pytest.fixture
def gateway(gateways: tuple[GatewayUnderTest, GatewayUnderTest]) -> GatewayUnderTest:
    gateways[0].clock.offset = 0
    return gateways[0]


@pytest.fixture
def browser() -> Iterator[Browser]:
    with Browser() as client:
        yield client


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def problem_code(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/problem+json"
    code: str = response.json()["code"]
    return code


async def stored_session(redis: Redis, session_id: str) -> SessionRecord | None:
    raw = await redis.get(f"mro:session:{session_key(session_id)}")
    return None if raw is None else SessionRecord.loads(raw)


async def test_login_redirects_to_keycloak_with_state_nonce_and_pkce(
    gateway: GatewayUnderTest, browser: Browser, redis: Redis
) -> None:
    """/auth/login sends an S256 challenge, state and nonce; the verifier stays in Redis."""
    response = browser.get(gateway.url + "/auth/login")
    assert response.status_code == 302
    assert response.headers["cache-control"] == "no-store"
    location = response.headers["location"]
    assert location.startswith(f"{gateway.settings.issuer}/protocol/openid-connect/auth?")
    params = query(location)
    assert params["client_id"] == gateway.settings.client_id
    assert params["response_type"] == "code"
    assert params["redirect_uri"] == gateway.url + "/auth/callback"
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 43
    assert len(params["nonce"]) >= 43
    assert "code_verifier" not in params
    raw = await redis.get(LoginStates(redis, ttl_seconds=1).key(params["state"]))
    assert raw is not None
    pending = json.loads(raw)
    digest = hashlib.sha256(pending["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == params["code_challenge"]
    assert pending["nonce"] == params["nonce"]
    everything_sent = location + "".join(browser.recorder.set_cookies)
    assert pending["code_verifier"] not in everything_sent
    assert 0 < await redis.ttl(LoginStates(redis, ttl_seconds=1).key(params["state"])) <= 600
    attributes = cookie_attributes(browser.set_cookie_field(LOGIN_COOKIE))
    assert {"httponly", "secure", "path", "samesite"} <= attributes.keys()
    assert attributes["path"] == "/"
    assert attributes["samesite"].lower() == "lax"


async def test_full_login_starts_a_session_and_returns_to_the_path(
    gateway: GatewayUnderTest, browser: Browser, user: KeycloakUser, redis: Redis
) -> None:
    """Logging in through Keycloak's form sets a Secure HttpOnly cookie and returns to return_to."""
    response = login(browser, gateway.url, user, return_to="/conversations?tab=open")
    assert response.status_code == 302, response.text
    assert response.headers["location"] == "/conversations?tab=open"
    field = browser.set_cookie_field(SESSION_COOKIE)
    attributes = cookie_attributes(field)
    assert {"httponly", "secure"} <= attributes.keys()
    assert attributes["path"] == "/"
    assert attributes["samesite"].lower() == "lax"
    assert "domain" not in attributes
    session_id = field.split(";")[0].split("=", 1)[1]
    assert len(base64.urlsafe_b64decode(session_id + "=")) >= 32
    assert cookie_attributes(browser.set_cookie_field(LOGIN_COOKIE))["max-age"] == "0"
    whoami = browser.get(gateway.url + "/api/whoami")
    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["method"] == "session"
    assert whoami.json()["sub"] == user.id
    assert "technician" in whoami.json()["roles"]
    record = await stored_session(redis, session_id)
    assert record is not None
    assert record.subject == user.id
    assert record.sid == whoami.json()["sid"]
    assert await redis.get(f"mro:session:{session_id}") is None  # only the hash is a key
    assert [e.actor for e in gateway.audit.actions("auth.login")][-1] == user.id


def test_a_state_works_only_once(
    gateway: GatewayUnderTest, browser: Browser, user: KeycloakUser
) -> None:
    """Replaying a callback URL that already logged in is refused (state is single use)."""
    page = to_keycloak(browser, gateway.url)
    callback = urljoin(gateway.url, submit_login(browser, page, user).headers["location"])
    assert browser.get(callback).status_code == 302
    replay = browser.get(callback)
    assert replay.status_code == 400
    assert problem_code(replay) == "login_state_invalid"
    assert gateway.audit.actions("auth.login_failed")[-1].reason == "state_unknown"


def test_a_tampered_state_is_refused(
    gateway: GatewayUnderTest, browser: Browser, user: KeycloakUser
) -> None:
    """A callback whose state was altered finds no pending login and starts no session."""
    page = to_keycloak(browser, gateway.url)
    location = submit_login(browser, page, user).headers["location"]
    params = query(location)
    forged = f"/auth/callback?code={params['code']}&state={params['state']}x"
    response = browser.get(gateway.url + forged)
    assert response.status_code == 400
    assert problem_code(response) == "login_state_invalid"
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert browser.get(gateway.url + "/api/whoami").status_code == 401


def test_a_state_is_bound_to_the_browser_that_started_the_login(
    gateway: GatewayUnderTest, browser: Browser, user: KeycloakUser
) -> None:
    """Another browser cannot finish someone's login with their code and state (login CSRF)."""
    page = to_keycloak(browser, gateway.url)
    callback = urljoin(gateway.url, submit_login(browser, page, user).headers["location"])
    with Browser() as victim:
        response = victim.get(callback)
        assert response.status_code == 400
        assert problem_code(response) == "login_state_invalid"
        assert victim.get(gateway.url + "/api/whoami").status_code == 401
    assert gateway.audit.actions("auth.login_failed")[-1].reason == "state_not_bound_to_browser"


async def test_a_nonce_mismatch_is_refused(
    gateway: GatewayUnderTest, browser: Browser, user: KeycloakUser, redis: Redis
) -> None:
    """When the ID token's nonce is not the one stored for the state, no session starts."""
    page = to_keycloak(browser, gateway.url)
    state = query(str(page.url))["state"]
    key = LoginStates(redis, ttl_seconds=1).key(state)
    pending = json.loads(await redis.get(key) or b"{}")
    await redis.set(key, json.dumps({**pending, "nonce": "another-login's-nonce"}), ex=60)
    location = submit_login(browser, page, user).headers["location"]
    response = browser.get(urljoin(gateway.url, location))
    assert response.status_code == 400
    assert problem_code(response) == "login_failed"
    assert gateway.audit.actions("auth.login_failed")[-1].reason == "id_token_nonce"
    assert browser.get(gateway.url + "/api/whoami").status_code == 401


async def test_keycloak_refuses_the_code_without_the_stored_verifier(
    gateway: GatewayUnderTest, browser: Browser, user: KeycloakUser, redis: Redis
) -> None:
    """PKCE is enforced: a code redeemed with another verifier is refused by Keycloak."""
    page = to_keycloak(browser, gateway.url)
    key = LoginStates(redis, ttl_seconds=1).key(query(str(page.url))["state"])
    pending = json.loads(await redis.get(key) or b"{}")
    await redis.set(key, json.dumps({**pending, "code_verifier": "A" * 43}), ex=60)
    location = submit_login(browser, page, user).headers["location"]
    response = browser.get(urljoin(gateway.url, location))
    assert response.status_code == 400
    assert gateway.audit.actions("auth.login_failed")[-1].reason == "code_rejected:invalid_grant"


@pytest.mark.parametrize(
    "value",
    [
        "//evil.example",
        "/\\evil.example",
        "https://evil.example",
        "%2F%2Fevil.example",
        "/%2F/evil.example",
        "/%5Cevil.example",
        "http:/evil.example",
        "javascript:alert(1)",
        "\t//evil.example",
        "/ok\r\nLocation: https://evil.example",
        "",
        None,
        "evil.example",
        "/" + "a" * 3000,
    ],
)
def test_return_paths_off_this_origin_become_root(value: str | None) -> None:
    """A return path that could leave the origin (or is odd) is replaced by '/'."""
    assert safe_return_path(value) == "/"


@pytest.mark.parametrize("value", ["/", "/conversations/42", "/a?b=c&d=%2F#frag", "/%20x"])
def test_same_origin_paths_are_kept(value: str) -> None:
    """Plain same-origin paths survive unchanged."""
    assert safe_return_path(value) == value


@pytest.mark.parametrize(
    "raw_query", ["return_to=//evil.example", "return_to=%2F%2Fevil", "return_to=/%5Cevil"]
)
async def test_login_stores_only_safe_return_paths(
    gateway: GatewayUnderTest, browser: Browser, redis: Redis, raw_query: str
) -> None:
    """The return path kept for the callback is '/' for open-redirect attempts in the query."""
    response = browser.get(f"{gateway.url}/auth/login?{raw_query}")
    state = query(response.headers["location"])["state"]
    pending = json.loads(await redis.get(LoginStates(redis, ttl_seconds=1).key(state)) or b"{}")
    assert pending["return_to"] == "/"


def test_an_open_redirect_attempt_lands_on_root_after_login(
    gateway: GatewayUnderTest, browser: Browser, user: KeycloakUser
) -> None:
    """The whole flow with return_to=//evil.example ends on '/'."""
    response = login(browser, gateway.url, user, return_to="//evil.example")
    assert response.status_code == 302
    assert response.headers["location"] == "/"


async def test_a_preset_session_cookie_is_never_adopted(
    gateway: GatewayUnderTest, browser: Browser, user: KeycloakUser, redis: Redis
) -> None:
    """Session fixation: login issues a new id; cookies set before login stop working."""
    planted = "attacker-chosen-session-id-000000000000000000"
    browser.cookies.set(SESSION_COOKIE, planted, domain="127.0.0.1")
    login(browser, gateway.url, user)
    first = browser.cookies.get(SESSION_COOKIE)
    assert first is not None
    assert first != planted
    assert await stored_session(redis, planted) is None
    login(browser, gateway.url, user)  # a second login while logged in rotates again
    second = browser.cookies.get(SESSION_COOKIE)
    assert second is not None
    assert second != first
    assert await stored_session(redis, first) is None
    with Browser() as other:
        other.cookies.set(SESSION_COOKIE, first, domain="127.0.0.1")
        stale = other.get(gateway.url + "/api/whoami")
        assert stale.status_code == 401
        assert problem_code(stale) == "session_expired"
    assert browser.get(gateway.url + "/api/whoami").status_code == 200


async def test_logout_ends_the_session_here_and_at_keycloak(
    gateway: GatewayUnderTest, browser: Browser, user: KeycloakUser, redis: Redis
) -> None:
    """RP-initiated logout: session gone, sid revoked, Keycloak's end-session accepts the hint."""
    login(browser, gateway.url, user)
    session_id = browser.cookies.get(SESSION_COOKIE) or ""
    record = await stored_session(redis, session_id)
    assert record is not None
    response = browser.get(gateway.url + "/auth/logout")
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(f"{gateway.settings.issuer}/protocol/openid-connect/logout?")
    params = query(location)
    assert params["id_token_hint"] == record.id_token
    assert params["post_logout_redirect_uri"] == gateway.url + "/"
    assert cookie_attributes(browser.set_cookie_field(SESSION_COOKIE))["max-age"] == "0"
    assert await stored_session(redis, session_id) is None
    assert await redis.exists(f"mro:revoked-sid:{record.sid}") == 1
    back = browser.get(location)
    assert back.status_code == 302
    assert back.headers["location"] == gateway.url + "/"
    with Browser() as stale:
        stale.cookies.set(SESSION_COOKIE, session_id, domain="127.0.0.1")
        assert stale.get(gateway.url + "/api/whoami").status_code == 401
    with Browser() as script:
        bearer = script.get(
            gateway.url + "/api/whoami", headers={"Authorization": f"Bearer {record.access_token}"}
        )
        assert bearer.status_code == 401
        assert problem_code(bearer) == "token_revoked"
    assert gateway.audit.actions("auth.logout")[-1].actor == user.id


def test_post_logout_from_another_origin_is_refused(
    gateway: GatewayUnderTest, browser: Browser, user: KeycloakUser
) -> None:
    """A cross-site form cannot log the user out; a same-origin POST can."""
    login(browser, gateway.url, user)
    forged = browser.post(gateway.url + "/auth/logout", headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    assert problem_code(forged) == "csrf_failed"
    cross_site = browser.get(gateway.url + "/auth/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403
    assert browser.get(gateway.url + "/api/whoami").status_code == 200
    real = browser.post(gateway.url + "/auth/logout", headers={"Origin": gateway.url})
    assert real.status_code == 303
    assert browser.get(gateway.url + "/api/whoami").status_code == 401


def test_refused_logouts_are_audited_without_the_cookie(
    gateway: GatewayUnderTest, browser: Browser, user: KeycloakUser
) -> None:
    """A cross-site logout POST or GET leaves auth.csrf_failed naming the session's user (or
    nobody without a session), its reason and the claimed origin, never the session cookie."""
    login(browser, gateway.url, user)
    before = len(gateway.audit.actions("auth.csrf_failed"))
    browser.post(gateway.url + "/auth/logout", headers={"Origin": "https://evil.example"})
    browser.get(gateway.url + "/auth/logout", headers={"Sec-Fetch-Site": "cross-site"})
    with Browser() as stranger:
        refused = stranger.post(gateway.url + "/auth/logout", headers={"Origin": "null"})
    assert problem_code(refused) == "csrf_failed"
    events = gateway.audit.actions("auth.csrf_failed")[before:]
    assert [(e.reason, e.actor, e.target, e.outcome) for e in events] == [
        ("origin", user.id, "/auth/logout", "denied"),
        ("cross_site", user.id, "/auth/logout", "denied"),
        ("origin", None, "/auth/logout", "denied"),
    ]
    assert [e.details for e in events] == [
        {"method": "POST", "origin": "https://evil.example"},
        {"method": "GET", "origin": None},
        {"method": "POST", "origin": "null"},
    ]
    assert all(e.request_id and e.client_ip == "127.0.0.1" for e in events)
    session_id = browser.cookies.get(SESSION_COOKIE)
    assert session_id
    assert session_id not in repr([e.to_json() for e in events])


def test_logout_without_a_session_goes_home(gateway: GatewayUnderTest, browser: Browser) -> None:
    """Logging out without a session just returns to the post-logout page."""
    response = browser.get(gateway.url + "/auth/logout")
    assert response.status_code == 302
    assert response.headers["location"] == gateway.url + "/"


async def test_backchannel_logout_from_keycloak_ends_session_and_bearer_tokens(
    gateway: GatewayUnderTest, browser: Browser, keycloak_admin: KeycloakAdmin, redis: Redis
) -> None:
    """Keycloak's logout token ends the browser session and revokes the sid for bearer tokens."""
    with keycloak_user(keycloak_admin) as user:
        await _backchannel_logout(gateway, browser, user, keycloak_admin, redis)


async def _backchannel_logout(
    gateway: GatewayUnderTest,
    browser: Browser,
    user: KeycloakUser,
    keycloak_admin: KeycloakAdmin,
    redis: Redis,
) -> None:
    login(browser, gateway.url, user)
    record = await stored_session(redis, browser.cookies.get(SESSION_COOKIE) or "")
    assert record is not None
    bearer = {"Authorization": f"Bearer {record.access_token}"}
    with Browser() as script:
        assert script.get(gateway.url + "/api/whoami", headers=bearer).status_code == 200
        before = len(gateway.logout_bodies)
        keycloak_admin.user_logout(user.id)  # Keycloak posts the logout token before answering
        assert len(gateway.logout_bodies) == before + 1
        ended = browser.get(gateway.url + "/api/whoami")
        assert ended.status_code == 401
        assert problem_code(ended) == "session_expired"
        revoked = script.get(gateway.url + "/api/whoami", headers=bearer)
        assert revoked.status_code == 401
        assert problem_code(revoked) == "token_revoked"
        event = gateway.audit.actions("auth.backchannel_logout")[-1]
        assert event.outcome == "success"
        assert event.details == {"sid": record.sid, "sessions_ended": 1}
        token = parse_qs(gateway.logout_bodies[-1].decode())["logout_token"][0]
        assert jwt_claims(token)["sid"] == record.sid
        replay = script.post(gateway.url + "/auth/backchannel-logout", data={"logout_token": token})
    assert replay.status_code == 400
    assert problem_code(replay) == "invalid_logout_token"
    assert gateway.audit.actions("auth.backchannel_logout")[-1].reason == "jti_replayed"


def test_keycloak_signed_logout_token_with_a_forged_signature_is_refused(
    gateway: GatewayUnderTest,
) -> None:
    """A logout token naming Keycloak's key but signed by another key is refused (400)."""
    keys = httpx.get(f"{gateway.settings.issuer}/protocol/openid-connect/certs").json()["keys"]
    keycloak_kid = next(key["kid"] for key in keys if key.get("use", "sig") == "sig")
    forger = TokenFactory(rsa_key(keycloak_kid), gateway.settings.issuer, FakeClock(time.time()))
    token = forger.sign(logout_claims(forger, gateway.settings.client_id), typ="logout+jwt")
    response = httpx.post(gateway.url + "/auth/backchannel-logout", data={"logout_token": token})
    assert response.status_code == 400
    assert response.headers["cache-control"] == "no-store"
    assert gateway.audit.actions("auth.backchannel_logout")[-1].reason == "signature"


@pytest.fixture(scope="module")
def idp_gateway(redis_url: str) -> Iterator[tuple[GatewayUnderTest, LocalIdP]]:
    """A test gateway trusting a local provider whose key the tests hold (to forge claims)."""
    with running_idp(LocalIdP(keys=[rsa_key("idp-1")], clock=FakeClock(time.time()))) as idp:
        port = free_port()
        settings, session_settings = gateway_settings(
            port,
            idp.base_url,
            client=KeycloakClient("mro-gateway", "local-secret", "local"),
            redis_url=redis_url,
        )
        gateway = GatewayUnderTest(settings, session_settings)
        with serve(gateway.app(), port):
            yield gateway, idp


def _post_logout(gateway: GatewayUnderTest, **form: str) -> httpx.Response:
    return httpx.post(gateway.url + "/auth/backchannel-logout", data=form)


@pytest.mark.parametrize(
    ("overrides", "header", "reason"),
    [
        ({"aud": "another-client"}, {}, "aud"),
        ({"nonce": "n-1"}, {}, "nonce"),
        ({"events": None}, {}, "events"),
        ({"events": {"http://example.org/other": {}}}, {}, "events"),
        ({"sid": None, "sub": None}, {}, "sid"),
        ({"iss": "http://evil.example/realms/mro"}, {}, "iss"),
        ({"iat_age": 600}, {}, "iat"),
        ({"typ": "ID"}, {}, "typ"),
        ({}, {"typ": "JWT"}, "typ"),
        ({"jti": None}, {}, "jti"),
    ],
)
def test_forged_logout_tokens_are_refused(
    idp_gateway: tuple[GatewayUnderTest, LocalIdP],
    overrides: dict[str, Any],
    header: dict[str, str],
    reason: str,
) -> None:
    """A validly signed logout token failing one back-channel rule gets 400 and an audit event."""
    gateway, idp = idp_gateway
    factory = idp.factory()
    factory.clock.now = time.time()
    age = overrides.pop("iat_age", 0)
    claims = logout_claims(factory, "mro-gateway", **overrides)
    claims["iat"] -= age
    token = factory.sign(claims, **({"typ": "logout+jwt"} | header))
    response = _post_logout(gateway, logout_token=token)
    assert response.status_code == 400
    assert problem_code(response) == "invalid_logout_token"
    event = gateway.audit.actions("auth.backchannel_logout")[-1]
    assert (event.outcome, event.reason) == ("failure", reason)


def test_a_valid_logout_token_is_accepted_once(
    idp_gateway: tuple[GatewayUnderTest, LocalIdP],
) -> None:
    """The same logout token (same jti) works once; its replay is refused."""
    gateway, idp = idp_gateway
    factory = idp.factory()
    factory.clock.now = time.time()
    token = factory.sign(logout_claims(factory, "mro-gateway"), typ="logout+jwt")
    first = _post_logout(gateway, logout_token=token)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-store"
    assert _post_logout(gateway, logout_token=token).status_code == 400


@pytest.mark.parametrize(
    "form",
    [{}, {"token": "x"}, {"logout_token": "not.a.jwt"}, {"logout_token": "a.b"}],
)
def test_malformed_logout_requests_are_refused(
    idp_gateway: tuple[GatewayUnderTest, LocalIdP], form: dict[str, str]
) -> None:
    """Missing or undecodable logout tokens get 400."""
    assert _post_logout(idp_gateway[0], **form).status_code == 400


def test_a_logout_token_must_come_as_a_form(
    idp_gateway: tuple[GatewayUnderTest, LocalIdP],
) -> None:
    """A JSON body is not a back-channel logout request."""
    gateway, idp = idp_gateway
    factory = idp.factory()
    factory.clock.now = time.time()
    token = factory.sign(logout_claims(factory, "mro-gateway"))
    response = httpx.post(gateway.url + "/auth/backchannel-logout", json={"logout_token": token})
    assert response.status_code == 400


def test_register_sends_the_browser_to_keycloaks_registration_form(
    gateway: GatewayUnderTest, browser: Browser
) -> None:
    """/auth/register uses the same state and PKCE machinery, at the registration page."""
    response = browser.get(gateway.url + "/auth/register?return_to=/welcome")
    assert response.status_code == 302
    location = response.headers["location"]
    assert urlsplit(location).path.endswith("/protocol/openid-connect/registrations")
    assert query(location)["code_challenge_method"] == "S256"
    page = browser.get(location)
    assert page.status_code == 200
    assert form_action(page.text, "kc-register-form")


async def test_session_endpoint_reports_login_state_and_csrf_token(
    gateway: GatewayUnderTest, browser: Browser, user: KeycloakUser, redis: Redis
) -> None:
    """GET /auth/session tells whether the browser is logged in and hands it its CSRF token."""
    anonymous = browser.get(gateway.url + "/auth/session")
    assert anonymous.json() == {
        "authenticated": False,
        "user": None,
        "csrf_token": None,
        "expires_at": None,
    }
    login(browser, gateway.url, user)
    body = browser.get(gateway.url + "/auth/session").json()
    assert body["authenticated"] is True
    assert body["user"]["sub"] == user.id
    assert body["user"]["username"] == user.username
    record = await stored_session(redis, browser.cookies.get(SESSION_COOKIE) or "")
    assert record is not None
    assert body["csrf_token"] == record.csrf_token
    assert time.time() < body["expires_at"] <= time.time() + 1800 + 5
    gateway.clock.advance(1801)
    expired = browser.get(gateway.url + "/auth/session")
    assert expired.json()["authenticated"] is False
    assert expired.headers["cache-control"] == "no-store"
    assert cookie_attributes(browser.set_cookie_field(SESSION_COOKIE))["max-age"] == "0"


def test_dev_switch_uses_plain_cookies_on_http(
    gateways: tuple[GatewayUnderTest, GatewayUnderTest], user: KeycloakUser
) -> None:
    """With session_cookie_secure off the cookie is mro-session, without Secure, still HttpOnly."""
    dev = gateways[1]
    with Browser() as browser:
        assert login(browser, dev.url, user).status_code == 302
        attributes = cookie_attributes(browser.set_cookie_field("mro-session"))
        assert "secure" not in attributes
        assert "httponly" in attributes
        assert attributes["samesite"].lower() == "lax"
        assert "secure" not in cookie_attributes(browser.set_cookie_field("mro-login"))
        assert browser.get(dev.url + "/api/whoami").json()["method"] == "session"


def test_callback_with_a_provider_error_is_refused(
    gateway: GatewayUnderTest, browser: Browser
) -> None:
    """Keycloak answering with error=access_denied ends the attempt with 400, no session."""
    state = query(browser.get(gateway.url + "/auth/login").headers["location"])["state"]
    response = browser.get(f"{gateway.url}/auth/callback?error=access_denied&state={state}")
    assert response.status_code == 400
    assert problem_code(response) == "login_failed"
    assert gateway.audit.actions("auth.login_failed")[-1].reason == "provider_error:access_denied"


def test_password_change_runs_keycloaks_form_and_returns_through_the_callback(
    gateway: GatewayUnderTest, browser: Browser, keycloak_admin: KeycloakAdmin
) -> None:
    """/auth/login?action=update_password: Keycloak's form, then a normal callback and session."""
    with keycloak_user(keycloak_admin) as person:
        login(browser, gateway.url, person)
        start = browser.get(gateway.url + "/auth/login?action=update_password&return_to=/")
        assert start.status_code == 302, start.text
        asked = query(start.headers["location"])
        assert asked["kc_action"] == "UPDATE_PASSWORD"
        assert asked["code_challenge_method"] == "S256"
        # Keycloak knows the person already (single sign-on) and shows its own password form.
        form = browser.get(start.headers["location"])
        while form.status_code == 302 and not form.headers["location"].startswith(gateway.url):
            form = browser.get(urljoin(str(form.url), form.headers["location"]))
        assert form.status_code == 200, form.headers.get("location")
        assert 'id="kc-passwd-update-form"' in form.text
        new_password = "Changed-dev-only-" + uuid.uuid4().hex[:12]
        done = browser.post(
            form_action(form.text, "kc-passwd-update-form"),
            data={"password-new": new_password, "password-confirm": new_password},
        )
        assert done.status_code == 302, done.text
        callback = browser.get(urljoin(gateway.url, done.headers["location"]))
        assert callback.status_code == 302, callback.text
        assert callback.headers["location"] == "/"
        assert gateway.audit.actions("auth.login")[-1].outcome == "success"


def test_unknown_login_actions_are_refused(gateway: GatewayUnderTest, browser: Browser) -> None:
    """Only allow-listed Keycloak actions pass through /auth/login."""
    response = browser.get(gateway.url + "/auth/login?action=delete_account")
    assert response.status_code == 422
