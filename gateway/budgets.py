"""Token budgets: how many model tokens a caller may spend per minute, day and month.

The policy's ``[budgets]`` table (``BudgetConfig``) gives each rate-limit tier a budget per caller
(every user, service account and API key has its own), optional pools shared by a whole tier,
overrides for named callers, and cost weights per agent. Windows are calendar windows in UTC (the
minute, the day, the month) that reset at their edge.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.identity import AuthMethod, Identity

__all__ = [
    "BudgetConfig",
    "BudgetConfigError",
    "BudgetLine",
    "BudgetUnavailable",
    "LineState",
    "RedisBudgetStore",
    "Reservation",
    "Window",
    "caller_kind",
]

# The orchestrator refuses larger max_tokens values.
MAX_COMPLETION_TOKENS = 16_384


class BudgetConfigError(ValueError):
    """The ``[budgets]`` table is invalid; the message says where."""


class BudgetUnavailable(Exception):
    """Redis could not be reached to reserve or settle tokens."""


class Window(StrEnum):
    """A calendar window in UTC; budgets reset at its edge."""

    MINUTE = "minute"
    DAY = "day"
    MONTH = "month"

    def bounds(self, now: float) -> tuple[str, float, float]:
        """The window holding now: its label (part of the key), start and end (epoch seconds)."""
        if self is Window.MINUTE:
            start = now - now % 60
            return str(int(start) // 60), start, start + 60
        moment = datetime.fromtimestamp(now, UTC)
        if self is Window.DAY:
            begin = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
            return begin.strftime("%Y%m%d"), begin.timestamp(), (begin + timedelta(1)).timestamp()
        begin = datetime(moment.year, moment.month, 1, tzinfo=UTC)
        following = datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=UTC)
        return begin.strftime("%Y%m"), begin.timestamp(), following.timestamp()


def caller_kind(identity: Identity) -> str:
    """``user``, ``service`` (client credentials) or ``api_key``: whose budget a call spends."""
    if identity.method is AuthMethod.API_KEY:
        return "api_key"
    if identity.method is AuthMethod.CLIENT_CREDENTIALS:
        return "service"
    return "user"


def _selectors(identity: Identity) -> list[str]:
    """Names an override in ``[budgets.callers]`` may use for identity."""
    kind = caller_kind(identity)
    if kind == "api_key":
        return [f"api_key:{identity.api_key_id}"] if identity.api_key_id else []
    if kind == "service":
        return [f"client:{identity.client_id}"] if identity.client_id else []
    return [f"user:{identity.username}"] if identity.username else []


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One budget that applies to a request: whose (partition), which window, how many tokens."""

    scope: str  # user, service, api_key, or tier (a pool shared by a whole tier)
    partition: str  # e.g. "user:<sub>" or "tier:technician"
    window: Window
    limit: int

    @property
    def name(self) -> str:
        """How responses name the budget: ``user:day``, ``tier:month``."""
        return f"{self.scope}:{self.window}"


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """The ``[budgets]`` table of the policy, validated."""

    tiers: Mapping[str, Mapping[Window, int]] = field(default_factory=dict)
    pools: Mapping[str, Mapping[Window, int]] = field(default_factory=dict)
    callers: Mapping[str, Mapping[Window, int]] = field(default_factory=dict)
    agent_weights: Mapping[str, float] = field(default_factory=dict)
    default_max_tokens: int = 1024
    prompt_overhead_tokens: int = 2000
    chars_per_token: int = 4
    reservation_seconds: int = 600
    warn_ratio: float = 0.8
    fail_open: bool = False

    @classmethod
    def from_dict(cls, value: object, roles: Iterable[str]) -> BudgetConfig:
        """Validate the parsed ``[budgets]`` table. Raises BudgetConfigError."""
        table = _table(value, "budgets", _SETTINGS | {"tiers", "pools", "callers", "agents"})
        known = set(roles)
        tiers = _quota_tables(table.get("tiers", {}), "budgets.tiers", known)
        pools = _quota_tables(table.get("pools", {}), "budgets.pools", known)
        callers = _quota_tables(table.get("callers", {}), "budgets.callers", None)
        for selector in callers:
            if selector.partition(":")[0] not in ("user", "client", "api_key"):
                raise BudgetConfigError(
                    f"budgets.callers.{selector}: name callers as user:<username>, "
                    "client:<client id> or api_key:<key id>"
                )
        weights: dict[str, float] = {}
        for agent, spec in _table(table.get("agents", {}), "budgets.agents", None).items():
            weight = _table(spec, f"budgets.agents.{agent}", {"weight"}).get("weight", 1.0)
            if not isinstance(weight, int | float) or isinstance(weight, bool) or weight <= 0:
                raise BudgetConfigError(f"budgets.agents.{agent}.weight must be a number > 0")
            weights[agent] = float(weight)
        redis_down = table.get("redis_down", "refuse")
        if redis_down not in ("refuse", "allow"):
            raise BudgetConfigError("budgets.redis_down must be 'refuse' or 'allow'")
        warn = _integer(table.get("warn_at_percent", 80), "budgets.warn_at_percent", 1, 100)
        return cls(
            tiers=tiers,
            pools=pools,
            callers=callers,
            agent_weights=weights,
            default_max_tokens=_integer(
                table.get("default_max_tokens", 1024),
                "budgets.default_max_tokens",
                1,
                MAX_COMPLETION_TOKENS,
            ),
            prompt_overhead_tokens=_integer(
                table.get("prompt_overhead_tokens", 2000), "budgets.prompt_overhead_tokens", 0
            ),
            chars_per_token=_integer(
                table.get("chars_per_token", 4), "budgets.chars_per_token", 1, 16
            ),
            reservation_seconds=_integer(
                table.get("reservation_seconds", 600), "budgets.reservation_seconds", 10, 86_400
            ),
            warn_ratio=warn / 100,
            fail_open=redis_down == "allow",
        )

    def lines_for(self, identity: Identity, tier: str | None) -> tuple[BudgetLine, ...]:
        """The budgets a request of identity (in tier) spends: its own, then its tier's pool."""
        kind = caller_kind(identity)
        own = dict(self.tiers.get(tier, {})) if tier is not None else {}
        for selector in _selectors(identity):
            own.update(self.callers.get(selector, {}))
        partition = f"{kind}:{identity.subject}"
        lines = [BudgetLine(kind, partition, window, limit) for window, limit in own.items()]
        if tier is not None:
            pool = self.pools.get(tier, {})
            lines += [BudgetLine("tier", f"tier:{tier}", w, limit) for w, limit in pool.items()]
        return tuple(lines)

    def weight(self, agent: str | None) -> float:
        """The cost weight of agent's tokens (1 when the policy names none)."""
        return self.agent_weights.get(agent, 1.0) if agent else 1.0

    def reserve_weight(self, agent: str | None, permissions: Iterable[str]) -> float:
        """The weight to reserve at: agent's when the request names one, else the dearest agent
        the caller may use (the orchestrator's classifier picks the agent after forwarding)."""
        if agent:
            return self.weight(agent)
        allowed = [
            p.removeprefix("agents:use:") for p in permissions if p.startswith("agents:use:")
        ]
        return max((self.weight(name) for name in allowed), default=1.0)

    def estimate(self, content_chars: int, max_tokens: int) -> int:
        """Unweighted tokens a request may cost: its text, the prompt overhead and its answer."""
        prompt = math.ceil(content_chars / self.chars_per_token) + self.prompt_overhead_tokens
        return prompt + max_tokens


