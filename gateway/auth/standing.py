"""A person's (or service account's) standing in Keycloak: enabled, and which realm roles.

API keys act for their owner, so a key may never do more than its owner may do *now*: the
API-key authenticator intersects a key's granted roles with its owner's current roles and refuses
the keys of a disabled or deleted owner. The standing comes from Keycloak's admin API and is kept:

* in Redis (``<prefix>standing:<sub>``), shared by every replica, treated as fresh for
  ``fresh_seconds`` and kept as a fallback for ``keep_seconds``;
* in each process for ``cache_seconds``, so a busy key costs no round trip per request.

Any change to the person (``forget``, called by the revoker for gateway actions, back-channel
logouts and Keycloak's admin events) deletes the Redis entry, so the next request reads Keycloak
again; other replicas follow within ``cache_seconds``. When Keycloak cannot be reached, a stored
standing past its freshness is still used (it was deleted if anything about the person changed
since); with none stored the request fails closed with ``DependencyUnavailable`` (503).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.errors import DependencyUnavailable, GatewayError

__all__ = ["OwnerStandings", "Standing", "StandingSource", "stored_standing"]

MAX_CACHED = 100_000


@dataclass(frozen=True, slots=True)
class Standing:
    """What Keycloak says of one account now; ``exists`` is False once it was deleted."""

    exists: bool
    enabled: bool
    roles: frozenset[str]

    @property
    def may_act(self) -> bool:
        return self.exists and self.enabled


GONE = Standing(exists=False, enabled=False, roles=frozenset())


class StandingSource(Protocol):
    """Reads a standing from the identity provider (``KeycloakAdminClient.standing``).

    Returns ``GONE`` for an unknown account; raises DependencyUnavailable when it cannot tell.
    """

    async def standing(self, subject: str) -> Standing: ...


class OwnerStandings:
    """Standings of API-key owners: process cache, then Redis, then Keycloak."""

    def __init__(
        self,
        redis: Redis,
        source: StandingSource,
        *,
        prefix: str = "mro:",
        fresh_seconds: float = 300.0,
        keep_seconds: int = 86_400,
        cache_seconds: float = 0.5,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._source = source
        self._prefix = f"{prefix}standing:"
        self._fresh = fresh_seconds
        self._keep = keep_seconds
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, Standing]] = {}

    async def get(self, subject: str) -> Standing:
        """subject's current standing. Raises DependencyUnavailable."""
        now = self._monotonic()
        cached = self._cache.get(subject)
        if cached is not None and cached[0] > now:
            return cached[1]
        standing = await self._shared(subject)
        if self._cache_seconds > 0:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[subject] = (now + self._cache_seconds, standing)
        return standing

    async def forget(self, subject: str) -> None:
        """Drop what is known of subject here and in Redis. Raises DependencyUnavailable."""
        self._cache.pop(subject, None)
        try:
            await self._redis.delete(self._prefix + subject)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("The standing cache is unavailable.") from exc

    async def _shared(self, subject: str) -> Standing:
        key = self._prefix + subject
        try:
            raw = await self._redis.get(key)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("The standing cache is unavailable.") from exc
        stored = _loads(raw)
        if stored is not None and stored[0] > self._clock():
            return stored[1]
        try:
            standing = await self._source.standing(subject)
        except GatewayError:
            if stored is not None:
                return stored[1]  # Keycloak is down; nothing about the person changed since
            raise
        try:
            entry = stored_standing(self._clock() + self._fresh, standing)
            await self._redis.set(key, entry, ex=self._keep)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("The standing cache is unavailable.") from exc
        return standing


def stored_standing(fresh_until: float, standing: Standing) -> str:
    """The Redis value of a standing trusted until fresh_until (seconds since the epoch)."""
    return json.dumps(
        {
            "fresh_until": fresh_until,
            "exists": standing.exists,
            "enabled": standing.enabled,
            "roles": sorted(standing.roles),
        }
    )


def _loads(raw: bytes | str | None) -> tuple[float, Standing] | None:
    """A stored entry; None when absent or unreadable (then Keycloak is asked again)."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        standing = Standing(
            exists=bool(data["exists"]),
            enabled=bool(data["enabled"]),
            roles=frozenset(str(role) for role in data["roles"]),
        )
        return float(data["fresh_until"]), standing
    except (ValueError, KeyError, TypeError):
        return None
