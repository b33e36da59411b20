"""CSRF defence of cookie-authenticated requests: unit checks and through a real session."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from keycloak import KeycloakAdmin
from redis.asyncio import Redis
from starlette.datastructures import Headers

from devstack.procs import free_port
from gateway.browser.csrf import (
    CsrfFailed,
    CsrfGuard,
    check_csrf,
    check_origin,
    origin_of,
    refusal_details,
)
from gateway.browser.session_store import SessionRecord, session_key
from gateway.edge.request_context import RequestContext
from gateway.errors import PermissionDenied
from gateway.identity import AuthMethod, Identity
from tests.gateway.harness import ListAuditSink, RecordingUpstream, in_process_app, running
from tests.gateway.login_stack import (
    Browser,
    GatewayUnderTest,
    gateway_settings,
    keycloak_client,
    keycloak_user,
    login,
    serve,
)

SITE = "https://mro.example"
TOKEN = "t" * 43


@dataclass(frozen=True)
class Session:
    csrf_token: str = TOKEN


def headers(**fields: str) -> Headers:
    return Headers(headers={name.replace("_", "-"): value for name, value in fields.items()})


def refused(method: str, fields: Headers) -> bool:
    """True when check_csrf refuses with code csrf_failed (any other code would not be caught)."""
    try:
        check_csrf(method, fields, Session(), allowed_origin=SITE)
    except PermissionDenied as exc:
        return exc.code == "csrf_failed"
    return False


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE", "get"])
def test_safe_methods_need_nothing(method: str) -> None:
    """Reads carry no CSRF obligation."""
    assert not refused(method, headers())


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "post"])
def test_unsafe_methods_pass_with_same_origin_and_the_token(method: str) -> None:
    """Same-origin Origin plus the session's token is accepted for every unsafe method."""
    assert not refused(method, headers(origin=SITE, x_csrf_token=TOKEN))


@pytest.mark.parametrize(
    "fields",
    [
        {"x_csrf_token": TOKEN},  # neither Origin nor Referer
        {"origin": "https://evil.example", "x_csrf_token": TOKEN},
        {"origin": "https://mro.example.evil.example", "x_csrf_token": TOKEN},
        {"origin": "http://mro.example", "x_csrf_token": TOKEN},  # other scheme
        {"origin": "https://mro.example:8443", "x_csrf_token": TOKEN},  # other port
        {"origin": "null", "x_csrf_token": TOKEN},
        {"referer": "https://evil.example/mro.example", "x_csrf_token": TOKEN},
        {"origin": SITE},  # no token
        {"origin": SITE, "x_csrf_token": ""},
        {"origin": SITE, "x_csrf_token": TOKEN + "x"},
        {"origin": SITE, "x_csrf_token": "u" * 43},
    ],
)
def test_unsafe_methods_without_both_checks_are_refused(fields: dict[str, str]) -> None:
    """A wrong or missing Origin, or a wrong or missing token, gives 403 csrf_failed."""
    assert refused("POST", headers(**fields))


def test_referer_stands_in_for_a_missing_origin() -> None:
    """Without Origin a same-origin Referer is accepted (older browsers, some navigations)."""
    assert not refused("POST", headers(referer=SITE + "/chat?x=1", x_csrf_token=TOKEN))


def test_the_token_field_must_be_sent_once() -> None:
    """Two X-CSRF-Token fields are refused even when one is right."""
    doubled = Headers(raw=[(b"origin", SITE.encode()), (b"x-csrf-token", TOKEN.encode())] * 2)
    assert refused("POST", doubled)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://MRO.example/", "https://mro.example"),
        ("https://mro.example:443/x", "https://mro.example"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://[::1]:80/", "http://[::1]"),
        ("ftp://mro.example", None),
        ("https://", None),
        ("https://mro.example:99999", None),
    ],
)
def test_origin_of_normalises(url: str, origin: str | None) -> None:
    """Origins compare by lower-case scheme, host and effective port."""
    assert origin_of(url) == origin


def test_check_origin_alone_ignores_the_token() -> None:
    """check_origin (used by POST /auth/logout) only looks at Origin/Referer."""
    check_origin(headers(origin=SITE), SITE)
    with pytest.raises(PermissionDenied):
        check_origin(headers(origin="https://evil.example"), SITE)


class _Sessions:
    def __init__(self, session: Session | None) -> None:
        self.session = session
        self.asked: list[str] = []

    async def current(self, session_id: str) -> Session | None:
        self.asked.append(session_id)
        return self.session


