"""Browser login routes (``/auth/…``): the gateway as backend for frontend.

* ``GET /auth/login?return_to=/path`` and ``GET /auth/register``: 302 to Keycloak's login (or
  registration) page with state, nonce and a PKCE S256 challenge; the verifier and nonce stay in
  Redis, and a login cookie binds the state to this browser (login CSRF).
* ``GET /auth/callback``: takes the state once, exchanges the code with the verifier, verifies the
  ID token, starts a session under a new id, sets the cookie and returns to ``return_to`` when it
  is a same-origin path (else ``/``).
* ``GET|POST /auth/logout`` and ``POST /auth/backchannel-logout``: ``gateway.routes.logout``,
  the same route family under the same prefix.
* ``GET /auth/session``: whether the browser is logged in, who, and its CSRF token.

Every answer carries ``Cache-Control: no-store``. Errors are problem+json (``gateway.problems``).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any, Final, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.browser.login import NO_STORE, BrowserAuth, redirect, sid_details
from gateway.browser.login_state import PendingLogin, digest, safe_return_path
from gateway.browser.oidc import AuthorizationRequest, GrantRejected, TokenInvalid
from gateway.browser.session_store import SessionRecord
from gateway.browser.sessions import SessionExpired, SessionSettings
from gateway.errors import AuthenticationError, BadRequest

__all__ = ["LoginFailed", "create_router"]

# Keycloak application-initiated actions a browser may ask for through /auth/login.
KC_ACTIONS: Final = {"update_password": "UPDATE_PASSWORD"}


class LoginFailed(BadRequest):
    """The login callback could not complete; the browser starts again."""

    code = "login_failed"
    title = "Login failed"


def create_router(auth: BrowserAuth) -> APIRouter:
    """The ``/auth`` routes over auth's parts."""
    router = APIRouter(prefix="/auth", tags=["auth"])
    cookies = auth.session_settings

    async def begin(
        request: Request, return_to: str | None, registration: bool, action: str | None = None
    ) -> Response:
        binding = auth.cookie(request, cookies.login_cookie_name) or secrets.token_urlsafe(32)
        login = AuthorizationRequest.new()
        pending = PendingLogin(
            login.nonce, login.code_verifier, safe_return_path(return_to), digest(binding)
        )
        await auth.logins.put(login.state, pending)
        url = await auth.oidc.authorization_url(
            login, auth.redirect_uri, registration=registration, action=action
        )
        response = redirect(url)
        auth.set_cookie(response, cookies.login_cookie_name, binding, cookies.login_state_seconds)
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
        auth.emit(request, "auth.login_failed", "failure", reason=reason)
        return LoginFailed("The login could not be completed; start again.", code=code)

    @router.get("/callback")
    async def callback(request: Request) -> Response:
        """Finish the login Keycloak redirected back from."""
        params = request.query_params
        state = params.get("state")
        pending = await auth.logins.take(state) if state else None
        if pending is None:
            raise failed(request, "state_unknown", "login_state_invalid")
        binding = auth.cookie(request, cookies.login_cookie_name)
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
        previous = auth.cookie(request, cookies.cookie_name)
        try:
            session_id, record = await auth.manager.start(tokens, previous)
        except AuthenticationError as exc:
            raise failed(request, "access_token_" + exc.code) from None
        if record.subject != claims.get("sub"):
            await auth.manager.end(session_id)
            raise failed(request, "subject_mismatch")
        auth.emit(
            request, "auth.login", "success", actor=record.subject, details=sid_details(record)
        )
        response = redirect(pending.return_to)
        auth.set_cookie(response, cookies.cookie_name, session_id, cookies.session_max_seconds)
        auth.set_cookie(response, cookies.login_cookie_name, "", 0)
        return response

    @router.get("/session")
    async def session(request: Request) -> Response:
        """The browser's login state and the CSRF token for its unsafe requests."""
        session_id = auth.cookie(request, cookies.cookie_name)
        record: SessionRecord | None = None
        if session_id:
            try:
                record = await auth.manager.resolve(session_id)
            except SessionExpired:
                record = None
        response = JSONResponse(_session_body(record, auth.session_settings), headers=NO_STORE)
        if session_id and record is None:
            auth.set_cookie(response, cookies.cookie_name, "", 0)
        return response

    return router


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
