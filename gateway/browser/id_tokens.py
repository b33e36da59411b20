"""Verification of the ID tokens and back-channel logout tokens Keycloak sends the gateway.

Order of checks, as for access tokens (``gateway.auth.bearer``): size, header (algorithm allow-list,
no key or URL carried in the token, no ``crit``), key by ``kid`` from the provider's JWKS only,
signature, then the claims with the injected clock and leeway. ID tokens follow OpenID Connect Core
3.1.3.7 (``iss``, ``aud``, ``azp``, ``exp``, ``iat``, ``nonce``); logout tokens follow OpenID
Connect Back-Channel Logout 1.0 section 2.6 (``typ`` header ``logout+jwt`` when present, ``events``,
``sid`` and/or ``sub``, no ``nonce``, recent ``iat``). Keycloak 26 sends both the ``logout+jwt``
header and a ``typ: Logout`` claim; an ID token carries ``typ: ID``.

Every failure raises ``TokenInvalid`` whose ``reason`` names the check that failed.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from joserfc import jws
from joserfc.errors import BadSignatureError, ClaimError, ExpiredTokenError, JoseError
from joserfc.jwt import JWTClaimsRegistry

from gateway.auth.bearer import ASYMMETRIC_ALGORITHMS
from gateway.auth.jwks import JWKSCache
from gateway.errors import AuthenticationError, BadRequest

__all__ = ["BACKCHANNEL_LOGOUT_EVENT", "LogoutClaims", "OidcTokenVerifier", "TokenInvalid"]

BACKCHANNEL_LOGOUT_EVENT: Final = "http://schemas.openid.net/event/backchannel-logout"
MAX_TOKEN_BYTES: Final = 16_384
_REFUSED_HEADERS: Final = frozenset({"jku", "x5u", "jwk", "x5c", "crit", "b64"})
_LOGOUT_TYPES: Final = frozenset({"logout+jwt", "application/logout+jwt"})


class TokenInvalid(BadRequest):
    """An ID token or logout token failed verification; ``reason`` names the failed check."""

    code = "token_invalid"
    title = "Invalid token"

    def __init__(self, reason: str) -> None:
        super().__init__(f"The token failed verification ({reason}).")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LogoutClaims:
    """What a verified back-channel logout token asks for."""

    jti: str
    sid: str | None
    sub: str | None
    iat: int


class OidcTokenVerifier:
    """Verifies tokens the provider issued to this client (``client_id``)."""

    def __init__(
        self,
        jwks: JWKSCache,
        *,
        issuer: str,
        client_id: str,
        algorithms: list[str],
        leeway: int,
        clock: Callable[[], float] = time.time,
        logout_token_max_age: int = 120,
    ) -> None:
        self._jwks = jwks
        self._issuer = issuer
        self._client_id = client_id
        self._leeway = leeway
        self._clock = clock
        self._logout_max_age = logout_token_max_age
        allowed = sorted(frozenset(algorithms) & ASYMMETRIC_ALGORITHMS)
        if not allowed:
            raise ValueError("jwt_algorithms must name at least one asymmetric algorithm")
        self._algorithms = frozenset(allowed)
        self._registry = jws.JWSRegistry(algorithms=allowed)

    async def verify_id_token(self, token: str, nonce: str) -> dict[str, Any]:
        """The claims of an ID token issued to this client for the login that used nonce.

        Raises TokenInvalid, or DependencyUnavailable when the keys cannot be fetched.
        """
        _, claims = await self._verified(token)
        self._validate(claims, sub={"essential": True}, exp={"essential": True})
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self._client_id:
            raise TokenInvalid("azp")
        if claims.get("typ", "ID") != "ID":
            raise TokenInvalid("typ")
        received = claims.get("nonce")
        if not isinstance(received, str) or not hmac.compare_digest(
            received.encode(), nonce.encode()
        ):
            raise TokenInvalid("nonce")
        return claims

    async def verify_logout_token(self, token: str) -> LogoutClaims:
        """A back-channel logout token, verified as OpenID Connect Back-Channel Logout 1.0 says.

        The caller still has to refuse a ``jti`` it has seen. Raises TokenInvalid, or
        DependencyUnavailable when the keys cannot be fetched.
        """
        header, claims = await self._verified(token)
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _LOGOUT_TYPES):
            raise TokenInvalid("typ")
        self._validate(claims, jti={"essential": True})
        iat = claims["iat"]
        if iat < self._clock() - self._logout_max_age:
            raise TokenInvalid("iat")
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(
            events.get(BACKCHANNEL_LOGOUT_EVENT), dict
        ):
            raise TokenInvalid("events")
        if "nonce" in claims:
            raise TokenInvalid("nonce")
        if claims.get("typ", "Logout") != "Logout":
            raise TokenInvalid("typ")
        sid, sub = claims.get("sid"), claims.get("sub")
        if not (isinstance(sid, str) and sid) and not (isinstance(sub, str) and sub):
            raise TokenInvalid("sid")
        return LogoutClaims(
            jti=str(claims["jti"]),
            sid=sid if isinstance(sid, str) and sid else None,
            sub=sub if isinstance(sub, str) and sub else None,
            iat=int(iat),
        )

    def _validate(self, claims: Mapping[str, Any], **extra: Any) -> None:
        registry = JWTClaimsRegistry(
            now=lambda: int(self._clock()),
            leeway=self._leeway,
            iss={"essential": True, "value": self._issuer},
            aud={"essential": True, "value": self._client_id},
            iat={"essential": True},
            **extra,
        )
        try:
            registry.validate(dict(claims))
        except ExpiredTokenError:
            raise TokenInvalid("exp") from None
        except ClaimError as exc:
            raise TokenInvalid(exc.claim.split(",")[0]) from None

    async def _verified(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        if not token or len(token) > MAX_TOKEN_BYTES:
            raise TokenInvalid("size")
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenInvalid("malformed")
        header = _json_object(parts[0])
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise TokenInvalid("alg")
        if _REFUSED_HEADERS & header.keys():
            raise TokenInvalid("header")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenInvalid("kid")
        try:
            key = await self._jwks.get_key(kid)
        except AuthenticationError:
            raise TokenInvalid("kid") from None
        try:
            signed = jws.deserialize_compact(token, key, registry=self._registry)
        except BadSignatureError:
            raise TokenInvalid("signature") from None
        except (JoseError, ValueError, TypeError):
            raise TokenInvalid("malformed") from None
        try:
            claims = json.loads(signed.payload)
        except ValueError:
            raise TokenInvalid("malformed") from None
        if not isinstance(claims, dict):
            raise TokenInvalid("malformed")
        return header, claims


def _json_object(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except ValueError:
        raise TokenInvalid("malformed") from None
    if not isinstance(value, dict):
        raise TokenInvalid("malformed")
    return value