async def test_guard_checks_only_session_requests_with_unsafe_methods() -> None:
    """Bearer and API-key callers, and reads, are not looked up; session writes are."""
    sessions = _Sessions(Session())
    guard = CsrfGuard(sessions, "__Host-mro-session", SITE)
    jwt = Identity(subject="s", method=AuthMethod.JWT, roles=frozenset())
    session = Identity(subject="s", method=AuthMethod.SESSION, roles=frozenset())
    await guard.check("POST", headers(), jwt)
    await guard.check("GET", headers(cookie="__Host-mro-session=abc"), session)
    assert sessions.asked == []
    with pytest.raises(PermissionDenied):
        await guard.check("POST", headers(cookie="__Host-mro-session=abc", origin=SITE), session)
    await guard.check(
        "POST", headers(cookie="__Host-mro-session=abc", origin=SITE, x_csrf_token=TOKEN), session
    )
    assert sessions.asked == ["abc", "abc"]


async def test_guard_refuses_when_the_session_is_gone() -> None:
    """A session that ended between authentication and the check is refused."""
    guard = CsrfGuard(_Sessions(None), "__Host-mro-session", SITE)
    session = Identity(subject="s", method=AuthMethod.SESSION, roles=frozenset())
    with pytest.raises(PermissionDenied):
        await guard.check(
            "DELETE",
            headers(cookie="__Host-mro-session=abc", origin=SITE, x_csrf_token=TOKEN),
            session,
        )


COOKIE = "__Host-mro-session"
SESSION_USER = Identity(subject="user-7", method=AuthMethod.SESSION, roles=frozenset())


def context() -> RequestContext:
    return RequestContext(
        request_id="rid-1", client_ip="198.51.100.4", route="/api/conversations/{id}"
    )


@pytest.mark.parametrize(
    ("session", "fields", "reason"),
    [
        (Session(), {"origin": "https://evil.example", "x_csrf_token": TOKEN}, "origin"),
        (Session(), {"origin": SITE, "x_csrf_token": "u" * 43}, "token"),
        (None, {"origin": SITE, "x_csrf_token": TOKEN}, "session"),
    ],
    ids=["origin", "token", "session"],
)
async def test_guard_audits_each_refusal_with_its_reason(
    session: Session | None, fields: dict[str, str], reason: str
) -> None:
    """A refused session write emits one auth.csrf_failed naming the user, route, reason and
    request, and the 403 still reaches the caller."""
    audit = ListAuditSink()
    guard = CsrfGuard(_Sessions(session), COOKIE, SITE)
    with pytest.raises(CsrfFailed) as refused:
        await guard.check(
            "post", headers(cookie=f"{COOKIE}=abc", **fields), SESSION_USER, context(), audit
        )
    assert (refused.value.status, refused.value.code, refused.value.reason) == (
        403,
        "csrf_failed",
        reason,
    )
    (event,) = audit.events
    assert (event.action, event.outcome, event.actor, event.reason) == (
        "auth.csrf_failed",
        "denied",
        "user-7",
        reason,
    )
    assert (event.target, event.request_id, event.client_ip) == (
        "/api/conversations/{id}",
        "rid-1",
        "198.51.100.4",
    )
    assert event.details == {"method": "POST", "origin": fields["origin"]}


async def test_guard_audits_nothing_it_lets_through() -> None:
    """Accepted writes, reads and bearer requests leave no csrf event."""
    audit = ListAuditSink()
    guard = CsrfGuard(_Sessions(Session()), COOKIE, SITE)
    bearer_user = Identity(subject="s", method=AuthMethod.JWT, roles=frozenset())
    good = headers(cookie=f"{COOKIE}=abc", origin=SITE, x_csrf_token=TOKEN)
    await guard.check("POST", good, SESSION_USER, context(), audit)
    await guard.check("GET", headers(cookie=f"{COOKIE}=abc"), SESSION_USER, context(), audit)
    await guard.check("POST", headers(), bearer_user, context(), audit)
    assert audit.events == []


async def test_refusal_event_carries_no_token_cookie_or_referer_path() -> None:
    """Neither the CSRF token, nor the session cookie, nor a Referer's path and query are kept."""
    audit = ListAuditSink()
    guard = CsrfGuard(_Sessions(Session()), COOKIE, SITE)
    sent = headers(
        cookie=f"{COOKIE}=secret-session-id",
        referer="https://evil.example/steal?access_token=secret-in-query",
        x_csrf_token=TOKEN,
    )
    with pytest.raises(CsrfFailed):
        await guard.check("DELETE", sent, SESSION_USER, context(), audit)
    (event,) = audit.events
    assert event.details == {"method": "DELETE", "origin": "https://evil.example"}
    recorded = repr(event.to_json())
    for secret in (TOKEN, "secret-session-id", "secret-in-query", "/steal"):
        assert secret not in recorded


