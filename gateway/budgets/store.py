"""Token budget counters on Redis: reserve an estimate in every budget or none, then settle.

``RedisBudgetStore`` keeps one counter per budget and window. Before a request goes upstream,
one script call checks every budget that applies and, only if each has room for the request's
estimate, adds the estimate to all of them and records a reservation (all or nothing). Once the
answer is in, a second call replaces the estimate with the real cost. A reservation that is never
settled (the process died) is released by the next reservation of any caller after its deadline:
the script sweeps expired reservations first. Counters, reservations and deadlines share the hash
tag ``{tb}``, so the scripts also run on Redis Cluster (in one slot; budgets cost one call per
model request, which is rare next to the request rate limit's traffic).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.budgets.config import BudgetLine

__all__ = ["BudgetUnavailable", "LineState", "RedisBudgetStore", "Reservation"]


class BudgetUnavailable(Exception):
    """Redis could not be reached to reserve or settle tokens."""


@dataclass(frozen=True, slots=True)
class LineState:
    """One budget after a check: tokens counted in its window and seconds until it resets."""

    line: BudgetLine
    used: int
    reset: float

    @property
    def remaining(self) -> int:
        return max(0, self.line.limit - self.used)


@dataclass(frozen=True, slots=True)
class Reservation:
    """The outcome of a reserve call; ``allowed`` only if every budget had room for ``cost``."""

    id: str
    cost: int
    allowed: bool
    states: tuple[LineState, ...]
    keys: tuple[str, ...]
    swept: int = 0

    @property
    def exhausted(self) -> tuple[LineState, ...]:
        """Budgets without room for this request (empty when allowed)."""
        if self.allowed:
            return ()
        return tuple(s for s in self.states if s.used + self.cost > s.line.limit)

    @property
    def retry_after(self) -> int:
        """Seconds (at least 1) until every exhausted budget has reset."""
        return max(1, math.ceil(max((s.reset for s in self.exhausted), default=1.0)))


# KEYS: one counter per budget, then the reservations hash and the deadlines sorted set.
# ARGV: now, reservation id, deadline, cost, then per counter its limit and its TTL.
# Expired reservations are released first; then all counters get the cost, or none does.
# Returns: allowed (1/0), reservations released, then each counter's tokens after the call.
_RESERVE = """
local n = #KEYS - 2
local records, deadlines = KEYS[n + 1], KEYS[n + 2]
local cost = tonumber(ARGV[4])
local expired = redis.call('ZRANGEBYSCORE', deadlines, '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, id in ipairs(expired) do
    local record = redis.call('HGET', records, id)
    if record then
        local amount = nil
        for part in string.gmatch(record, '[^\\n]+') do
            if amount == nil then
                amount = tonumber(part)
            elseif redis.call('EXISTS', part) == 1 then
                if redis.call('DECRBY', part, amount) < 0 then
                    redis.call('SET', part, 0, 'KEEPTTL')
                end
            end
        end
        redis.call('HDEL', records, id)
    end
    redis.call('ZREM', deadlines, id)
end
local used = {}
local allowed = 1
for i = 1, n do
    used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
    if used[i] + cost > tonumber(ARGV[3 + 2 * i]) then
        allowed = 0
    end
end
if allowed == 1 then
    local record = {ARGV[4]}
    for i = 1, n do
        used[i] = redis.call('INCRBY', KEYS[i], cost)
        redis.call('EXPIRE', KEYS[i], ARGV[4 + 2 * i])
        record[#record + 1] = KEYS[i]
    end
    redis.call('HSET', records, ARGV[2], table.concat(record, '\\n'))
    redis.call('ZADD', deadlines, ARGV[3], ARGV[2])
end
local result = {allowed, #expired}
for i = 1, n do
    result[#result + 1] = used[i]
end
return result
"""

# KEYS: the reservation's counters, the reservations hash, the deadlines sorted set.
# ARGV: reservation id, reserved cost, real cost. A reservation still pending is replaced by the
# real cost; one already released (past its deadline) is charged the real cost afresh. Counters
# whose window has ended (key gone) are left alone. Returns 1 when the reservation was pending.
_SETTLE = """
local n = #KEYS - 2
local pending = redis.call('ZREM', KEYS[n + 2], ARGV[1])
redis.call('HDEL', KEYS[n + 1], ARGV[1])
local delta = tonumber(ARGV[3])
if pending == 1 then
    delta = delta - tonumber(ARGV[2])
end
if delta ~= 0 then
    for i = 1, n do
        if redis.call('EXISTS', KEYS[i]) == 1 then
            if redis.call('INCRBY', KEYS[i], delta) < 0 then
                redis.call('SET', KEYS[i], 0, 'KEEPTTL')
            end
        end
    end
end
return pending
"""


class RedisBudgetStore:
    """Budget counters and reservations on Redis, one script call per reserve and per settle."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        reservation_seconds: int = 600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._prefix = f"{prefix}:{{tb}}"
        self._reservation_seconds = reservation_seconds
        self._clock = clock
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)

    def _tail(self) -> list[str]:
        return [f"{self._prefix}:reservations", f"{self._prefix}:deadlines"]

    async def reserve(self, lines: Sequence[BudgetLine], cost: int) -> Reservation:
        """Reserve cost tokens in every budget of lines, or in none. Raises BudgetUnavailable."""
        now = self._clock()
        reservation_id = uuid.uuid4().hex
        keys: list[str] = []
        args: list[str | int | float] = [
            repr(now),
            reservation_id,
            repr(now + self._reservation_seconds),
            cost,
        ]
        resets: list[float] = []
        for line in lines:
            label, _, end = line.window.bounds(now)
            keys.append(f"{self._prefix}:{line.partition}:{line.window}:{label}")
            # Kept past the edge while a reservation made in the window may still settle.
            args += [line.limit, math.ceil(end - now) + self._reservation_seconds]
            resets.append(end - now)
        try:
            reply = await self._reserve(keys=[*keys, *self._tail()], args=args)
        except (RedisError, OSError) as exc:
            raise BudgetUnavailable(type(exc).__name__) from exc
        states = tuple(
            LineState(line, int(reply[2 + i]), resets[i]) for i, line in enumerate(lines)
        )
        return Reservation(reservation_id, cost, bool(reply[0]), states, tuple(keys), int(reply[1]))

    async def settle(self, reservation: Reservation, cost: int) -> bool:
        """Replace the reservation's estimate by the real cost; True when it was still pending
        (False: it had expired and been released, so cost was charged afresh).
        Raises BudgetUnavailable."""
        try:
            pending = await self._settle(
                keys=[*reservation.keys, *self._tail()],
                args=[reservation.id, reservation.cost, cost],
            )
        except (RedisError, OSError) as exc:
            raise BudgetUnavailable(type(exc).__name__) from exc
        return bool(pending)
