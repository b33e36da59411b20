"""A gateway-shaped test app for the browser login, served for real so Keycloak can call it.

``keycloak_client`` registers a throwaway copy of realm ``mro``'s ``mro-gateway`` client (same
flows, PKCE and mappers) whose redirect, post-logout and back-channel logout URLs point at the test
server, and ``keycloak_user`` a throwaway technician; both are deleted afterwards, so suites running
at the same time against the shared Keycloak never see each other's sessions or URLs.

``GatewayUnderTest`` wires the real pieces (``BrowserAuth``, ``SessionAuthenticator``,
``BearerAuthenticator`` with the revocation set, ``CsrfGuard``) as the gateway's pipeline does,
with an offset clock for the sessions and a transport that counts calls to Keycloak.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
from fastapi import FastAPI, Request
from keycloak import KeycloakAdmin
from redis.asyncio import Redis
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import problems
from gateway.audit.events import AuditEvent
from gateway.auth.bearer import BearerAuthenticator
from gateway.auth.jwks import JWKSCache
from gateway.auth.revocation import RevocationStore
from gateway.auth.standing import OwnerStandings
from gateway.browser.csrf import CsrfGuard
from gateway.browser.login import BrowserAuth
from gateway.browser.sessions import SessionSettings
from gateway.dependencies import get_revoker
from gateway.edge.request_context import RequestContext, current_context
from gateway.errors import AuthenticationError, GatewayError
from gateway.identity import Authenticator
from gateway.idp.admin_client import KeycloakAdminClient
from gateway.idp.revoker import Revoker
from gateway.routes import auth as auth_routes
from gateway.routes import logout as logout_routes
from gateway.settings import GatewaySettings
from tests.gateway.harness import serve as serve_app
from tests.keycloak_flows import REALM, LoopbackCookies, form_action

TEMPLATE_CLIENT = "mro-gateway"
PASSWORD = "Bff-test-only-Passw0rd-" + secrets.token_hex(4)


class OffsetClock:
    """Real time plus an offset the test moves forward (tokens from Keycloak are real)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class RecordingAudit:
    """An AuditSink keeping every event (thread-safe: servers run in their own threads)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self._lock = threading.Lock()

    def emit(self, event: AuditEvent) -> None:
        with self._lock:
            self.events.append(event)

    def actions(self, action: str) -> list[AuditEvent]:
        with self._lock:
            return [event for event in self.events if event.action == action]


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts requests to Keycloak by path.

    ``down`` makes the token endpoint unreachable; ``token_delay`` makes it slow, so that
    concurrent refreshes overlap for sure.
    """

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._lock = threading.Lock()
        self.paths: list[str] = []
        self.down = False
        self.token_delay = 0.0

    def count(self, suffix: str) -> int:
        with self._lock:
            return sum(1 for path in self.paths if path.endswith(suffix))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.paths.append(request.url.path)
        if request.url.path.endswith("/token"):
            if self.down:
                raise httpx.ConnectError("token endpoint down (test)", request=request)
            await asyncio.sleep(self.token_delay)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class KeycloakClient:
    client_id: str
    secret: str
    uuid: str


@contextlib.contextmanager
def keycloak_client(admin: KeycloakAdmin, base_urls: list[str]) -> Iterator[KeycloakClient]:
    """A copy of the realm's gateway client pointing at base_urls[0] (all may redirect)."""
    template = admin.get_client(admin.get_client_id(TEMPLATE_CLIENT) or "")
    client_id = f"mro-gateway-test-{uuid.uuid4().hex[:8]}"
    secret = secrets.token_urlsafe(24)
    payload = {key: value for key, value in template.items() if key not in ("id", "secret")}
    attributes = dict(payload.get("attributes", {}))
    attributes["backchannel.logout.url"] = f"{base_urls[0]}/auth/backchannel-logout"
    attributes["post.logout.redirect.uris"] = "##".join(f"{url}/" for url in base_urls)
    payload |= {
        "clientId": client_id,
        "secret": secret,
        "redirectUris": [f"{url}/auth/callback" for url in base_urls],
        "baseUrl": f"{base_urls[0]}/",
        "attributes": attributes,
        "protocolMappers": [
            {k: v for k, v in mapper.items() if k != "id"}
            for mapper in payload.get("protocolMappers", [])
        ],
    }
    internal_id = admin.create_client(payload)
    try:
        copy = KeycloakClient(client_id, secret, internal_id)
        _grant_admin_roles(admin, copy)
        yield copy
    finally:
        admin.delete_client(internal_id)


