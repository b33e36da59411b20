"""Browser sessions on real Redis and Keycloak: ids, limits, refresh under a shared lock."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from keycloak import KeycloakAdmin
from redis.asyncio import Redis

from devstack.procs import free_port
from gateway.auth.bearer import BearerAuthenticator
from gateway.auth.jwks import JWKSCache
from gateway.browser.oidc import OidcClient, TokenSet
from gateway.browser.session_store import SessionRecord, SessionStore, session_key
from gateway.browser.sessions import (
    SessionAuthenticator,
    SessionExpired,
    SessionManager,
    SessionSettings,
)
from gateway.errors import AuthenticationError, DependencyUnavailable
from gateway.identity import Identity
from tests.fixtures.stack import RedisServer
from tests.gateway.keys import FakeClock
from tests.gateway.login_stack import (
    Browser,
    GatewayUnderTest,
    KeycloakClient,
    KeycloakUser,
    RecordingAudit,
    gateway_settings,
    keycloak_client,
    keycloak_user,
    login,
    serve,
)
from tests.keycloak_flows import authorization_code_tokens, token_request

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]

SESSION_COOKIE = "__Host-mro-session"
PARALLEL = 20


@dataclass
class Stack:
    """Two gateway processes on one Redis, one Keycloak client and user."""

    a: GatewayUnderTest
    b: GatewayUnderTest
    client: KeycloakClient
    user: KeycloakUser

    def advance(self, seconds: float) -> None:
        self.a.clock.advance(seconds)
        self.b.clock.advance(seconds)

    def token_calls(self) -> int:
        return self.a.transport.count("/token") + self.b.transport.count("/token")


@pytest.fixture(scope="module")
def module_stack(
    keycloak_admin: KeycloakAdmin, keycloak_url: str, redis_url: str
) -> Iterator[Stack]:
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    with (
        keycloak_client(keycloak_admin, urls) as client,
        keycloak_user(keycloak_admin) as user,
    ):
        a = GatewayUnderTest(*gateway_settings(ports[0], keycloak_url, client, redis_url))
        b = GatewayUnderTest(*gateway_settings(ports[1], keycloak_url, client, redis_url))
        with serve(a.app(), ports[0]), serve(b.app(), ports[1]):
            yield Stack(a, b, client, user)


@pytest.fixture
def stack(module_stack: Stack) -> Stack:
    for gateway in (module_stack.a, module_stack.b):
        gateway.clock.offset = 0
        gateway.transport.down = False
        gateway.transport.token_delay = 0.0
    return module_stack


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def logged_in(stack: Stack) -> str:
    """Log the module user in at gateway A; the session cookie's value."""
    with Browser() as browser:
        assert login(browser, stack.a.url, stack.user).status_code == 302
        session_id = browser.cookies.get(SESSION_COOKIE)
    assert session_id is not None
    return session_id


def whoami(url: str, session_id: str) -> httpx.Response:
    cookie = {"Cookie": f"{SESSION_COOKIE}={session_id}"}
    return httpx.get(url + "/api/whoami", headers=cookie, timeout=30.0)


async def stored(redis: Redis, session_id: str) -> SessionRecord | None:
    raw = await redis.get(f"mro:session:{session_key(session_id)}")
    return None if raw is None else SessionRecord.loads(raw)


def test_parallel_requests_refresh_once_across_two_processes(stack: Stack) -> None:
    """20 parallel requests on two gateways with a nearly expired token: one refresh, all pass."""
    session_id = logged_in(stack)
    before = stack.token_calls()
    stack.advance(300 - 60 + 10)  # 50 s of access token left: inside the refresh margin
    stack.a.transport.token_delay = stack.b.transport.token_delay = 0.5  # refreshes overlap
    barrier = threading.Barrier(PARALLEL)

    def call(index: int) -> int:
        barrier.wait()
        gateway = stack.a if index % 2 == 0 else stack.b
        return whoami(gateway.url, session_id).status_code

    with ThreadPoolExecutor(PARALLEL) as pool:
        statuses = list(pool.map(call, range(PARALLEL)))
    assert statuses == [200] * PARALLEL
    assert stack.token_calls() == before + 1
    refreshed = stack.a.audit.actions("auth.session_refreshed")
    refreshed += stack.b.audit.actions("auth.session_refreshed")
    assert len(refreshed) == 1
    assert whoami(stack.b.url, session_id).status_code == 200
    assert stack.token_calls() == before + 1
    stack.advance(300)  # Keycloak accepts the stored (rotated) refresh token
    assert whoami(stack.a.url, session_id).status_code == 200
    assert stack.token_calls() == before + 2


