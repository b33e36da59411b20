"""Revoked Keycloak sessions: a Redis set of ``sid`` values that bearer tokens are checked against.

When Keycloak ends a session (back-channel logout, or a logout through the gateway), its access
tokens stay cryptographically valid until they expire. ``revoke(sid)`` remembers the sid for the
longest access-token lifetime plus the verification leeway, after which no token of that session
can verify anyway. ``is_revoked`` is the ``revoked`` callable of ``BearerAuthenticator``.

Each process remembers a negative answer (``sid`` not revoked) for ``cache_seconds``, which spares
a Redis round trip per request at the price of other replicas noticing a revocation up to that
many seconds late; the process that receives the revocation forgets its entry at once. Redis
errors become ``DependencyUnavailable`` (503): a revocation that cannot be checked fails closed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.errors import DependencyUnavailable
from gateway.identity import Identity

__all__ = ["RevocationStore"]

MAX_CACHED = 100_000


class RevocationStore:
    """The sid revocation set in Redis, with a short in-process negative cache."""

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_seconds: int,
        cache_seconds: float = 1.0,
        prefix: str = "mro:",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._cache_seconds = cache_seconds
        self._prefix = f"{prefix}revoked-sid:"
        self._monotonic = monotonic
        self._not_revoked: dict[str, float] = {}

    async def revoke(self, sid: str) -> None:
        """Add sid to the set for ``ttl_seconds``. Raises DependencyUnavailable."""
        self._not_revoked.pop(sid, None)
        try:
            await self._redis.set(self._prefix + sid, b"1", ex=self._ttl)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("The revocation set is unavailable.") from exc

    async def is_revoked(self, identity: Identity) -> bool:
        """True when identity's Keycloak session was revoked. Raises DependencyUnavailable."""
        sid = identity.session_id
        if not sid:
            return False
        now = self._monotonic()
        until = self._not_revoked.get(sid)
        if until is not None and until > now:
            return False
        try:
            revoked = bool(await self._redis.exists(self._prefix + sid))
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("The revocation set is unavailable.") from exc
        if revoked:
            self._not_revoked.pop(sid, None)
        elif self._cache_seconds > 0:
            if len(self._not_revoked) >= MAX_CACHED:
                self._not_revoked = {s: t for s, t in self._not_revoked.items() if t > now}
                if len(self._not_revoked) >= MAX_CACHED:
                    self._not_revoked.clear()
            self._not_revoked[sid] = now + self._cache_seconds
        return revoked
