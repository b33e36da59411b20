"""Limiters on the ``limits`` library's storages, and the failover that keeps limiting when Redis
is down.

``LimitsLimiter`` runs any async ``limits`` storage with one of its strategies: the in-process
``MemoryStorage`` is the fallback, and ``RedisStorage(implementation="redispy")`` works too (it
costs a round trip per limit and per statistic, which is why Redis normally goes through
``gateway.ratelimit.redis_window``).

``FailoverLimiter`` answers from the primary limiter while it works. When the primary raises
``LimiterUnavailable`` it switches to the fallback (same limits, counted per process), reports the
outage once, and probes the primary again every ``retry_seconds`` until it answers; requests are
never refused because the limiter's storage is down.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

from limits.aio.storage import Storage
from limits.aio.strategies import (
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.errors import StorageError

from gateway.ratelimit.rules import Decision, Limit, Limiter, LimiterUnavailable, Usage

__all__ = ["FailoverLimiter", "LimitsLimiter"]

logger = logging.getLogger(__name__)

_STRATEGIES: dict[str, Callable[[Storage], RateLimiter]] = {
    "moving-window": MovingWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
}


class LimitsLimiter:
    """Limits checked with a ``limits`` strategy on a ``limits`` storage.

    All-or-none is best effort here: every limit is tested before any is hit, but another request
    may slip in between.
    """

    def __init__(self, storage: Storage, namespace: str, strategy: str = "moving-window") -> None:
        self._limiter: RateLimiter = _STRATEGIES[strategy](storage)
        self._namespace = namespace

    async def hit(self, key: str, limits: Sequence[Limit]) -> Decision:
        """Count one hit against every limit (or none); raises LimiterUnavailable."""
        try:
            return await self._hit(key, limits)
        except (StorageError, OSError, ConnectionError) as exc:
            raise LimiterUnavailable(type(exc).__name__) from exc

    async def _hit(self, key: str, limits: Sequence[Limit]) -> Decision:
        ids = [(self._namespace, limit.name, key) for limit in limits]
        allowed = True
        for limit, ident in zip(limits, ids, strict=True):
            if not await self._limiter.test(limit.item, *ident):
                allowed = False
                break
        if allowed:
            for limit, ident in zip(limits, ids, strict=True):
                allowed = await self._limiter.hit(limit.item, *ident) and allowed
        now = time.time()
        usages = []
        for limit, ident in zip(limits, ids, strict=True):
            stats = await self._limiter.get_window_stats(limit.item, *ident)
            usages.append(Usage(limit, stats.remaining, max(0.0, stats.reset_time - now)))
        return Decision(allowed, tuple(usages))


class FailoverLimiter:
    """The primary limiter while it answers, the fallback while it does not."""

    def __init__(
        self,
        primary: Limiter,
        fallback: Limiter,
        *,
        on_outage: Callable[[str], None],
        on_recovery: Callable[[float], None],
        on_fallback_hit: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        retry_seconds: float = 2.0,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._on_outage = on_outage
        self._on_recovery = on_recovery
        self._on_fallback_hit = on_fallback_hit
        self._clock = clock
        self._retry_seconds = retry_seconds
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._probing = False

    async def hit(self, key: str, limits: Sequence[Limit]) -> Decision:
        """Check with the primary, or with the fallback during an outage; never raises
        LimiterUnavailable."""
        if self._down_since is None:
            try:
                return await self._primary.hit(key, limits)
            except LimiterUnavailable as exc:
                self._enter_outage(str(exc))
        elif not self._probing and self._clock() >= self._retry_at:
            # One request at a time probes the primary; the others keep using the fallback.
            self._probing = True
            try:
                decision = await self._primary.hit(key, limits)
            except LimiterUnavailable:
                self._retry_at = self._clock() + self._retry_seconds
            else:
                self._leave_outage()
                return decision
            finally:
                self._probing = False
        self._on_fallback_hit()
        return await self._fallback.hit(key, limits)

    def _enter_outage(self, reason: str) -> None:
        now = self._clock()
        self._retry_at = now + self._retry_seconds
        if self._down_since is None:
            self._down_since = now
            logger.warning("rate limiter storage unreachable, using the in-process fallback")
            self._on_outage(reason)

    def _leave_outage(self) -> None:
        if self._down_since is not None:
            seconds = max(0.0, self._clock() - self._down_since)
            self._down_since = None
            logger.info(
                "rate limiter storage answers again", extra={"outage_seconds": math.ceil(seconds)}
            )
            self._on_recovery(seconds)