async def test_an_idle_session_ends(stack: Stack, redis: Redis) -> None:
    """A session unused for longer than session_idle_seconds is gone, also from Redis."""
    session_id = logged_in(stack)
    stack.advance(1801)
    response = whoami(stack.a.url, session_id)
    assert response.status_code == 401
    assert response.json()["code"] == "session_expired"
    assert await stored(redis, session_id) is None


def test_activity_keeps_a_session_alive(stack: Stack) -> None:
    """Idle time counts from the last request, not from login."""
    session_id = logged_in(stack)
    for _ in range(2):
        stack.advance(1000)
        assert whoami(stack.a.url, session_id).status_code == 200
    stack.advance(1801)
    assert whoami(stack.a.url, session_id).status_code == 401


async def test_a_refused_refresh_ends_the_session(stack: Stack, redis: Redis) -> None:
    """When Keycloak refuses the refresh token (already rotated elsewhere) the session ends."""
    session_id = logged_in(stack)
    record = await stored(redis, session_id)
    assert record is not None
    assert record.refresh_token is not None
    used = token_request(
        stack.a.settings.keycloak_url,
        {"grant_type": "refresh_token", "refresh_token": record.refresh_token},
        (stack.client.client_id, stack.client.secret),
    )
    assert used.status_code == 200
    stack.advance(250)
    response = whoami(stack.a.url, session_id)
    assert response.status_code == 401
    assert response.json()["code"] == "session_expired"
    assert await stored(redis, session_id) is None
    failed = stack.a.audit.actions("auth.refresh_failed")[-1]
    assert (failed.actor, failed.reason) == (stack.user.id, "invalid_grant")


async def test_an_unreachable_keycloak_keeps_a_still_valid_session(
    stack: Stack, redis: Redis
) -> None:
    """Keycloak down: the current token serves until it expires, then 503; the session survives."""
    session_id = logged_in(stack)
    stack.a.transport.down = True
    stack.advance(250)
    assert whoami(stack.a.url, session_id).status_code == 200
    stack.advance(60)
    unavailable = whoami(stack.a.url, session_id)
    assert unavailable.status_code == 503
    assert unavailable.json()["code"] == "dependency_unavailable"
    assert await stored(redis, session_id) is not None
    stack.a.transport.down = False
    assert whoami(stack.a.url, session_id).status_code == 200


@dataclass
class Direct:
    """A SessionManager of the test's own, with real tokens from Keycloak."""

    manager: SessionManager
    clock: FakeClock
    audit: RecordingAudit
    store: SessionStore

    def tokens(self, stack: Stack) -> TokenSet:
        raw = authorization_code_tokens(
            stack.a.settings.keycloak_url,
            stack.user.username,
            stack.user.password,
            client_id=stack.client.client_id,
            client_secret=stack.client.secret,
            redirect_uri=stack.a.url + "/auth/callback",
        )
        return TokenSet(
            access_token=raw["access_token"],
            expires_in=raw["expires_in"],
            refresh_token=raw["refresh_token"],
            refresh_expires_in=raw["refresh_expires_in"],
            id_token=raw["id_token"],
        )


@pytest.fixture
async def direct(stack: Stack, redis: Redis) -> AsyncIterator[Direct]:
    settings = stack.a.settings
    session_settings = SessionSettings(
        session_idle_seconds=60, session_max_seconds=120, session_touch_seconds=10
    )
    clock = FakeClock(time.time())
    audit = RecordingAudit()
    async with httpx.AsyncClient(timeout=10.0) as http:
        jwks = JWKSCache(settings.discovery_url, http)
        store = SessionStore(redis)
        manager = SessionManager(
            store,
            OidcClient(settings, http, jwks),
            BearerAuthenticator(jwks, settings),
            session_settings,
            audit,
            clock=clock,
        )
        yield Direct(manager, clock, audit, store)