def _grant_admin_roles(admin: KeycloakAdmin, client: KeycloakClient) -> None:
    """Give the copy's service account the realm-management roles mro-gateway's has (user
    administration, API-key owners' standing, admin events)."""
    template = admin.get_client_service_account_user(admin.get_client_id(TEMPLATE_CLIENT))
    copy = admin.get_client_service_account_user(client.uuid)
    management = admin.get_client_id("realm-management")
    roles = admin.get_client_roles_of_user(template["id"], management)
    if roles:
        admin.assign_client_role(copy["id"], management, roles)


@dataclass
class KeycloakUser:
    username: str
    password: str
    id: str


@contextlib.contextmanager
def keycloak_user(admin: KeycloakAdmin, role: str = "technician") -> Iterator[KeycloakUser]:
    """A throwaway user of realm mro with role, deleted afterwards."""
    username = f"bff-{uuid.uuid4().hex[:10]}"
    user_id = admin.create_user(
        {
            "username": username,
            "email": f"{username}@mro.test",
            "firstName": "Bea",
            "lastName": "Browser",
            "enabled": True,
            "emailVerified": True,
            "attributes": {"base_station": ["LHR"], "department": ["Line Maintenance"]},
            "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}],
        }
    )
    try:
        admin.assign_realm_roles(user_id, [admin.get_realm_role(role)])
        yield KeycloakUser(username, PASSWORD, user_id)
    finally:
        admin.delete_user(user_id)


class PipelineStandIn:
    """Plays the pipeline's part on ``/api``: authenticate (first match), then the CSRF step."""

    def __init__(self, app: ASGIApp, authenticators: list[Authenticator], csrf: CsrfGuard) -> None:
        self.app = app
        self.authenticators = authenticators
        self.csrf = csrf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("127.0.0.1", 0)
        context = RequestContext(request_id=uuid.uuid4().hex, client_ip=client[0])
        context.attach(scope)
        if scope["path"].startswith("/api/"):
            headers = Headers(scope=scope)
            try:
                for authenticator in self.authenticators:
                    context.identity = await authenticator.authenticate(headers)
                    if context.identity is not None:
                        break
                if context.identity is None:
                    raise AuthenticationError("no credential", code="unauthenticated")
                await self.csrf.check(scope["method"], headers, context.identity)
            except GatewayError as exc:
                await problems.send_problem(send, exc, context.request_id)
                return
        await self.app(scope, receive, send)


class LogoutTokenRecorder:
    """Keeps the raw bodies Keycloak posts to the back-channel logout route."""

    def __init__(self, app: ASGIApp, bodies: list[bytes]) -> None:
        self.app = app
        self.bodies = bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/auth/backchannel-logout":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def recording() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self.bodies.append(b"".join(chunks))
            return message

        await self.app(scope, recording, send)


@dataclass
class GatewayUnderTest:
    """One test gateway process: settings, clock, Keycloak call counter, audit, its URL."""

    settings: GatewaySettings
    session_settings: SessionSettings
    clock: OffsetClock = field(default_factory=OffsetClock)
    transport: CountingTransport = field(default_factory=CountingTransport)
    audit: RecordingAudit = field(default_factory=RecordingAudit)
    logout_bodies: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.settings.public_url

    def app(self) -> FastAPI:
        settings, session_settings = self.settings, self.session_settings
        redis = Redis.from_url(settings.redis_url)
        http = httpx.AsyncClient(transport=self.transport, timeout=10.0)
        jwks = JWKSCache(settings.discovery_url, http)
        revocation = RevocationStore(
            redis,
            ttl_seconds=session_settings.access_token_lifetime_seconds
            + settings.jwt_leeway_seconds,
            cache_seconds=session_settings.revocation_cache_seconds,
        )
        bearer = BearerAuthenticator(jwks, settings, revoked=revocation.is_revoked)
        auth = BrowserAuth.build(
            settings,
            session_settings,
            redis=redis,
            http=http,
            jwks=jwks,
            verifier=bearer,
            revocation=revocation,
            audit=self.audit,
            clock=self.clock,
        )
        admin = KeycloakAdminClient.from_settings(settings, http)
        standings = OwnerStandings(redis, admin)
        revoker = Revoker(revocation, auth.manager, standings, self.audit, admin.logout)

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            yield
            await http.aclose()
            await redis.aclose()

        app = FastAPI(lifespan=lifespan)
        problems.install(app)
        app.include_router(auth_routes.create_router(auth))
        app.include_router(logout_routes.create_router(auth))
        app.dependency_overrides[get_revoker] = lambda: revoker

        @app.get("/api/whoami")
        async def whoami(request: Request) -> dict[str, Any]:
            context = current_context(request.scope)
            assert context is not None
            assert context.identity is not None
            identity = context.identity
            return {
                "sub": identity.subject,
                "method": identity.method.value,
                "sid": identity.session_id,
                "roles": sorted(identity.roles),
            }

        @app.post("/api/notes")
        async def notes() -> dict[str, bool]:
            return {"stored": True}

        csrf = CsrfGuard(auth.manager, session_settings.cookie_name, settings.public_url)
        app.add_middleware(PipelineStandIn, authenticators=[auth.authenticator, bearer], csrf=csrf)
        app.add_middleware(LogoutTokenRecorder, bodies=self.logout_bodies)
        return app


