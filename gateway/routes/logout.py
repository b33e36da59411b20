"""Logout routes: browser sessions ended here and at Keycloak, or by Keycloak.

* ``GET|POST /auth/logout``: ends the session, revokes its ``sid`` and sends the browser to
  Keycloak's end-session endpoint with ``id_token_hint``; a POST from another origin, or a GET the
  browser marks cross-site, is a 403 ``csrf_failed``, audited as ``auth.csrf_failed``.
* ``POST /auth/backchannel-logout``: Keycloak's logout token; ends that ``sid``'s sessions and
  revokes the ``sid`` for bearer tokens. A token that names only a subject (no ``sid``) ends all of
  that person's sessions and tokens (``gateway.idp.revoker``). A token is used once (its ``jti``).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.browser.csrf import CSRF_FAILED, CsrfFailed, check_origin, refusal_details
from gateway.browser.login import NO_STORE, BrowserAuth, redirect, sid_details
from gateway.browser.oidc import TokenInvalid
from gateway.dependencies import RevokerDep
from gateway.edge.request_context import current_context
from gateway.errors import BadRequest, GatewayError
from gateway.idp.revoker import Revoker
from gateway.problems import problem_response

__all__ = ["InvalidLogoutToken", "create_router", "logout_token"]


class InvalidLogoutToken(BadRequest):
    """A back-channel logout token that is malformed, invalid or used before."""

    code = "invalid_logout_token"
    title = "Invalid logout token"


def create_router(auth: BrowserAuth) -> APIRouter:
    """The ``/auth`` logout routes over auth's parts."""
    router = APIRouter(prefix="/auth", tags=["auth"])
    cookies = auth.session_settings

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
            auth.emit(
                request,
                CSRF_FAILED,
                "denied",
                actor=await session_subject(request),
                target=request.url.path,
                reason=exc.reason,
                details=refusal_details(request.method, request.headers),
            )
            raise
        session_id = auth.cookie(request, cookies.cookie_name)
        record = await auth.manager.end(session_id) if session_id else None
        home = auth.settings.public_url.rstrip("/") + cookies.post_logout_redirect_path
        url = home
        if record is not None:
            if record.sid:
                await auth.revocation.revoke(record.sid)
            auth.emit(
                request, "auth.logout", "success", actor=record.subject, details=sid_details(record)
            )
            url = await auth.oidc.end_session_url(record.id_token, home)
        response = redirect(url, 303 if request.method == "POST" else 302)
        auth.set_cookie(response, cookies.cookie_name, "", 0)
        return response

    async def session_subject(request: Request) -> str | None:
        """Whose session the request's cookie names, for the audit (None when unknown)."""
        session_id = auth.cookie(request, cookies.cookie_name)
        if not session_id:
            return None
        try:
            record = await auth.manager.current(session_id)
        except GatewayError:
            return None  # the refusal stands even when Redis cannot say whose session it was
        return record.subject if record else None

    @router.post("/backchannel-logout")
    async def backchannel_logout(request: Request, revoker: RevokerDep) -> Response:
        """OpenID Connect back-channel logout: Keycloak ended a session."""
        try:
            await end_keycloak_session(request, revoker)
        except InvalidLogoutToken as exc:
            context = current_context(request.scope)
            response = problem_response(exc, context.request_id if context else None)
            response.headers.update(NO_STORE)
            return response
        return Response(status_code=200, headers=NO_STORE)

    async def end_keycloak_session(request: Request, revoker: Revoker) -> None:
        try:
            token = logout_token(request.headers.get("content-type", ""), await request.body())
            claims = await auth.oidc.verify_logout_token(token)
        except TokenInvalid as exc:
            auth.emit(request, "auth.backchannel_logout", "failure", reason=exc.reason)
            raise InvalidLogoutToken("The logout token is not valid.") from None
        max_age = cookies.logout_token_max_age_seconds + auth.settings.jwt_leeway_seconds
        if not await auth.logins.first_use(claims.jti, max_age):
            auth.emit(request, "auth.backchannel_logout", "failure", reason="jti_replayed")
            raise InvalidLogoutToken("The logout token was already used.")
        ended = await auth.manager.end_all(sid=claims.sid, sub=claims.sub)
        if claims.sid:
            await auth.revocation.revoke(claims.sid)
        elif claims.sub:
            context = current_context(request.scope)
            await revoker.revoke(
                claims.sub,
                "auth.backchannel_logout",
                request_id=context.request_id if context else None,
            )
        auth.emit(
            request,
            "auth.backchannel_logout",
            "success",
            actor=claims.sub,
            details={"sid": claims.sid, "sessions_ended": ended},
        )

    return router


def logout_token(content_type: str, body: bytes) -> str:
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
