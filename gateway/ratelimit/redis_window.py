"""The Redis limiter: every applicable limit checked and counted in one atomic script call.

Each limit keeps a moving window as a Redis list of hit timestamps, newest first, trimmed to the
limit's amount and expiring with its window (the layout of the ``limits`` library's moving
window). One ``EVALSHA`` per request checks all of the request's limits and counts the hit in all
of them only if each has room, and returns what is left, so the response fields need no second
round trip. The keys of one request share a hash tag (``{caller}``), so the script also runs on
Redis Cluster.

Requests that reach the limiter in the same turn of the event loop share that round trip: their
script calls go to Redis as one pipeline (one pooled connection, one write, one read), each call
still atomic on its own. Under load this spares most of redis-py's cost per command; a lone
request goes out as a plain ``EVALSHA`` one loop turn later.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from gateway.ratelimit.rules import Decision, Limit, LimiterUnavailable, Usage

__all__ = ["STRATEGY", "RedisWindowLimiter"]

STRATEGY = "moving-window"

# KEYS: one list per limit. ARGV: now, cost, then amount and window per key.
# Returns one string of space-separated fields (one bulk reply is cheaper to read than an array;
# and Redis would truncate a Lua number to an integer): allowed (1/0), then per key the count
# inside the window and the seconds until the oldest counted hit leaves it.
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
return table.concat(result, ' ')
"""


_Pending = tuple[Sequence[bytes], Sequence[bytes], "asyncio.Future[Any]"]


class _Call(NamedTuple):
    """What stays the same between one caller's checks: keys, amounts and windows encoded."""

    keys: tuple[bytes, ...]
    tail: tuple[bytes, ...]
    amounts: tuple[int, ...]


class _BatchedScript:
    """Runs one Lua script for every caller of one event-loop turn in a single pipeline."""

    def __init__(self, redis: Redis, script: str) -> None:
        self._redis = redis
        self._script = script
        self._sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
        self._pending: list[_Pending] = []
        # The sending tasks, held until done (the event loop keeps only weak references).
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: Sequence[bytes], args: Sequence[bytes]) -> Any:
        """The script's reply; raises what Redis or the connection raised."""
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys, args, future))
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        # A task of its own: a caller that goes away must not cancel the others' round trip.
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            replies = await self._replies(batch)
            again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if again:
                # Redis restarted or its script cache was flushed: load it and run again the
                # calls that did not run (only those: the others have counted their hits).
                await self._redis.script_load(self._script)
                retried = await self._replies([batch[i] for i in again])
                for i, reply in zip(again, retried, strict=True):
                    replies[i] = reply
        except Exception as exc:
            # Every caller gets the error and maps it (LimiterUnavailable).
            replies = [exc] * len(batch)
        except BaseException:
            # Cancelled itself (the loop is closing): nobody may wait for ever.
            for _, _, future in batch:
                future.cancel()
            raise
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _replies(self, batch: list[_Pending]) -> list[Any]:
        if len(batch) == 1:
            keys, args, _ = batch[0]
            try:
                return [await self._redis.evalsha(self._sha, len(keys), *keys, *args)]
            except NoScriptError as exc:
                return [exc]
        pipeline = self._redis.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipeline.evalsha(self._sha, len(keys), *keys, *args)
        return list(await pipeline.execute(raise_on_error=False))


class RedisWindowLimiter:
    """Moving-window limits on Redis, one round trip per check (shared by concurrent checks)."""

    def __init__(
        self, redis: Redis, namespace: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._clock = clock
        self._script = _BatchedScript(redis, _SCRIPT)
        self._calls: dict[tuple[str, tuple[Limit, ...]], _Call] = {}

    def _call(self, key: str, limits: tuple[Limit, ...]) -> _Call:
        """The script's keys and the constant tail of its arguments, built once per caller."""
        cached = self._calls.get((key, limits))
        if cached is None:
            # Bounded: forget everything rather than grow with every caller ever seen.
            if len(self._calls) > 65_536:
                self._calls.clear()
            keys = tuple(
                f"{self._namespace}:{limit.name}:{limit.amount}/{limit.window}:{{{key}}}".encode()
                for limit in limits
            )
            tail: list[bytes] = []
            for limit in limits:
                tail += [str(limit.amount).encode(), str(limit.window).encode()]
            amounts = tuple(limit.amount for limit in limits)
            cached = self._calls[(key, limits)] = _Call(keys, tuple(tail), amounts)
        return cached

    async def hit(self, key: str, limits: Sequence[Limit], cost: int = 1) -> Decision:
        """Count one hit against every limit (or none); raises LimiterUnavailable."""
        limits = tuple(limits)
        call = self._call(key, limits)
        args = (repr(self._clock()).encode(), str(cost).encode(), *call.tail)
        try:
            reply = await self._script(call.keys, args)
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(type(exc).__name__) from exc
        fields = reply.split()
        usages = tuple(
            Usage(limit, amount - int(fields[1 + 2 * i]), float(fields[2 + 2 * i]))
            for i, (limit, amount) in enumerate(zip(limits, call.amounts, strict=True))
        )
        return Decision(int(fields[0]) == 1, usages)
