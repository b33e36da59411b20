"""Keycloak's signing keys: JWKS resolved through OIDC discovery, cached, refetched on demand.

Keys only ever come from the ``jwks_uri`` of the configured discovery document; nothing in a
token (``jku``, ``x5u``, ``jwk``, ``x5c``) can add a key. Only asymmetric signing keys are kept.

Refetch rules:

* the key set is refetched when it is older than ``cache_seconds`` or when a token names a
  ``kid`` the set does not hold;
* at most one fetch is started per ``refetch_cooldown_seconds`` (a flood of forged ``kid``\\ s
  costs one request to Keycloak), and concurrent callers share the fetch in flight;
* while Keycloak cannot be reached the keys already fetched keep working.

A refetch that no longer finds a key (or finds other key material under its ``kid``) tells
the listeners registered with ``on_keys_withdrawn``: whoever remembers tokens verified with that
key (``gateway.auth.bearer``) must forget them, or they would outlive the key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

from gateway.errors import AuthenticationError, DependencyUnavailable

__all__ = ["JWKSCache", "KeysWithdrawn", "SigningKey"]

logger = logging.getLogger(__name__)

SigningKey = RSAKey | ECKey | OKPKey
# Called with the kids a refetch withdrew; must not block (it runs inside the fetch).
KeysWithdrawn = Callable[[frozenset[str]], None]

_KEY_TYPES: dict[str, type[SigningKey]] = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}
# Members of a JWK that only a private key has; a published set must not carry them, and
# the cache never keeps them even if it does.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class _FetchFailed(Exception):
    """The discovery document or the key set could not be fetched or parsed."""


class JWKSCache:
    """Signing keys of one OIDC issuer, fetched lazily and shared by all requests."""

    def __init__(
        self,
        discovery_url: str,
        http: httpx.AsyncClient,
        *,
        cache_seconds: float = 600,
        refetch_cooldown_seconds: float = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._discovery_url = discovery_url
        self._http = http
        self._cache_seconds = cache_seconds
        self._cooldown = refetch_cooldown_seconds
        self._clock = clock
        self._jwks_uri: str | None = None
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._last_failed = False
        self._inflight: asyncio.Task[None] | None = None
        self._listeners: list[KeysWithdrawn] = []

    @property
    def kids(self) -> frozenset[str]:
        """The key ids held now."""
        return frozenset(self._keys)

    @property
    def fresh_until(self) -> float:
        """The instant (on the injected clock) the key set held now is due for a refetch."""
        if self._fetched_at is None:
            return float("-inf")
        return self._fetched_at + self._cache_seconds

    def on_keys_withdrawn(self, listener: KeysWithdrawn) -> None:
        """Call listener with the kids each refetch finds gone or holding other key material."""
        self._listeners.append(listener)

    async def get_key(self, kid: str) -> SigningKey:
        """The public key named kid.

        Raises AuthenticationError(code="unknown_kid") when the issuer does not publish it, and
        DependencyUnavailable when it is unknown here and the issuer cannot be reached.
        """
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self._cache_seconds
        if kid in self._keys and not stale:
            return self._keys[kid]
        if self._may_fetch(now):
            try:
                await self._refresh()
            except _FetchFailed:
                if kid in self._keys:
                    return self._keys[kid]
                raise DependencyUnavailable(
                    "The identity provider's signing keys cannot be fetched"
                ) from None
        if kid in self._keys:
            return self._keys[kid]
        if self._last_failed:
            raise DependencyUnavailable("The identity provider's signing keys cannot be fetched")
        raise AuthenticationError("The token's signing key is not known", code="unknown_kid")

    async def ready(self) -> bool:
        """True when keys are available (fetching them if none were fetched yet)."""
        if self._keys:
            return True
        if self._may_fetch(self._clock()):
            try:
                await self._refresh()
            except _FetchFailed:
                return False
        return bool(self._keys)

    def _may_fetch(self, now: float) -> bool:
        return (
            self._inflight is not None
            or self._attempted_at is None
            or now - self._attempted_at >= self._cooldown
        )

    async def _refresh(self) -> None:
        """Fetch the key set, joining a fetch already in flight."""
        if self._inflight is None:
            self._attempted_at = self._clock()
            task = asyncio.get_running_loop().create_task(self._fetch())
            task.add_done_callback(self._fetch_done)
            self._inflight = task
        await asyncio.shield(self._inflight)

    def _fetch_done(self, task: asyncio.Task[None]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            # Marks the exception as retrieved even when every waiter was cancelled.
            task.exception()

    async def _fetch(self) -> None:
        try:
            await self._fetch_key_set()
        except BaseException:
            self._last_failed = True
            raise
        self._last_failed = False

    async def _fetch_key_set(self) -> None:
        if self._jwks_uri is None:
            document = await self._get_json(self._discovery_url)
            jwks_uri = document.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
                raise _FetchFailed("discovery document has no usable jwks_uri")
            self._jwks_uri = jwks_uri
        keys = _parse_key_set(await self._get_json(self._jwks_uri))
        withdrawn = _withdrawn(self._keys, keys)
        self._keys = keys
        self._fetched_at = self._clock()
        logger.info("fetched %d signing keys", len(keys))
        if withdrawn:
            logger.warning("signing keys withdrawn", extra={"kids": sorted(withdrawn)})
            self._notify(withdrawn)

    def _notify(self, withdrawn: frozenset[str]) -> None:
        for listener in self._listeners:
            try:
                listener(withdrawn)
            except Exception:
                # One broken listener must not stop the others nor fail the fetch itself.
                logger.exception("a withdrawn-keys listener failed")

    async def _get_json(self, url: str) -> Mapping[str, Any]:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("identity provider request failed: %s", type(exc).__name__)
            raise _FetchFailed(str(exc)) from exc
        if not isinstance(body, dict):
            raise _FetchFailed("expected a JSON object")
        return body


def _withdrawn(old: Mapping[str, SigningKey], new: Mapping[str, SigningKey]) -> frozenset[str]:
    """The kids of old that new lacks or binds to other key material (RFC 7638 thumbprint)."""
    return frozenset(
        kid
        for kid, key in old.items()
        if kid not in new or new[kid].thumbprint() != key.thumbprint()
    )


def _parse_key_set(document: Mapping[str, Any]) -> dict[str, SigningKey]:
    """The usable signing keys of a JWKS document, by kid."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise _FetchFailed("JWKS document has no keys list")
    keys: dict[str, SigningKey] = {}
    for entry in entries:
        key = _parse_key(entry)
        if key is not None and key.kid is not None:
            keys[key.kid] = key
    return keys


def _parse_key(entry: object) -> SigningKey | None:
    if not isinstance(entry, dict):
        return None
    key_type = _KEY_TYPES.get(str(entry.get("kty")))
    if key_type is None or not isinstance(entry.get("kid"), str):
        return None
    if entry.get("use", "sig") != "sig":
        return None
    public = {name: value for name, value in entry.items() if name not in _PRIVATE_MEMBERS}
    try:
        return key_type.import_key(public)
    except (JoseError, ValueError, TypeError):
        logger.warning("ignoring an unusable key in the key set (kid %s)", entry.get("kid"))
        return None
