"""Bearer access tokens issued by Keycloak: verification and mapping to an Identity.

Order of checks, cheapest and most dangerous first: size, header (algorithm allow-list, no key
or URL carried in the token, no ``crit``), key by ``kid`` from the configured JWKS only, signature,
then the claims through an explicit registry with the injected clock. Every failure raises
``AuthenticationError`` with one of the codes in ``ERROR_CODES``.

Verified tokens are remembered (by hash) until ``exp`` plus leeway, so a repeat costs a dict
lookup instead of a signature check. A remembered token is never trusted longer than its key:
the entry keeps the token's ``kid``, entries of a key that a refetch withdrew are dropped at once
(``JWKSCache.on_keys_withdrawn``), and once the key set is due for a refetch a repeat first asks
the key cache for the token's key again, so it ends when an uncached token of that key would.

Audience: the token's ``aud`` must contain ``settings.audience``; ``azp`` alone is not enough,
since it names the client a token was issued *to*, not the services it is meant *for*. Keycloak
puts the audience mapper's value in ``aud`` for both user and service-account tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from joserfc import jws
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyCurveError,
    InvalidKeyTypeError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
    UnsupportedKeyAlgorithmError,
    UnsupportedKeyUseError,
)
from joserfc.jwt import JWTClaimsRegistry

from gateway.auth.api_keys import PREFIX as _KEY_PREFIX
from gateway.auth.jwks import JWKSCache
from gateway.errors import AuthenticationError
from gateway.identity import AuthMethod, Identity
from gateway.settings import GatewaySettings

__all__ = ["ASYMMETRIC_ALGORITHMS", "ERROR_CODES", "BearerAuthenticator", "RevocationCheck"]

logger = logging.getLogger(__name__)

MAX_TOKEN_BYTES: Final = 8192
CACHE_SIZE: Final = 10_000
# The fully specified EdDSA names of RFC 9864; the polymorphic "EdDSA" is deprecated there.
ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
    | {"Ed25519", "Ed448"}
)
# Header members that carry a key or point at one: never followed, and a token carrying one is
# refused rather than silently trusted by a later library upgrade. ``crit`` and ``b64`` change
# how the token must be processed; none of their extensions is supported.
# API keys (``mro_<id>_<secret>``) may come as bearer tokens; the API-key authenticator takes them.
API_KEY_PREFIX: Final = _KEY_PREFIX + "_"
_REFUSED_HEADERS: Final = frozenset({"jku", "x5u", "jwk", "x5c", "crit", "b64"})

ERROR_CODES: Final = frozenset(
    {
        "unsupported_scheme",
        "token_malformed",
        "token_too_large",
        "token_algorithm",
        "token_header",
        "unknown_kid",
        "token_signature",
        "token_expired",
        "token_not_yet_valid",
        "token_issued_in_future",
        "token_issuer",
        "token_audience",
        "token_type",
        "token_revoked",
    }
)
_CLAIM_CODES: Final = {
    "iss": "token_issuer",
    "aud": "token_audience",
    "typ": "token_type",
    "nbf": "token_not_yet_valid",
    "iat": "token_issued_in_future",
}

RevocationCheck = Callable[[Identity], Awaitable[bool]]


def _fail(code: str, detail: str) -> AuthenticationError:
    return AuthenticationError(detail, code=code)


@dataclass(slots=True)
class _Verified:
    """A remembered verification: the identity, the key that signed it, and until when."""

    identity: Identity
    kid: str
    valid_until: float


class BearerAuthenticator:
    """Authenticates ``Authorization: Bearer <access token>`` against Keycloak's keys."""

    def __init__(
        self,
        jwks: JWKSCache,
        settings: GatewaySettings,
        clock: Callable[[], float] = time.time,
        *,
        revoked: RevocationCheck | None = None,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self._jwks = jwks
        self._clock = clock
        self._revoked = revoked
        self._issuer = settings.issuer
        self._audience = settings.audience
        self._leeway = settings.jwt_leeway_seconds
        self._algorithms = frozenset(settings.jwt_algorithms) & ASYMMETRIC_ALGORITHMS
        if not self._algorithms:
            raise ValueError("jwt_algorithms must name at least one asymmetric algorithm")
        self._registry = jws.JWSRegistry(algorithms=sorted(self._algorithms))
        self._cache: OrderedDict[bytes, _Verified] = OrderedDict()
        self._cache_size = cache_size
        jwks.on_keys_withdrawn(self._forget)

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        """The caller's Identity, or None without an Authorization header.

        Raises AuthenticationError (codes in ERROR_CODES) for an invalid credential and
        DependencyUnavailable when the token's key cannot be fetched.
        """
        value = headers.get("authorization")
        if value is None:
            value = headers.get("Authorization")
        if value is None:
            return None
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise _fail("unsupported_scheme", "Only Bearer tokens are accepted")
        token = token.strip()
        if token.startswith(API_KEY_PREFIX):
            return None  # an API key sent the way OpenAI-style clients send theirs
        identity = await self.verify(token)
        if self._revoked is not None and await self._revoked(identity):
            raise _fail("token_revoked", "The token's session has ended")
        return identity

    async def verify(self, token: str) -> Identity:
        """Verify an access token (signature, then claims) and map it to an Identity.

        Raises AuthenticationError; no revocation check (``authenticate`` adds it).
        """
        if len(token) > MAX_TOKEN_BYTES:
            raise _fail("token_too_large", "The token is too large")
        if not token:
            raise _fail("token_malformed", "The token is empty")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        entry = self._cache.get(digest)
        if entry is not None:
            # The hot path: valid as long as a full verification would accept it (exp plus
            # leeway) and the key set that vouched for its key is not due for a refetch.
            now = self._clock()
            if now < entry.valid_until and now < self._jwks.fresh_until:
                self._cache.move_to_end(digest)
                return entry.identity
            if await self._still_valid(digest, entry, now):
                return entry.identity
        claims, kid = await self._verified_claims(token)
        identity = _identity_from_claims(claims)
        self._remember(digest, _Verified(identity, kid, float(claims["exp"]) + self._leeway))
        return identity

    async def _still_valid(self, digest: bytes, entry: _Verified, now: float) -> bool:
        """Whether a remembered token past the key set's freshness may still be served.

        Raises AuthenticationError(code="unknown_kid") when the refetch finds its key gone.
        """
        if now >= entry.valid_until:
            del self._cache[digest]
            return False
        # Refetches when allowed; a withdrawn key raises, or (other key material under the same
        # kid) drops the entry through ``_forget`` so the token is verified again.
        await self._jwks.get_key(entry.kid)
        if self._cache.get(digest) is not entry:
            return False
        self._cache.move_to_end(digest)
        return True

    def _remember(self, digest: bytes, entry: _Verified) -> None:
        self._cache[digest] = entry
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _forget(self, kids: frozenset[str]) -> None:
        """Drop the remembered tokens of withdrawn keys (a rare event: a scan is fine)."""
        gone = [digest for digest, entry in self._cache.items() if entry.kid in kids]
        for digest in gone:
            del self._cache[digest]
        if gone:
            logger.warning("dropped %d verified tokens of withdrawn signing keys", len(gone))

    async def _verified_claims(self, token: str) -> tuple[dict[str, Any], str]:
        """The token's claims and the kid of the key that verified them."""
        header = _decode_header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise _fail("token_algorithm", "The token's algorithm is not accepted")
        if _REFUSED_HEADERS & header.keys():
            raise _fail("token_header", "The token's header carries a refused member")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _fail("token_malformed", "The token names no key")
        key = await self._jwks.get_key(kid)
        try:
            signed = jws.deserialize_compact(token, key, registry=self._registry)
        except BadSignatureError:
            raise _fail("token_signature", "The token's signature is invalid") from None
        except (
            UnsupportedAlgorithmError,
            InvalidKeyTypeError,
            InvalidKeyCurveError,
            UnsupportedKeyAlgorithmError,
            UnsupportedKeyUseError,
        ):
            raise _fail("token_algorithm", "The token's algorithm does not fit its key") from None
        except (JoseError, ValueError, TypeError):
            raise _fail("token_malformed", "The token cannot be decoded") from None
        claims = _json_object(signed.payload)
        self._check_claims(claims)
        return claims, kid

    def _check_claims(self, claims: dict[str, Any]) -> None:
        registry = JWTClaimsRegistry(
            now=lambda: int(self._clock()),
            leeway=self._leeway,
            iss={"essential": True, "value": self._issuer},
            aud={"essential": True, "value": self._audience},
            typ={"essential": True, "value": "Bearer"},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise _fail("token_expired", "The token has expired") from None
        except MissingClaimError as exc:
            missing = exc.claim.split(",")
            code = next((_CLAIM_CODES[c] for c in missing if c in _CLAIM_CODES), None)
            raise _fail(code or "token_malformed", "The token lacks a required claim") from None
        except ClaimError as exc:
            code = _CLAIM_CODES.get(exc.claim, "token_malformed")
            raise _fail(code, f"The token's {exc.claim!r} claim is not accepted") from None


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _decode_header(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise _fail(
            "token_malformed",
            "The bearer token is neither an access token (a compact JWS) nor an API key "
            "(mro_…); send an API key as 'Authorization: Bearer mro_…' or 'X-API-Key: mro_…'",
        )
    try:
        return _json_object(_b64decode(parts[0]))
    except (binascii.Error, ValueError):
        raise _fail("token_malformed", "The token's header cannot be decoded") from None


def _json_object(raw: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"")
    except (ValueError, TypeError):
        raise _fail("token_malformed", "The token is not JSON") from None
    if not isinstance(value, dict):
        raise _fail("token_malformed", "The token is not a JSON object")
    return value


def _strings(value: object) -> frozenset[str]:
    if not isinstance(value, list):
        return frozenset()
    return frozenset(item for item in value if isinstance(item, str))


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    return value if isinstance(value, str) else ""


def _is_service_token(claims: Mapping[str, Any], roles: frozenset[str]) -> bool:
    """Whether a token came from the client-credentials grant of a confidential client.

    Decided from what only Keycloak controls: that grant yields a token with the client's id
    (``client_id``, which Keycloak's service-account scope adds) and no user session (``sid``),
    for a service account holding the realm's ``service`` role. A username is never evidence:
    people choose theirs at registration.
    """
    client_id = _text(claims, "client_id") or _text(claims, "clientId")
    return bool(client_id) and not _text(claims, "sid") and "service" in roles


def _identity_from_claims(claims: Mapping[str, Any]) -> Identity:
    """The Identity a verified access token describes."""
    realm_access = claims.get("realm_access")
    roles = _strings(realm_access.get("roles")) if isinstance(realm_access, dict) else frozenset()
    is_service = _is_service_token(claims, roles)
    iat = claims.get("iat")
    return Identity(
        subject=_text(claims, "sub"),
        method=AuthMethod.CLIENT_CREDENTIALS if is_service else AuthMethod.JWT,
        roles=roles,
        username=_text(claims, "preferred_username"),
        name=_text(claims, "name"),
        email=_text(claims, "email"),
        session_id=_text(claims, "sid") or None,
        client_id=(_text(claims, "client_id") or _text(claims, "clientId")) if is_service else None,
        expires_at=float(claims["exp"]),
        issued_at=float(iat) if isinstance(iat, int | float) else None,
    )
