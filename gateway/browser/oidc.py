"""OpenID Connect relying party for the browser login (authorization code flow with PKCE).

``OidcClient`` speaks to Keycloak's endpoints found by discovery: it builds authorization,
registration and end-session URLs and redeems codes and refresh tokens at the token endpoint
(client authentication ``client_secret_basic``). ID tokens and back-channel logout tokens are
verified with joserfc against the shared ``JWKSCache`` by ``gateway.browser.id_tokens``.

Errors: ``GrantRejected`` when the token endpoint refuses a code or refresh token (the provider's
``error`` is kept), ``TokenInvalid`` for an ID or logout token that does not verify,
``DependencyUnavailable`` when the provider cannot be reached or answers garbage.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from gateway.auth.jwks import JWKSCache
from gateway.browser.id_tokens import (
    BACKCHANNEL_LOGOUT_EVENT,
    LogoutClaims,
    OidcTokenVerifier,
    TokenInvalid,
)
from gateway.errors import BadRequest, DependencyUnavailable
from gateway.settings import GatewaySettings

__all__ = [
    "BACKCHANNEL_LOGOUT_EVENT",
    "AuthorizationRequest",
    "GrantRejected",
    "LogoutClaims",
    "OidcClient",
    "ProviderMetadata",
    "TokenInvalid",
    "TokenSet",
]


class GrantRejected(BadRequest):
    """The token endpoint refused a grant (e.g. ``invalid_grant``); ``error`` is its code."""

    code = "grant_rejected"
    title = "Grant rejected"

    def __init__(self, error: str) -> None:
        super().__init__("The identity provider refused the grant.")
        self.error = error


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The endpoints of the provider's discovery document this client uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    end_session_endpoint: str | None

    @property
    def registration_endpoint(self) -> str:
        """Keycloak's registration page, a sibling of its authorization endpoint."""
        return self.authorization_endpoint.rsplit("/", 1)[0] + "/registrations"


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """Secrets of one login attempt; they stay on the server, the browser sees only the state."""

    state: str
    nonce: str
    code_verifier: str

    @classmethod
    def new(cls) -> AuthorizationRequest:
        # 256 bits each; the verifier is 43 characters, the RFC 7636 minimum length.
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(32))

    @property
    def code_challenge(self) -> str:
        digest = hashlib.sha256(self.code_verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class TokenSet:
    """A token endpoint answer; lifetimes in seconds from the moment it arrived."""

    access_token: str
    expires_in: int
    refresh_token: str | None = None
    refresh_expires_in: int | None = None
    id_token: str | None = None


class OidcClient:
    """The gateway as a confidential OpenID Connect client of Keycloak."""

    def __init__(
        self,
        settings: GatewaySettings,
        http: httpx.AsyncClient,
        jwks: JWKSCache,
        *,
        clock: Callable[[], float] = time.time,
        logout_token_max_age: int = 120,
    ) -> None:
        self._settings = settings
        self._http = http
        self._metadata: ProviderMetadata | None = None
        self._tokens = OidcTokenVerifier(
            jwks,
            issuer=settings.issuer,
            client_id=settings.client_id,
            algorithms=settings.jwt_algorithms,
            leeway=settings.jwt_leeway_seconds,
            clock=clock,
            logout_token_max_age=logout_token_max_age,
        )

    @property
    def client_id(self) -> str:
        return self._settings.client_id

    async def metadata(self) -> ProviderMetadata:
        """The discovery document (fetched once). Raises DependencyUnavailable."""
        if self._metadata is None:
            document = await self._json("GET", self._settings.discovery_url)
            if document.get("issuer") != self._settings.issuer:
                raise DependencyUnavailable("The identity provider names another issuer.")
            try:
                self._metadata = ProviderMetadata(
                    issuer=str(document["issuer"]),
                    authorization_endpoint=str(document["authorization_endpoint"]),
                    token_endpoint=str(document["token_endpoint"]),
                    end_session_endpoint=document.get("end_session_endpoint"),
                )
            except KeyError:
                raise DependencyUnavailable("The discovery document is incomplete.") from None
        return self._metadata

    async def authorization_url(
        self,
        request: AuthorizationRequest,
        redirect_uri: str,
        *,
        registration: bool = False,
        action: str | None = None,
    ) -> str:
        """Where to send the browser to log in (or to register) for request.

        ``action`` asks Keycloak for an application-initiated action (``kc_action``), such as
        ``UPDATE_PASSWORD``, before it returns to the callback.
        """
        metadata = await self.metadata()
        params = {
            "client_id": self.client_id,
            "response_type": "code",
            "scope": "openid",
            "redirect_uri": redirect_uri,
            "state": request.state,
            "nonce": request.nonce,
            "code_challenge": request.code_challenge,
            "code_challenge_method": "S256",
        }
        if action is not None:
            params["kc_action"] = action
        endpoint = (
            metadata.registration_endpoint if registration else metadata.authorization_endpoint
        )
        return f"{endpoint}?{urlencode(params)}"

    async def end_session_url(
        self, id_token_hint: str | None, post_logout_redirect_uri: str
    ) -> str:
        """RP-initiated logout URL; the post-logout URI itself when the provider has none."""
        metadata = await self.metadata()
        if metadata.end_session_endpoint is None:
            return post_logout_redirect_uri
        params = {"client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        if id_token_hint:
            params["id_token_hint"] = id_token_hint
        return f"{metadata.end_session_endpoint}?{urlencode(params)}"

    async def exchange_code(self, code: str, code_verifier: str, redirect_uri: str) -> TokenSet:
        """Redeem an authorization code. Raises GrantRejected, DependencyUnavailable."""
        return await self._grant(
            {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": code_verifier,
                "redirect_uri": redirect_uri,
            }
        )

    async def refresh(self, refresh_token: str) -> TokenSet:
        """Redeem a refresh token (Keycloak rotates it).

        Raises GrantRejected, DependencyUnavailable.
        """
        return await self._grant({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def verify_id_token(self, token: str, nonce: str) -> dict[str, Any]:
        """The claims of an ID token issued for the login that used nonce. Raises TokenInvalid."""
        return await self._tokens.verify_id_token(token, nonce)

    async def verify_logout_token(self, token: str) -> LogoutClaims:
        """A verified back-channel logout token (``jti`` not yet checked). Raises TokenInvalid."""
        return await self._tokens.verify_logout_token(token)

    async def _grant(self, form: dict[str, str]) -> TokenSet:
        metadata = await self.metadata()
        secret = self._settings.client_secret
        auth = None
        if secret is None:
            form = {**form, "client_id": self.client_id}
        else:
            auth = httpx.BasicAuth(self.client_id, secret.get_secret_value())
        body = await self._json("POST", metadata.token_endpoint, data=form, auth=auth)
        error = body.get("error")
        if error is not None:
            raise GrantRejected(str(error))
        try:
            return TokenSet(
                access_token=str(body["access_token"]),
                expires_in=int(body["expires_in"]),
                refresh_token=_optional_str(body.get("refresh_token")),
                refresh_expires_in=_optional_int(body.get("refresh_expires_in")),
                id_token=_optional_str(body.get("id_token")),
            )
        except (KeyError, TypeError, ValueError):
            raise DependencyUnavailable("The token endpoint answered garbage.") from None

    async def _json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """A JSON object from the provider; 4xx answers with an ``error`` member are returned."""
        try:
            response = await self._http.request(
                method, url, headers={"Accept": "application/json"}, **kwargs
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DependencyUnavailable("The identity provider cannot be reached.") from exc
        if not isinstance(body, dict):
            raise DependencyUnavailable("The identity provider answered garbage.")
        if response.is_success or (400 <= response.status_code < 500 and "error" in body):
            return body
        raise DependencyUnavailable("The identity provider failed.")


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _optional_int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and value > 0 else None
