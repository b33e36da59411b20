"""The identity assertion the gateway sends the orchestrator (``X-MRO-Assertion``).

A short-lived ES256 JWT with the claims listed in docs/architecture.md, signed with the first of
the configured keys; every configured key is published at ``/.well-known/jwks.json`` so keys can
rotate (publish the new key second, then move it first, then drop the old one).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from gateway.identity import Identity
from gateway.settings import Environment, GatewaySettings

__all__ = ["ALGORITHM", "HEADER", "AssertionSigner", "generate_signing_key_pem"]

ALGORITHM = "ES256"
HEADER = "X-MRO-Assertion"
_CURVE = "P-256"


def generate_signing_key_pem() -> str:
    """A new P-256 private key as PKCS#8 PEM, for MRO_GATEWAY_ASSERTION_SIGNING_KEYS."""
    return ECKey.generate_key(_CURVE).as_pem(private=True).decode("ascii")


def _signing_key(key: ECKey) -> ECKey:
    if not key.is_private or key.curve_name != _CURVE:
        raise ValueError("assertion signing keys must be private P-256 (ES256) keys")
    # The kid is the RFC 7638 thumbprint: stable for a key, whatever its source.
    return ECKey.import_key(key.as_dict(private=True), {"kid": key.thumbprint()})


class AssertionSigner:
    """Signs identity assertions; publishes the public keys."""

    def __init__(
        self,
        keys: Sequence[ECKey],
        issuer: str,
        audience: str,
        lifetime_seconds: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise ValueError("at least one assertion signing key is needed")
        self._keys = [_signing_key(key) for key in keys]
        self._issuer = issuer
        self._audience = audience
        self._lifetime = lifetime_seconds
        self._clock = clock

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
        )

    @property
    def kid(self) -> str:
        """The kid of the key that signs."""
        return str(self._keys[0].kid)

    def sign(self, identity: Identity, request_id: str) -> str:
        """A compact JWS asserting identity for one request."""
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": identity.subject,
            "name": identity.name,
            "preferred_username": identity.username,
            "roles": sorted(identity.roles),
            "permissions": sorted(identity.permissions),
            "auth": identity.method.value,
            "rid": request_id,
            "iat": now,
            "nbf": now,
            "exp": now + self._lifetime,
            "jti": uuid.uuid4().hex,
        }
        if identity.session_id:
            claims["sid"] = identity.session_id
        header = {"alg": ALGORITHM, "kid": self.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self._keys[0], algorithms=[ALGORITHM])

    def jwks(self) -> dict[str, Any]:
        """The public keys as a JWKS document (``/.well-known/jwks.json``)."""
        return {
            "keys": [key.as_dict(private=False, use="sig", alg=ALGORITHM) for key in self._keys]
        }
