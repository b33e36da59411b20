"""Who is calling: the gateway's signed identity assertion (``X-MRO-Assertion``), verified.

The order matters: the header's algorithm is checked against an allow-list before any key is
looked up, the signature is verified before a single claim is read, and the claims are then
validated by an explicit registry (``iss``, ``aud``, ``exp``, ``nbf``, ``iat``) against an
injectable clock with a small leeway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwt import JWTClaimsRegistry

from orchestrator.errors import AuthenticationError
from orchestrator.jwks import KeySource

ASSERTION_HEADER = "x-mro-assertion"
# A real assertion is well under 2 KiB even with every permission listed.
MAX_ASSERTION_BYTES = 8192
_AUTH_METHODS = frozenset({"session", "jwt", "client_credentials", "api_key"})


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller the gateway vouches for."""

    sub: str
    username: str
    name: str
    roles: frozenset[str]
    permissions: frozenset[str]
    auth: str
    sid: str | None = None
    rid: str | None = None

    def has(self, permission: str) -> bool:
        """True when the gateway granted this permission."""
        return permission in self.permissions

    @property
    def display_name(self) -> str:
        return self.name or self.username or self.sub


class AssertionVerifier:
    """Turns an ``X-MRO-Assertion`` value into a Principal, or raises AuthenticationError."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        leeway_seconds: int = 30,
        algorithms: Collection[str] = ("ES256",),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds
        self._algorithms = tuple(algorithms)
        self._clock = clock

    async def verify(self, token: str) -> Principal:
        """The principal in a valid assertion.

        Raises AuthenticationError (codes ``invalid_assertion``, ``expired_assertion``,
        ``unknown_key``) and KeysUnavailable when no keys can be had.
        """
        if not token or len(token) > MAX_ASSERTION_BYTES:
            raise AuthenticationError("Malformed assertion")
        header = self._header(token)
        key = await self._keys.key_for(header["kid"])
        try:
            verified = jwt.decode(token, key, algorithms=self._algorithms)
        except JoseError as exc:
            raise AuthenticationError("Assertion signature is not valid") from exc
        self._validate_claims(verified.claims)
        return _principal(verified.claims)

    def _header(self, token: str) -> dict[str, Any]:
        try:
            header = jws.extract_compact(token.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeError) as exc:
            raise AuthenticationError("Malformed assertion") from exc
        if header.get("alg") not in self._algorithms:
            raise AuthenticationError("Assertion algorithm is not allowed")
        if not isinstance(header.get("kid"), str) or not header["kid"]:
            raise AuthenticationError("Assertion header has no key id")
        return header

    def _validate_claims(self, claims: dict[str, Any]) -> None:
        registry = JWTClaimsRegistry(
            now=lambda: int(self._clock()),
            leeway=self._leeway,
            iss={"essential": True, "value": self._issuer},
            aud={"essential": True, "value": self._audience},
            sub={"essential": True},
            exp={"essential": True},
            nbf={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as exc:
            raise AuthenticationError("Assertion has expired", code="expired_assertion") from exc
        except ClaimError as exc:
            raise AuthenticationError(f"Assertion claim '{exc.claim}' is not valid") from exc


def _strings(value: object, claim: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AuthenticationError(f"Assertion claim '{claim}' must be a list of strings")
    return frozenset(value)


def _optional_string(value: object, claim: str) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    raise AuthenticationError(f"Assertion claim '{claim}' must be a string")


def _principal(claims: dict[str, Any]) -> Principal:
    auth = claims.get("auth")
    if auth not in _AUTH_METHODS:
        raise AuthenticationError("Assertion claim 'auth' is not valid")
    return Principal(
        sub=claims["sub"],
        username=_optional_string(claims.get("preferred_username"), "preferred_username") or "",
        name=_optional_string(claims.get("name"), "name") or "",
        roles=_strings(claims.get("roles"), "roles"),
        permissions=_strings(claims.get("permissions"), "permissions"),
        auth=auth,
        sid=_optional_string(claims.get("sid"), "sid"),
        rid=_optional_string(claims.get("rid"), "rid"),
    )