@pytest.mark.parametrize(
    ("fields", "origin"),
    [
        ({}, None),
        ({"origin": "null"}, "null"),
        ({"origin": "https://" + "a" * 500}, ("https://" + "a" * 500)[:200]),
        ({"referer": "not a url"}, None),
    ],
    ids=["none", "null", "oversize", "bad-referer"],
)
def test_refusal_details_record_only_a_bounded_origin(
    fields: dict[str, str], origin: str | None
) -> None:
    """The claimed origin is recorded as sent (cut to 200 characters), or None."""
    assert refusal_details("patch", headers(**fields)) == {"method": "PATCH", "origin": origin}


class _CookieSessions:
    """Authenticates any request carrying the session cookie as SESSION_USER (no Redis record)."""

    async def authenticate(self, fields: Mapping[str, str]) -> Identity | None:
        return SESSION_USER if COOKIE in fields.get("cookie", "") else None


@pytest.mark.redis
async def test_pipeline_audits_a_csrf_refusal_with_the_request_id(
    tmp_path: Path, redis_url: str
) -> None:
    """Through the pipeline, a cross-site session write is a 403 whose audit event carries the
    answer's request id, the user, the route and the client address; nothing is forwarded."""
    audit = ListAuditSink()
    upstream = RecordingUpstream()
    app = in_process_app(
        tmp_path, redis_url, upstream, audit_sink=audit, authenticators=[_CookieSessions()]
    )
    async with running(app) as http:
        answer = await http.post(
            "/api/conversations",
            json={"title": "x"},
            headers={"Origin": "https://evil.example", "Cookie": f"{COOKIE}=unknown-session"},
        )
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "csrf_failed"
    (event,) = [e for e in audit.events if e.action == "auth.csrf_failed"]
    assert (event.request_id, event.actor, event.target, event.client_ip) == (
        answer.headers["x-request-id"],
        "user-7",
        "/api/conversations",
        "203.0.113.7",
    )
    assert event.reason == "session"  # the cookie names no stored session
    assert upstream.received == []


@pytest.fixture(scope="module")
def gateway(
    keycloak_admin: KeycloakAdmin, keycloak_url: str, redis_url: str
) -> Iterator[tuple[GatewayUnderTest, Browser]]:
    port = free_port()
    with (
        keycloak_client(keycloak_admin, [f"http://127.0.0.1:{port}"]) as client,
        keycloak_user(keycloak_admin) as user,
    ):
        under_test = GatewayUnderTest(*gateway_settings(port, keycloak_url, client, redis_url))
        with serve(under_test.app(), port), Browser() as browser:
            assert login(browser, under_test.url, user).status_code == 302
            yield under_test, browser


@pytest.mark.keycloak
@pytest.mark.redis
def test_a_logged_in_browser_writes_with_the_token_from_auth_session(
    gateway: tuple[GatewayUnderTest, Browser],
) -> None:
    """The token from GET /auth/session plus Origin lets the browser POST; without, 403."""
    under_test, browser = gateway
    url = under_test.url + "/api/notes"
    token = browser.get(under_test.url + "/auth/session").json()["csrf_token"]
    missing = browser.post(url, headers={"Origin": under_test.url})
    assert missing.status_code == 403
    assert missing.json()["code"] == "csrf_failed"
    cross_site = browser.post(
        url, headers={"Origin": "https://evil.example", "X-CSRF-Token": token}
    )
    assert cross_site.status_code == 403
    accepted = browser.post(url, headers={"Origin": under_test.url, "X-CSRF-Token": token})
    assert accepted.status_code == 200
    assert accepted.json() == {"stored": True}


@pytest.mark.keycloak
@pytest.mark.redis
async def test_bearer_callers_are_not_asked_for_a_csrf_token(
    gateway: tuple[GatewayUnderTest, Browser], redis_url: str
) -> None:
    """A script with a bearer token (here the session's own access token) and no Origin can POST."""
    under_test, browser = gateway
    redis = Redis.from_url(redis_url)
    try:
        cookie = browser.cookies.get("__Host-mro-session") or ""
        record = SessionRecord.loads(await redis.get(f"mro:session:{session_key(cookie)}") or b"")
    finally:
        await redis.aclose()
    assert record is not None
    async with httpx.AsyncClient() as script:
        response = await script.post(
            under_test.url + "/api/notes",
            headers={"Authorization": f"Bearer {record.access_token}"},
        )
    assert response.status_code == 200
