"""The gateway's public keys (RFC 7517 JWK Set): a static set, or one fetched and cached.

A remote set is fetched when first needed and again once it is older than ``cache_seconds``.
A token naming an unknown ``kid`` triggers at most one refetch per ``cooldown_seconds``, so a flood
of forged key ids cannot turn the orchestrator into a load generator against the gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx
from joserfc import jwk
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from orchestrator.errors import AuthenticationError, KeysUnavailable

logger = logging.getLogger(__name__)

# Only asymmetric key types can verify an assertion; anything else in a set is ignored.
_ASYMMETRIC_KEY_TYPES = frozenset({"EC", "RSA", "OKP"})


class KeySource(Protocol):
    """Where the assertion verifier finds the key a token names."""

    async def key_for(self, kid: str) -> Key:
        """The public key with this id; raises AuthenticationError or KeysUnavailable."""
        ...

    async def check(self) -> None:
        """Raise KeysUnavailable unless keys are at hand (readiness)."""
        ...


def parse_key_set(document: Mapping[str, Any]) -> KeySet:
    """The asymmetric public keys of a JWKS document; raises ValueError when there are none."""
    raw_keys = document.get("keys")
    if not isinstance(raw_keys, list):
        raise ValueError("a JWKS document needs a 'keys' list")
    usable = [k for k in raw_keys if isinstance(k, dict) and k.get("kty") in _ASYMMETRIC_KEY_TYPES]
    try:
        keys = KeySet.import_key_set({"keys": usable})
    except JoseError as exc:
        raise ValueError(f"unusable JWKS: {exc.error}") from exc
    # Keep the public halves only, whatever the document held.
    return KeySet([jwk.import_key(k.as_dict(private=False)) for k in keys])


def _lookup(keys: KeySet | None, kid: str) -> Key | None:
    if keys is None:
        return None
    return next((key for key in keys if key.kid == kid), None)


def _unknown_key() -> AuthenticationError:
    return AuthenticationError("The assertion names an unknown signing key", code="unknown_key")


class StaticKeySource:
    """A fixed JWK Set (tests, air-gapped installations)."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._keys = parse_key_set(document)

    @classmethod
    def from_file(cls, path: Path) -> StaticKeySource:
        """Read a JWKS document from a file; raises ValueError when it is not one."""
        return cls(json.loads(path.read_text(encoding="utf-8")))

    async def key_for(self, kid: str) -> Key:
        key = _lookup(self._keys, kid)
        if key is None:
            raise _unknown_key()
        return key

    async def check(self) -> None:
        return None


class RemoteKeySource:
    """The gateway's JWKS URL, cached; unknown ``kid`` refetches at most once per cooldown."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        cache_seconds: float = 600.0,
        cooldown_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._client = client
        self._cache_seconds = cache_seconds
        self._cooldown_seconds = cooldown_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetch_count = 0

    def _fresh(self) -> bool:
        return self._clock() - self._fetched_at < self._cache_seconds

    def _cooled_down(self) -> bool:
        return self._clock() - self._attempted_at >= self._cooldown_seconds

    async def key_for(self, kid: str) -> Key:
        if self._fresh() and (key := _lookup(self._keys, kid)) is not None:
            return key
        async with self._lock:
            key = _lookup(self._keys, kid)
            stale_or_unknown = key is None or not self._fresh()
            if self._keys is None or (stale_or_unknown and self._cooled_down()):
                await self._refresh()
                key = _lookup(self._keys, kid)
        if key is None:
            raise _unknown_key()
        return key

    async def check(self) -> None:
        async with self._lock:
            if self._keys is None:
                await self._refresh()

    async def _refresh(self) -> None:
        """Fetch the set; on failure keep the cached one, or raise KeysUnavailable without one."""
        self._attempted_at = self._clock()
        self.fetch_count += 1
        try:
            self._keys = await self._fetch()
        except KeysUnavailable:
            if self._keys is None:
                raise
            logger.warning("gateway JWKS refetch failed; keeping the cached keys")
            return
        self._fetched_at = self._clock()

    async def _fetch(self) -> KeySet:
        try:
            response = await self._client.get(self._url, timeout=self._timeout)
            response.raise_for_status()
            return parse_key_set(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("gateway JWKS fetch failed: %s", type(exc).__name__)
            raise KeysUnavailable("The gateway's signing keys are unavailable") from exc
