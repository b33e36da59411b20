"""The Redis limiter: every applicable limit checked and counted in one atomic script call.

Each limit keeps a moving window as a Redis list of hit timestamps, newest first, trimmed to the
limit's amount and expiring with its window (the layout of the ``limits`` library's moving
window). One ``EVALSHA`` per request checks all of the request's limits and counts the hit in all
of them only if each has room, and returns what is left, so the response fields need no second
round trip. The keys of one request share a hash tag (``{caller}``), so the script also runs on
Redis Cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.ratelimit import Decision, Limit, LimiterUnavailable, Usage

__all__ = ["STRATEGY", "RedisWindowLimiter"]

STRATEGY = "moving-window"

# KEYS: one list per limit. ARGV: now, cost, then amount and window per key.
# Returns: allowed (1/0), then per key the count inside the window and the seconds until the
# oldest counted hit leaves it (a string: Redis would truncate a Lua number to an integer).
_SCRIPT = """
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local counts = {}
local allowed = 1
for i = 1, #KEYS do
    local amount = tonumber(ARGV[1 + 2 * i])
    local floor = now - tonumber(ARGV[2 + 2 * i])
    local low, high, inside = 0, redis.call('LLEN', KEYS[i]) - 1, 0
    while low <= high do
        local mid = math.floor((low + high) / 2)
        local stamp = tonumber(redis.call('LINDEX', KEYS[i], mid))
        if stamp and stamp > floor then
            inside = mid + 1
            low = mid + 1
        else
            high = mid - 1
        end
    end
    counts[i] = inside
    if inside + cost > amount then
        allowed = 0
    end
end
local result = {allowed}
for i = 1, #KEYS do
    local amount = tonumber(ARGV[1 + 2 * i])
    local window = tonumber(ARGV[2 + 2 * i])
    if allowed == 1 then
        for _ = 1, cost do
            redis.call('LPUSH', KEYS[i], ARGV[1])
        end
        redis.call('LTRIM', KEYS[i], 0, amount - 1)
        redis.call('EXPIRE', KEYS[i], math.ceil(window))
        counts[i] = counts[i] + cost
    end
    local reset = 0
    if counts[i] > 0 then
        local oldest = tonumber(redis.call('LINDEX', KEYS[i], counts[i] - 1))
        if oldest then
            -- Clients stamp their own hits, so a racing one may be a little newer than now.
            reset = math.min(window, math.max(0, oldest + window - now))
        end
    end
    result[#result + 1] = counts[i]
    result[#result + 1] = tostring(reset)
end
return result
"""


class RedisWindowLimiter:
    """Moving-window limits on Redis, one round trip per check."""

    def __init__(
        self, redis: Redis, namespace: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._clock = clock
        self._script = redis.register_script(_SCRIPT)
        self._keys: dict[tuple[str, Limit], str] = {}

    def _key(self, key: str, limit: Limit) -> str:
        cached = self._keys.get((key, limit))
        if cached is None:
            # Bounded: forget everything rather than grow with every caller ever seen.
            if len(self._keys) > 65_536:
                self._keys.clear()
            cached = self._keys[(key, limit)] = (
                f"{self._namespace}:{limit.name}:{limit.amount}/{limit.window}:{{{key}}}"
            )
        return cached

    async def hit(self, key: str, limits: Sequence[Limit], cost: int = 1) -> Decision:
        """Count one hit against every limit (or none); raises LimiterUnavailable."""
        now = self._clock()
        args: list[str | int] = [repr(now), cost]
        for limit in limits:
            args += [limit.amount, limit.window]
        try:
            reply = await self._script(keys=[self._key(key, limit) for limit in limits], args=args)
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(type(exc).__name__) from exc
        usages = tuple(
            Usage(limit, limit.amount - int(reply[1 + 2 * i]), float(reply[2 + 2 * i]))
            for i, limit in enumerate(limits)
        )
        return Decision(bool(reply[0]), usages)
