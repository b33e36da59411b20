"""Browser login routes (``/auth/…``): the gateway as backend for frontend.

* ``GET /auth/login?return_to=/path`` and ``GET /auth/register``: 302 to Keycloak's login (or
  registration) page with state, nonce and a PKCE S256 challenge; the verifier and nonce stay in
  Redis, and a login cookie binds the state to this browser (login CSRF).
* ``GET /auth/callback``: takes the state once, exchanges the code with the verifier, verifies the
  ID token, starts a session under a new id, sets the cookie and returns to ``return_to`` when it
  is a same-origin path (else ``/``).
* ``GET|POST /auth/logout``: ends the session, revokes its ``sid`` and sends the browser to
  Keycloak's end-session endpoint with ``id_token_hint``; a POST from another origin, or a GET the
  browser marks cross-site, is a 403 ``csrf_failed``, audited as ``auth.csrf_failed``.
* ``POST /auth/backchannel-logout``: Keycloak's logout token; ends that ``sid``'s sessions and
  revokes the ``sid`` for bearer tokens.
* ``GET /auth/session``: whether the browser is logged in, who, and its CSRF token.

Every answer carries ``Cache-Control: no-store``. Errors are problem+json (``gateway.problems``).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import parse_qs

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from redis.asyncio import Redis

from gateway.audit import AuditEvent, AuditSink, Outcome
from gateway.context import current_context
from gateway.csrf import CSRF_FAILED, CsrfFailed, check_origin, refusal_details
from gateway.errors import AuthenticationError, BadRequest, GatewayError
from gateway.jwks import JWKSCache
from gateway.login_state import LoginStates, PendingLogin, digest, safe_return_path
from gateway.oidc import AuthorizationRequest, GrantRejected, OidcClient, TokenInvalid
from gateway.problems import problem_response
from gateway.revocation import RevocationStore
from gateway.session_store import SessionRecord, SessionStore
from gateway.sessions import (
    AccessTokenVerifier,
    SessionAuthenticator,
    SessionExpired,
    SessionManager,
    SessionSettings,
    read_cookie,
)
from gateway.settings import GatewaySettings

__all__ = ["BrowserAuth", "InvalidLogoutToken", "LoginFailed", "create_router"]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Keycloak application-initiated actions a browser may ask for through /auth/login.
KC_ACTIONS: Final = {"update_password": "UPDATE_PASSWORD"}


class LoginFailed(BadRequest):
    code = "login_failed"
    title = "Login failed"


class InvalidLogoutToken(BadRequest):
    code = "invalid_logout_token"
    title = "Invalid logout token"


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
        return f"{self.settings.public_url.rstrip('/')}/auth/callback"


def create_router(auth: BrowserAuth) -> APIRouter:
    """The ``/auth`` routes over auth's parts."""
    router = APIRouter(prefix="/auth", tags=["auth"])
    cookies = auth.session_settings
    secure = cookies.session_cookie_secure

    def emit(request: Request, action: str, outcome: Outcome, **fields: Any) -> None:
        context = current_context(request.scope)
        client = request.client.host if request.client else None
        auth.audit.emit(
            AuditEvent(
                action=action,
                outcome=outcome,
                request_id=context.request_id if context else None,
                client_ip=context.client_ip if context else client,
                **fields,
            )
        )

    def cookie(request: Request, name: str) -> str | None:
        try:
            return read_cookie(request.headers, name)
        except AuthenticationError:
            return None

    def set_cookie(response: Response, name: str, value: str, max_age: int) -> None:
        """Set (or, with max_age 0, delete) one of the gateway's host-only cookies."""
        response.set_cookie(
            name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="lax"
        )

    def redirect(url: str, status: int = 302) -> RedirectResponse:
        return RedirectResponse(url, status_code=status, headers=NO_STORE)

    async def begin(
        request: Request, return_to: str | None, registration: bool, action: str | None = None
    ) -> Response:
        binding = cookie(request, cookies.login_cookie_name) or secrets.token_urlsafe(32)
        login = AuthorizationRequest.new()
        pending = PendingLogin(
            login.nonce, login.code_verifier, safe_return_path(return_to), digest(binding)
        )
        await auth.logins.put(login.state, pending)
        url = await auth.oidc.authorization_url(
            login, auth.redirect_uri, registration=registration, action=action
        )
        response = redirect(url)
        set_cookie(response, cookies.login_cookie_name, binding, cookies.login_state_seconds)
        return response

    @router.get("/login")
    async def login(
        request: Request,
        return_to: str | None = None,
        action: Literal["update_password"] | None = None,
    ) -> Response:
        """Send the browser to Keycloak's login page (``action=update_password``: its form).

        With an action the flow is the ordinary login flow (state, nonce, PKCE), so Keycloak's
        return to the callback completes like any login.
        """
        kc_action = KC_ACTIONS[action] if action else None
        return await begin(request, return_to, registration=False, action=kc_action)

    @router.get("/register")
    async def register(request: Request, return_to: str | None = None) -> Response:
        """Send the browser to Keycloak's registration page."""
        return await begin(request, return_to, registration=True)

    def failed(request: Request, reason: str, code: str = "login_failed") -> LoginFailed:
        emit(request, "auth.login_failed", "failure", reason=reason)
        return LoginFailed("The login could not be completed; start again.", code=code)

    @router.get("/callback")
    async def callback(request: Request) -> Response:
        """Finish the login Keycloak redirected back from."""
        params = request.query_params
        state = params.get("state")
        pending = await auth.logins.take(state) if state else None
        if pending is None:
            raise failed(request, "state_unknown", "login_state_invalid")
        binding = cookie(request, cookies.login_cookie_name)
        if binding is None or not hmac.compare_digest(digest(binding), pending.binding):
            raise failed(request, "state_not_bound_to_browser", "login_state_invalid")
        code = params.get("code")
        if "error" in params or not code:
            raise failed(request, "provider_error:" + params.get("error", "no_code")[:64])
        try:
            tokens = await auth.oidc.exchange_code(code, pending.code_verifier, auth.redirect_uri)
        except GrantRejected as exc:
            raise failed(request, "code_rejected:" + exc.error[:64]) from None
        if tokens.id_token is None:
            raise failed(request, "no_id_token")
        try:
            claims = await auth.oidc.verify_id_token(tokens.id_token, pending.nonce)
        except TokenInvalid as exc:
            raise failed(request, "id_token_" + exc.reason) from None
        previous = cookie(request, cookies.cookie_name)
        try:
            session_id, record = await auth.manager.start(tokens, previous)
        except AuthenticationError as exc:
            raise failed(request, "access_token_" + exc.code) from None
        if record.subject != claims.get("sub"):
            await auth.manager.end(session_id)
            raise failed(request, "subject_mismatch")
        emit(request, "auth.login", "success", actor=record.subject, details=_sid(record))
        response = redirect(pending.return_to)
        set_cookie(response, cookies.cookie_name, session_id, cookies.session_max_seconds)
        set_cookie(response, cookies.login_cookie_name, "", 0)
        return response

    @router.get("/logout", operation_id="logout_get")
    async def logout_get(request: Request) -> Response:
        """End the session here and at Keycloak (link from a page of this site)."""
        return await logout(request)

    @router.post("/logout", operation_id="logout_post")
    async def logout_post(request: Request) -> Response:
        """End the session here and at Keycloak (form or fetch from this site)."""
        return await logout(request)

    async def logout(request: Request) -> Response:
        try:
            if request.method == "POST":
                check_origin(request.headers, auth.settings.public_url)
            elif request.headers.get("sec-fetch-site") == "cross-site":
                raise CsrfFailed("Log out from this site only.", "cross_site")
        except CsrfFailed as exc:
            emit(
                request,
                CSRF_FAILED,
                "denied",
                actor=await session_subject(request),
                target=request.url.path,
                reason=exc.reason,
                details=refusal_details(request.method, request.headers),
            )
            raise
        session_id = cookie(request, cookies.cookie_name)
        record = await auth.manager.end(session_id) if session_id else None
        home = auth.settings.public_url.rstrip("/") + cookies.post_logout_redirect_path
        url = home
        if record is not None:
            if record.sid:
                await auth.revocation.revoke(record.sid)
            emit(request, "auth.logout", "success", actor=record.subject, details=_sid(record))
            url = await auth.oidc.end_session_url(record.id_token, home)
        response = redirect(url, 303 if request.method == "POST" else 302)
        set_cookie(response, cookies.cookie_name, "", 0)
        return response

    async def session_subject(request: Request) -> str | None:
        """Whose session the request's cookie names, for the audit (None when unknown)."""
        session_id = cookie(request, cookies.cookie_name)
        if not session_id:
            return None
        try:
            record = await auth.manager.current(session_id)
        except GatewayError:
            return None  # the refusal stands even when Redis cannot say whose session it was
        return record.subject if record else None

    @router.post("/backchannel-logout")
    async def backchannel_logout(request: Request) -> Response:
        """OpenID Connect back-channel logout: Keycloak ended a session."""
        try:
            await end_keycloak_session(request)
        except InvalidLogoutToken as exc:
            context = current_context(request.scope)
            response = problem_response(exc, context.request_id if context else None)
            response.headers.update(NO_STORE)
            return response
        return Response(status_code=200, headers=NO_STORE)

    async def end_keycloak_session(request: Request) -> None:
        try:
            token = _logout_token(request.headers.get("content-type", ""), await request.body())
            claims = await auth.oidc.verify_logout_token(token)
        except TokenInvalid as exc:
            emit(request, "auth.backchannel_logout", "failure", reason=exc.reason)
            raise InvalidLogoutToken("The logout token is not valid.") from None
        max_age = cookies.logout_token_max_age_seconds + auth.settings.jwt_leeway_seconds
        if not await auth.logins.first_use(claims.jti, max_age):
            emit(request, "auth.backchannel_logout", "failure", reason="jti_replayed")
            raise InvalidLogoutToken("The logout token was already used.")
        ended = await auth.manager.end_all(sid=claims.sid, sub=claims.sub)
        if claims.sid:
            await auth.revocation.revoke(claims.sid)
        emit(
            request,
            "auth.backchannel_logout",
            "success",
            actor=claims.sub,
            details={"sid": claims.sid, "sessions_ended": ended},
        )

    @router.get("/session")
    async def session(request: Request) -> Response:
        """The browser's login state and the CSRF token for its unsafe requests."""
        session_id = cookie(request, cookies.cookie_name)
        record: SessionRecord | None = None
        if session_id:
            try:
                record = await auth.manager.resolve(session_id)
            except SessionExpired:
                record = None
        response = JSONResponse(_session_body(record, auth.session_settings), headers=NO_STORE)
        if session_id and record is None:
            set_cookie(response, cookies.cookie_name, "", 0)
        return response

    return router


def _sid(record: SessionRecord) -> dict[str, Any]:
    return {"sid": record.sid} if record.sid else {}


def _logout_token(content_type: str, body: bytes) -> str:
    """The single ``logout_token`` of a form body. Raises TokenInvalid."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise TokenInvalid("content_type")
    try:
        form = parse_qs(body.decode("ascii"), strict_parsing=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        raise TokenInvalid("form") from None
    values = form.get("logout_token", [])
    if len(values) != 1:
        raise TokenInvalid("form")
    return values[0]


def _session_body(record: SessionRecord | None, settings: SessionSettings) -> dict[str, Any]:
    if record is None:
        return {"authenticated": False, "user": None, "csrf_token": None, "expires_at": None}
    return {
        "authenticated": True,
        "user": {
            "sub": record.subject,
            "username": record.username,
            "name": record.name,
            "email": record.email,
            "roles": list(record.roles),
        },
        "csrf_token": record.csrf_token,
        "expires_at": int(
            record.expires_at(settings.session_idle_seconds, settings.session_max_seconds)
        ),
    }
