"""The browser login's shared parts: OIDC client, sessions, login states, audit and cookies.

``BrowserAuth`` is wired once per app (no I/O) and handed to the ``/auth`` routes
(``gateway.routes.auth``, ``gateway.routes.logout``) and the session authenticator. Its helpers
set the gateway's host-only cookies and audit browser-auth events with the request's context.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from redis.asyncio import Redis

from gateway.audit.events import AuditEvent, AuditSink, Outcome
from gateway.auth.jwks import JWKSCache
from gateway.auth.revocation import RevocationStore
from gateway.browser.login_state import LoginStates
from gateway.browser.oidc import OidcClient
from gateway.browser.session_store import SessionRecord, SessionStore
from gateway.browser.sessions import (
    AccessTokenVerifier,
    SessionAuthenticator,
    SessionManager,
    SessionSettings,
    read_cookie,
)
from gateway.edge.request_context import current_context
from gateway.errors import AuthenticationError
from gateway.settings import GatewaySettings

__all__ = ["NO_STORE", "BrowserAuth", "redirect", "sid_details"]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass
class BrowserAuth:
    """Everything the ``/auth`` routes and the session authenticator share."""

    settings: GatewaySettings
    session_settings: SessionSettings
    oidc: OidcClient
    manager: SessionManager
    logins: LoginStates
    revocation: RevocationStore
    audit: AuditSink
    authenticator: SessionAuthenticator

    @classmethod
    def build(
        cls,
        settings: GatewaySettings,
        session_settings: SessionSettings,
        *,
        redis: Redis,
        http: httpx.AsyncClient,
        jwks: JWKSCache,
        verifier: AccessTokenVerifier,
        revocation: RevocationStore,
        audit: AuditSink,
        clock: Callable[[], float] = time.time,
    ) -> BrowserAuth:
        """The parts wired on one Redis client and one HTTP client for Keycloak (no I/O)."""
        prefix = session_settings.redis_prefix
        oidc = OidcClient(
            settings,
            http,
            jwks,
            clock=clock,
            logout_token_max_age=session_settings.logout_token_max_age_seconds,
        )
        manager = SessionManager(
            SessionStore(redis, prefix), oidc, verifier, session_settings, audit, clock=clock
        )
        logins = LoginStates(redis, ttl_seconds=session_settings.login_state_seconds, prefix=prefix)
        return cls(
            settings,
            session_settings,
            oidc,
            manager,
            logins,
            revocation,
            audit,
            SessionAuthenticator(manager),
        )

    @property
    def redirect_uri(self) -> str:
        """Where Keycloak sends the browser back after login."""
        return f"{self.settings.public_url.rstrip('/')}/auth/callback"

    def emit(self, request: Request, action: str, outcome: Outcome, **fields: Any) -> None:
        """Audit a browser-auth event with the request's id and client address."""
        context = current_context(request.scope)
        client = request.client.host if request.client else None
        self.audit.emit(
            AuditEvent(
                action=action,
                outcome=outcome,
                request_id=context.request_id if context else None,
                client_ip=context.client_ip if context else client,
                **fields,
            )
        )

    def cookie(self, request: Request, name: str) -> str | None:
        """The request's cookie name, or None when absent or malformed."""
        try:
            return read_cookie(request.headers, name)
        except AuthenticationError:
            return None

    def set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        """Set (or, with max_age 0, delete) one of the gateway's host-only cookies."""
        secure = self.session_settings.session_cookie_secure
        response.set_cookie(
            name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="lax"
        )


def redirect(url: str, status: int = 302) -> RedirectResponse:
    """A redirect that no cache keeps."""
    return RedirectResponse(url, status_code=status, headers=NO_STORE)


def sid_details(record: SessionRecord) -> dict[str, Any]:
    """Audit details naming the session's Keycloak ``sid``, when it has one."""
    return {"sid": record.sid} if record.sid else {}
