"""The identity assertion the gateway sends the orchestrator (``X-MRO-Assertion``).

A short-lived ES256 JWT with the claims listed in docs/architecture.md, signed with the first of
the configured keys; every configured key is published at ``/.well-known/jwks.json`` so keys can
rotate (publish the new key second, then move it first, then drop the old one).

An assertion says who the caller is, not which request it belongs to (the request id travels in
``X-Request-ID``), so one signed assertion serves every request of the same identity for
``reuse_seconds``, a small part of its lifetime: an ES256 signature per request was a sixth of
the gateway's CPU time. Every assertion sent still has at least ``lifetime - reuse`` seconds to
live, and nothing the orchestrator checks depends on the request (it keeps no ``jti`` replay
cache). A caller whose roles, permissions or session change has another cache key, so it gets a
new assertion at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from gateway.identity import Identity
from gateway.settings import Environment, GatewaySettings

__all__ = ["ALGORITHM", "HEADER", "AssertionSigner", "generate_signing_key_pem"]

ALGORITHM = "ES256"
HEADER = "X-MRO-Assertion"
_CURVE = "P-256"
# Distinct identities remembered at most; past it the cache starts afresh.
MAX_CACHED = 10_000


class _Signed(NamedTuple):
    token: str
    signed_at: float


def generate_signing_key_pem() -> str:
    """A new P-256 private key as PKCS#8 PEM, for MRO_GATEWAY_ASSERTION_SIGNING_KEYS."""
    return ECKey.generate_key(_CURVE).as_pem(private=True).decode("ascii")


def _signing_key(key: ECKey) -> ECKey:
    if not key.is_private or key.curve_name != _CURVE:
        raise ValueError("assertion signing keys must be private P-256 (ES256) keys")
    # The kid is the RFC 7638 thumbprint: stable for a key, whatever its source.
    return ECKey.import_key(key.as_dict(private=True), {"kid": key.thumbprint()})


def _claims_key(identity: Identity) -> tuple[object, ...]:
    # Exactly the fields the claims are made of: equal keys make equal claims.
    return (
        identity.subject,
        identity.method,
        identity.roles,
        identity.permissions,
        identity.session_id,
        identity.username,
        identity.name,
    )


class AssertionSigner:
    """Signs identity assertions (reusing a recent one per identity); publishes the public keys."""

    def __init__(
        self,
        keys: Sequence[ECKey],
        issuer: str,
        audience: str,
        lifetime_seconds: int = 60,
        clock: Callable[[], float] = time.time,
        reuse_seconds: float | None = None,
    ) -> None:
        """``reuse_seconds`` defaults to a sixth of the lifetime (10 s of 60 s); 0 signs every
        time. Raises ValueError without keys or when reuse would exceed half the lifetime."""
        if not keys:
            raise ValueError("at least one assertion signing key is needed")
        reuse = lifetime_seconds / 6 if reuse_seconds is None else reuse_seconds
        if not 0 <= reuse <= lifetime_seconds / 2:
            raise ValueError("assertion reuse must lie between 0 and half the lifetime")
        self._keys = [_signing_key(key) for key in keys]
        self._issuer = issuer
        self._audience = audience
        self._lifetime = lifetime_seconds
        self._clock = clock
        self._reuse = reuse
        self._kid = str(self._keys[0].kid)
        self._recent: dict[tuple[object, ...], _Signed] = {}

    @classmethod
    def from_settings(
        cls, settings: GatewaySettings, clock: Callable[[], float] = time.time
    ) -> AssertionSigner:
        """Keys from MRO_GATEWAY_ASSERTION_SIGNING_KEYS, or one ephemeral key in development.

        Raises ValueError when a PEM is not a private P-256 key, or when no key is configured
        outside development.
        """
        pems = [secret.get_secret_value() for secret in settings.assertion_signing_keys]
        if pems:
            try:
                keys = [ECKey.import_key(pem) for pem in pems]
            except (JoseError, ValueError, TypeError) as exc:
                raise ValueError(
                    "assertion signing keys must be P-256 private keys in PEM"
                ) from exc
        elif settings.environment is Environment.DEVELOPMENT:
            keys = [ECKey.generate_key(_CURVE)]
        else:
            raise ValueError("MRO_GATEWAY_ASSERTION_SIGNING_KEYS must be set")
        return cls(
            keys,
            settings.assertion_issuer,
            settings.assertion_audience,
            settings.assertion_lifetime_seconds,
            clock,
            reuse_seconds=settings.assertion_reuse_seconds,
        )

    @property
    def kid(self) -> str:
        """The kid of the key that signs."""
        return self._kid

    def sign(self, identity: Identity) -> str:
        """A compact JWS asserting identity, signed now or reused from the last few seconds
        (the request id is not part of it: it travels in ``X-Request-ID``)."""
        now = self._clock()
        key = _claims_key(identity)
        recent = self._recent.get(key)
        if recent is not None and recent.signed_at <= now < recent.signed_at + self._reuse:
            return recent.token
        token = self._sign(identity, int(now))
        if self._reuse > 0:
            if len(self._recent) >= MAX_CACHED:
                self._recent.clear()
            self._recent[key] = _Signed(token, now)
        return token

    def _sign(self, identity: Identity, now: int) -> str:
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": identity.subject,
            "name": identity.name,
            "preferred_username": identity.username,
            "roles": sorted(identity.roles),
            "permissions": sorted(identity.permissions),
            "auth": identity.method.value,
            "iat": now,
            "nbf": now,
            "exp": now + self._lifetime,
            "jti": uuid.uuid4().hex,
        }
        if identity.session_id:
            claims["sid"] = identity.session_id
        header = {"alg": ALGORITHM, "kid": self._kid, "typ": "JWT"}
        return jwt.encode(header, claims, self._keys[0], algorithms=[ALGORITHM])

    def jwks(self) -> dict[str, Any]:
        """The public keys as a JWKS document (``/.well-known/jwks.json``)."""
        return {
            "keys": [key.as_dict(private=False, use="sig", alg=ALGORITHM) for key in self._keys]
        }