async def test_session_ids_are_random_and_rotate_at_login(
    stack: Stack, direct: Direct, redis: Redis
) -> None:
    """A new session gets a fresh 256-bit id; the previous one ends; Redis keys hold hashes."""
    first, _ = await direct.manager.start(direct.tokens(stack))
    second, record = await direct.manager.start(direct.tokens(stack), previous_id=first)
    assert second != first
    assert len(base64.urlsafe_b64decode(second + "=")) >= 32
    assert await direct.manager.current(first) is None
    assert await direct.manager.current(second) == record
    assert await redis.exists(f"mro:session:{second}") == 0
    assert await redis.sismember(f"mro:sid:{record.sid}", session_key(second))
    assert await direct.manager.end_all(sid=record.sid, sub=None) == 1
    assert await direct.manager.current(second) is None


async def test_the_absolute_limit_ends_an_active_session(stack: Stack, direct: Direct) -> None:
    """session_max_seconds after login the session ends however active it was."""
    session_id, _ = await direct.manager.start(direct.tokens(stack))
    for _ in range(2):
        direct.clock.advance(50)
        await direct.manager.resolve(session_id)
    direct.clock.advance(30)  # 130 s after login, 30 s after the last request
    with pytest.raises(SessionExpired):
        await direct.manager.resolve(session_id)


async def test_the_authenticator_reads_only_its_cookie(stack: Stack, direct: Direct) -> None:
    """No cookie means no credential; a doubled cookie is refused; a live one is an Identity."""
    session_id, record = await direct.manager.start(direct.tokens(stack))
    authenticator = SessionAuthenticator(direct.manager)
    assert authenticator.session_cookie == SESSION_COOKIE
    assert await authenticator.authenticate({"cookie": "other=1"}) is None
    doubled = f"{SESSION_COOKIE}={session_id}; {SESSION_COOKIE}=x"
    with pytest.raises(AuthenticationError) as raised:
        await authenticator.authenticate({"cookie": doubled})
    assert raised.value.code == "ambiguous_credentials"
    identity = await authenticator.authenticate({"cookie": f"a=b; {SESSION_COOKIE}={session_id}"})
    assert identity is not None
    assert identity.subject == record.subject
    assert identity.method.value == "session"
    assert identity.session_id == record.sid


async def test_a_corrupt_record_is_no_session(direct: Direct, redis: Redis) -> None:
    """A stored value that is not a session record authenticates nobody."""
    await redis.set(f"mro:session:{session_key('garbage-id')}", b"{not json", ex=60)
    with pytest.raises(SessionExpired):
        await direct.manager.resolve("garbage-id")


def test_dev_switch_is_refused_in_production() -> None:
    """session_cookie_secure=false cannot be combined with environment=production."""
    with pytest.raises(ValueError, match="SESSION_COOKIE_SECURE"):
        SessionSettings(environment="production", session_cookie_secure=False)
    assert SessionSettings(session_cookie_secure=False).cookie_name == "mro-session"
    assert SessionSettings().cookie_name == SESSION_COOKIE


async def test_redis_down_is_a_503_not_a_crash(redis_server: RedisServer) -> None:
    """Without Redis, resolving a session raises DependencyUnavailable."""
    redis = Redis.from_url(redis_server.url)
    store = SessionStore(redis)
    manager = SessionManager(
        store, _NoRefresh(), _NoVerify(), SessionSettings(), RecordingAudit(), clock=time.time
    )
    try:
        with redis_server.stopped(), pytest.raises(DependencyUnavailable):
            await manager.resolve("any-session")
    finally:
        await redis.aclose()


class _NoRefresh:
    async def refresh(self, refresh_token: str) -> TokenSet:
        raise AssertionError("not expected")


class _NoVerify:
    async def verify(self, token: str) -> Identity:
        raise AssertionError("not expected")
