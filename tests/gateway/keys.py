"""Test keys, a movable clock, a small OpenID provider over real HTTP, and an admin test app.

``LocalIdP`` plays Keycloak's part for unit tests: OIDC discovery, the JWKS and a
client-credentials token endpoint, on a loopback port, recording every request path so tests can
count key fetches or prove that a URL named in a token was never requested.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from devstack.procs import free_port
from gateway import dependencies, problems
from gateway.audit.events import AuditSink
from gateway.browser.id_tokens import BACKCHANNEL_LOGOUT_EVENT
from gateway.edge.request_context import RequestContext
from gateway.errors import AuthenticationError
from gateway.identity import Authenticator
from gateway.policy.policy_file import Policy
from gateway.routes.api_keys import create_router
from gateway.settings import GatewaySettings
from tests.gateway.harness import serve as serve_app

REALM = "mro"
AUDIENCE = "mro-gateway"


class FakeClock:
    """A clock tests move by hand; callable like ``time.time``."""

    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def rsa_key(kid: str | None = None) -> RSAKey:
    """A fresh 2048-bit RSA signing key with a kid."""
    return RSAKey.generate_key(2048, parameters={"kid": kid or uuid.uuid4().hex, "use": "sig"})


def ec_key(kid: str | None = None) -> ECKey:
    """A fresh P-256 signing key with a kid."""
    return ECKey.generate_key("P-256", parameters={"kid": kid or uuid.uuid4().hex, "use": "sig"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: Mapping[str, Any], claims: Mapping[str, Any], signature: bytes = b"") -> str:
    """A compact JWS built by hand (for tokens no honest library would sign)."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    return f"{head}.{body}.{b64(signature)}"


