"""Token budgets: how many model tokens a caller may spend per minute, day and month.

The policy's ``[budgets]`` table (``BudgetConfig``) gives each rate-limit tier a budget per caller
(every user, service account and API key has its own), optional pools shared by a whole tier,
overrides for named callers, and cost weights per agent. Windows are calendar windows in UTC (the
minute, the day, the month) that reset at their edge. ``BudgetConfig.lines_for`` names the budgets
a request spends; ``gateway.budgets.store`` counts them on Redis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from gateway.identity import AuthMethod, Identity

__all__ = [
    "BudgetConfig",
    "BudgetConfigError",
    "BudgetLine",
    "Window",
    "caller_kind",
]

# The orchestrator refuses larger max_tokens values.
MAX_COMPLETION_TOKENS = 16_384


class BudgetConfigError(ValueError):
    """The ``[budgets]`` table is invalid; the message says where."""


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
