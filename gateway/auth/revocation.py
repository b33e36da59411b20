"""Revoked credentials in Redis: ended Keycloak sessions (``sid``) and people's "not before".

When Keycloak ends a session, or a person's standing changes (disabled, deleted, signed out
everywhere, a role taken away, a credential reset), access tokens already issued stay
cryptographically valid until they expire. Two kinds of entries close that gap:

* ``revoke(sid)``: one Keycloak session ended; every token carrying that ``sid`` is refused.
* ``revoke_subject(sub, at)``: every token of that person issued at or before ``at`` is refused,
  whatever its session or client (tokens without a ``sid`` included). A token issued in the same
  second as the revocation is refused too (``iat`` has whole seconds); a new one works a second
  later. The entry keeps the latest ``at`` it was given, so replaying an older event is a no-op.

Both are remembered for the longest access-token lifetime plus the verification leeway, after
which no token they cover can verify anyway.

``is_revoked`` is the ``revoked`` callable of ``BearerAuthenticator``: one ``MGET`` of the two
entries that concern a token. Each process remembers the answer for a (subject, session) pair for
``cache_seconds``, which spares a Redis round trip per request at the price of other replicas
noticing a revocation up to that many seconds late; the process that revokes forgets its entries
at once. Redis errors become ``DependencyUnavailable`` (503): a revocation that cannot be checked
fails closed.
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

# KEYS[1]: the subject's entry. ARGV: revoked-at (seconds), ttl. Keeps the later of the two times.
_RAISE_NOT_BEFORE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 1
"""


class RevocationStore:
    """Revoked sessions and per-person not-before times in Redis, with a short process cache."""

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_seconds: int,
        cache_seconds: float = 1.0,
        prefix: str = "mro:",
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._cache_seconds = cache_seconds
        self._sid_prefix = f"{prefix}revoked-sid:"
        self._sub_prefix = f"{prefix}revoked-sub:"
        self._monotonic = monotonic
        self._clock = clock
        self._raise = redis.register_script(_RAISE_NOT_BEFORE)
        # (subject, sid) -> (cached until, sid revoked, subject's not-before or 0.0)
        self._cache: dict[tuple[str, str], tuple[float, bool, float]] = {}

    async def revoke(self, sid: str) -> None:
        """Refuse every token of Keycloak session sid. Raises DependencyUnavailable."""
        self._cache = {k: v for k, v in self._cache.items() if k[1] != sid}
        try:
            await self._redis.set(self._sid_prefix + sid, b"1", ex=self._ttl)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("The revocation set is unavailable.") from exc

    async def revoke_subject(self, subject: str, at: float | None = None) -> float:
        """Refuse subject's tokens issued at or before ``at`` (default: now); returns ``at``.

        Raises DependencyUnavailable.
        """
        when = self._clock() if at is None else at
        self._cache = {k: v for k, v in self._cache.items() if k[0] != subject}
        try:
            await self._raise(keys=[self._sub_prefix + subject], args=[repr(when), self._ttl])
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("The revocation set is unavailable.") from exc
        return when

    async def is_revoked(self, identity: Identity) -> bool:
        """True when identity's session ended or its token predates a revocation of its subject.

        Raises DependencyUnavailable.
        """
        sid = identity.session_id or ""
        key = (identity.subject, sid)
        now = self._monotonic()
        entry = self._cache.get(key)
        if entry is None or entry[0] <= now:
            entry = await self._lookup(identity.subject, sid, now)
        _, sid_revoked, not_before = entry
        if sid_revoked:
            return True
        issued = identity.issued_at
        # A token without iat cannot show it came after the revocation.
        return not_before > 0.0 and (issued is None or issued <= not_before)

    async def _lookup(self, subject: str, sid: str, now: float) -> tuple[float, bool, float]:
        keys = [self._sub_prefix + subject]
        if sid:
            keys.append(self._sid_prefix + sid)
        try:
            values = await self._redis.mget(keys)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("The revocation set is unavailable.") from exc
        not_before = float(values[0]) if values[0] is not None else 0.0
        sid_revoked = len(values) > 1 and values[1] is not None
        entry = (now + self._cache_seconds, sid_revoked, not_before)
        if self._cache_seconds > 0:
            if len(self._cache) >= MAX_CACHED:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
            self._cache[(subject, sid)] = entry
        return entry