def gateway_settings(
    port: int, keycloak_url: str, client: KeycloakClient, redis_url: str, **session: Any
) -> tuple[GatewaySettings, SessionSettings]:
    """Settings of a test gateway on 127.0.0.1:port as client of Keycloak."""
    settings = GatewaySettings(
        public_url=f"http://127.0.0.1:{port}",
        keycloak_url=keycloak_url,
        keycloak_realm=REALM,
        client_id=client.client_id,
        client_secret=client.secret,
        redis_url=redis_url,
    )
    return settings, SessionSettings(**session)


@contextlib.contextmanager
def serve(app: FastAPI, port: int) -> Iterator[None]:
    """Run app with uvicorn in a thread on 127.0.0.1:port (lifespan on) until the block ends."""
    with serve_app(app, lifespan="on", port=port):
        yield


class Browser(httpx.Client):
    """A cookie-keeping client that follows no redirect and records every raw Set-Cookie."""

    def __init__(self) -> None:
        self.recorder = LoopbackCookies(httpx.HTTPTransport())
        super().__init__(transport=self.recorder, follow_redirects=False, timeout=30.0)

    def set_cookie_field(self, name: str) -> str:
        """The last raw Set-Cookie field for cookie name."""
        for value in reversed(self.recorder.set_cookies):
            if value.split("=", 1)[0].strip() == name:
                return value
        raise AssertionError(f"no Set-Cookie for {name}")


def query(url: str) -> dict[str, str]:
    """The query parameters of url (single values)."""
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def to_keycloak(browser: Browser, gateway_url: str, path: str = "/auth/login") -> httpx.Response:
    """GET a gateway login route and follow its redirect to Keycloak's login page."""
    start = browser.get(gateway_url + path)
    assert start.status_code == 302, start.text
    page = browser.get(start.headers["location"])
    assert page.status_code == 200, page.text
    return page


def submit_login(browser: Browser, page: httpx.Response, user: KeycloakUser) -> httpx.Response:
    """Post the credentials on Keycloak's login page; the redirect to the callback."""
    action = form_action(page.text, "kc-form-login")
    answer = browser.post(action, data={"username": user.username, "password": user.password})
    assert answer.status_code == 302, answer.text
    return answer


def login(
    browser: Browser, gateway_url: str, user: KeycloakUser, return_to: str | None = None
) -> httpx.Response:
    """The whole browser login (form, or Keycloak's single sign-on); the callback's answer."""
    path = "/auth/login"
    if return_to is not None:
        path += "?" + urlencode({"return_to": return_to})
    start = browser.get(gateway_url + path)
    assert start.status_code == 302, start.text
    page = browser.get(start.headers["location"])
    callback = page if page.status_code == 302 else submit_login(browser, page, user)
    return browser.get(urljoin(gateway_url, callback.headers["location"]))


def cookie_attributes(set_cookie: str) -> Mapping[str, str]:
    """The attributes of a raw Set-Cookie field, lower-cased names (``secure`` maps to '')."""
    attributes: dict[str, str] = {}
    for part in set_cookie.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        attributes[name.lower()] = value
    return attributes