def rs256_token(header: Mapping[str, Any], claims: Mapping[str, Any], key: RSAKey) -> str:
    """A token RS256-signed by hand, whatever its header says (e.g. crit members)."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    private = key.private_key
    assert private is not None
    signature = private.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64(signature)}"


def hs256_token(header: Mapping[str, Any], claims: Mapping[str, Any], secret: bytes) -> str:
    """A token MACed with HS256 using secret (e.g. an RSA public key's bytes)."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


@dataclass
class TokenFactory:
    """Signs Keycloak-shaped access tokens."""

    key: RSAKey | ECKey
    issuer: str
    clock: FakeClock
    audience: str = AUDIENCE
    alg: str = "RS256"

    def claims(self, subject: str = "user-1", **overrides: Any) -> dict[str, Any]:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": [self.audience, "account"],
            "sub": subject,
            "typ": "Bearer",
            "azp": "mro-gateway",
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "sid": "session-1",
            "preferred_username": "tech1",
            "name": "Tess Technician",
            "email": "tech1@example.org",
            "realm_access": {"roles": ["technician", "default-roles-mro"]},
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(self, claims: Mapping[str, Any], **header: Any) -> str:
        full_header = {"alg": self.alg, "kid": self.key.kid, **header}
        return jwt.encode(full_header, dict(claims), self.key, algorithms=[self.alg])

    def token(self, subject: str = "user-1", **overrides: Any) -> str:
        return self.sign(self.claims(subject, **overrides))

    def service_token(self, client: str = "mro-planning", **overrides: Any) -> str:
        claims = {
            "preferred_username": f"service-account-{client}",
            "client_id": client,
            "azp": client,
            "sid": None,
            "name": None,
            "email": None,
            "realm_access": {"roles": ["service"]},
            **overrides,
        }
        return self.token(f"sa-{client}", **claims)


@dataclass
class LocalIdP:
    """An OpenID provider on loopback: discovery, JWKS, client-credentials token endpoint."""

    keys: list[RSAKey | ECKey]
    clock: FakeClock
    clients: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    # Raw JWK entries published next to the keys (e.g. symmetric or encryption keys).
    extra_entries: list[Any] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/realms/{REALM}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def count(self, suffix: str) -> int:
        """How many requests asked for a path ending in suffix."""
        return sum(1 for path in self.requests if path.endswith(suffix))

    def factory(self, key: RSAKey | ECKey | None = None) -> TokenFactory:
        signing_key = key or self.keys[0]
        alg = "ES256" if isinstance(signing_key, ECKey) else "RS256"
        return TokenFactory(signing_key, self.issuer, self.clock, alg=alg)

    def app(self) -> Starlette:
        async def record(request: Request) -> Response:
            self.requests.append(request.url.path)
            return JSONResponse({"error": "not_found"}, status_code=404)

        async def discovery(request: Request) -> Response:
            self.requests.append(request.url.path)
            return JSONResponse(
                {
                    "issuer": self.issuer,
                    "jwks_uri": f"{self.issuer}/protocol/openid-connect/certs",
                    "token_endpoint": f"{self.issuer}/protocol/openid-connect/token",
                }
            )

        async def certs(request: Request) -> Response:
            self.requests.append(request.url.path)
            published = [k.as_dict(private=False) for k in self.keys]
            return JSONResponse({"keys": [*published, *self.extra_entries]})

        async def token(request: Request) -> Response:
            self.requests.append(request.url.path)
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
            scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "basic":
                decoded = base64.b64decode(credentials).decode()
                client_id, _, secret = (unquote(part) for part in decoded.partition(":"))
            client = self.clients.get(client_id)
            if form.get("grant_type") != "client_credentials" or client is None:
                return JSONResponse({"error": "unauthorized_client"}, status_code=401)
            if not hmac.compare_digest(client[0], secret):
                return JSONResponse({"error": "unauthorized_client"}, status_code=401)
            access = self.factory().service_token(
                client_id, realm_access={"roles": client[1]}, exp=int(self.clock()) + 300
            )
            return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": 300})

        return Starlette(
            routes=[
                Route(f"/realms/{REALM}/.well-known/openid-configuration", discovery),
                Route(f"/realms/{REALM}/protocol/openid-connect/certs", certs),
                Route(f"/realms/{REALM}/protocol/openid-connect/token", token, methods=["POST"]),
                Route("/{path:path}", record, methods=["GET", "POST"]),
            ]
        )


@contextmanager
def serve(app: Any, port: int | None = None, *, lifespan: bool = False) -> Iterator[int]:
    """Run an ASGI app with uvicorn in a thread on loopback; yields its port."""
    bound = port or free_port()
    with serve_app(app, lifespan="on" if lifespan else "off", port=bound):
        yield bound


@contextmanager
def running_idp(idp: LocalIdP) -> Iterator[LocalIdP]:
    """Serve idp until the block ends."""
    idp.port = idp.port or free_port()
    with serve(idp.app(), idp.port):
        yield idp


class IdentityMiddleware:
    """Plays the pipeline's part for the admin routes: authenticate, grant, attach the context."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, policy: Policy) -> None:
        self.app = app
        self.authenticator = authenticator
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context = RequestContext(request_id=uuid.uuid4().hex, client_ip="127.0.0.1")
        try:
            identity = await self.authenticator.authenticate(Headers(scope=scope))
        except AuthenticationError as exc:
            await problems.send_problem(send, exc, context.request_id)
            return
        if identity is not None:
            granted = self.policy.permissions_for(identity.roles)
            if identity.scopes is not None:
                granted &= identity.scopes
            context.identity = identity.with_permissions(granted)
        context.attach(scope)
        await self.app(scope, receive, send)


def admin_app(
    authenticator: Authenticator,
    sessions: async_sessionmaker[AsyncSession],
    settings: GatewaySettings,
    audit: AuditSink,
    clock: FakeClock,
    on_key_changed: Callable[[str], None] | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """A FastAPI app serving the API-key admin routes with the real dependencies' names."""
    app = FastAPI(lifespan=lifespan)
    problems.install(app)
    app.include_router(create_router(clock=clock, on_key_changed=on_key_changed))
    app.dependency_overrides[dependencies.get_sessions] = lambda: sessions
    app.dependency_overrides[dependencies.get_settings] = lambda: settings
    app.dependency_overrides[dependencies.get_audit] = lambda: audit
    app.add_middleware(IdentityMiddleware, authenticator=authenticator, policy=Policy.load())
    return app


def logout_claims(factory: TokenFactory, audience: str, **overrides: Any) -> dict[str, Any]:
    """Claims of a valid back-channel logout token from factory's issuer to audience; an
    override of None leaves that claim out."""
    now = int(factory.clock())
    claims: dict[str, Any] = {
        "iss": factory.issuer,
        "aud": audience,
        "iat": now,
        "exp": now + 120,
        "jti": uuid.uuid4().hex,
        "sub": "user-1",
        "sid": "sid-1",
        "typ": "Logout",
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}