_SETTINGS = {
    "default_max_tokens",
    "prompt_overhead_tokens",
    "chars_per_token",
    "reservation_seconds",
    "warn_at_percent",
    "redis_down",
}
_WINDOW_KEYS = {f"per_{window}": window for window in Window}


def _table(value: object, where: str, allowed: set[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BudgetConfigError(f"{where} must be a table")
    unknown = sorted(value.keys() - allowed) if allowed is not None else []
    if unknown:
        raise BudgetConfigError(f"{where}: unknown {unknown}")
    return value


def _integer(value: object, where: str, low: int, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise BudgetConfigError(f"{where} must be an integer >= {low}")
    if high is not None and value > high:
        raise BudgetConfigError(f"{where} must be at most {high}")
    return value


def _quota_tables(
    value: object, where: str, known: set[str] | None
) -> dict[str, dict[Window, int]]:
    tables: dict[str, dict[Window, int]] = {}
    for name, spec in _table(value, where, known).items():
        entries = _table(spec, f"{where}.{name}", set(_WINDOW_KEYS))
        tables[name] = {
            _WINDOW_KEYS[key]: _integer(limit, f"{where}.{name}.{key}", 1)
            for key, limit in entries.items()
        }
    return tables


# --- Redis ------------------------------------------------------------------------------------


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
