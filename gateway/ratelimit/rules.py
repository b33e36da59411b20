"""Rate limiting: which limits apply to a request, the limiter seam, and the response fields.

A request is checked against one or two limits in a single call to a ``Limiter``:

* unauthenticated (public routes): ``anonymous`` per client IP;
* authenticated: the caller's tier (``policy.tier_for(roles)``) per identity, plus the tier's
  ``llm`` limit on routes marked ``llm``. A caller without a tier gets ``anonymous`` per identity.

Invalid credentials count against ``invalid_credentials`` per client IP (see
``gateway.auth.chain``). Counters live under ``<prefix>:<strategy>:<policy digest>:`` so that
changing the strategy or the limits never reuses keys of another layout (Redis would answer
``WRONGTYPE``).

Responses carry the fields of the IETF ``RateLimit`` header draft, one list member per limit::

    RateLimit-Policy: "tier";q=120;w=60, "llm";q=10;w=60
    RateLimit: "tier";r=57;t=23, "llm";r=9;t=41

``r`` is what is left, ``t`` the seconds until the oldest counted request leaves the window
(when the quota next grows). A 429 adds ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from limits import RateLimitItem, parse

from gateway.identity import Identity

__all__ = [
    "Decision",
    "ExceededLog",
    "Limit",
    "Limiter",
    "LimiterUnavailable",
    "RateLimitRules",
    "Usage",
    "namespace",
    "policy_header",
    "state_header",
]


class LimiterUnavailable(Exception):
    """The limiter's storage could not be reached; the caller falls back."""


@dataclass(frozen=True, slots=True)
class Limit:
    """A named quota: ``amount`` requests per ``window`` seconds."""

    name: str
    item: RateLimitItem

    @classmethod
    def parse(cls, name: str, text: str) -> Limit:
        return cls(name, parse(text))

    @property
    def amount(self) -> int:
        return int(self.item.amount)

    @property
    def window(self) -> int:
        return int(self.item.get_expiry())


@dataclass(frozen=True, slots=True)
class Usage:
    """One limit's state after a check: requests left and seconds until the quota grows."""

    limit: Limit
    remaining: int
    reset: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one check: allowed only if every limit had room."""

    allowed: bool
    usages: tuple[Usage, ...]

    @property
    def retry_after(self) -> int:
        """Seconds (at least 1) until every exhausted limit has room again."""
        waits = [u.reset for u in self.usages if u.remaining <= 0]
        return max(1, math.ceil(max(waits, default=1.0)))

    @property
    def exhausted(self) -> tuple[str, ...]:
        return tuple(u.limit.name for u in self.usages if u.remaining <= 0)


class Limiter(Protocol):
    """Counts a hit against every limit at once (all or none) and reports what is left."""

    async def hit(self, key: str, limits: Sequence[Limit]) -> Decision:
        """Raises LimiterUnavailable when the storage cannot be reached."""
        ...


def namespace(prefix: str, strategy: str, limits_config: Sequence[str]) -> str:
    """The key prefix for one strategy and one set of limits."""
    digest = hashlib.sha256("\n".join(limits_config).encode()).hexdigest()[:12]
    return f"{prefix}:{strategy}:{digest}"


def policy_header(limits: Sequence[Limit]) -> str:
    """The ``RateLimit-Policy`` field for limits."""
    return ", ".join(f'"{limit.name}";q={limit.amount};w={limit.window}' for limit in limits)


def state_header(decision: Decision) -> str:
    """The ``RateLimit`` field for a decision."""
    return ", ".join(
        f'"{u.limit.name}";r={max(0, u.remaining)};t={max(0, math.ceil(u.reset))}'
        for u in decision.usages
    )


class RateLimitRules:
    """The policy's limit strings, parsed once, and which of them apply to a request."""

    def __init__(
        self,
        anonymous: str,
        invalid_credentials: str,
        tiers: dict[str, str],
        llm: dict[str, str],
        tier_for: _TierFor,
    ) -> None:
        self.anonymous = (Limit.parse("anonymous", anonymous),)
        self.invalid_credentials = Limit.parse("invalid-credentials", invalid_credentials)
        self._tier_for = tier_for
        self._tiers: dict[frozenset[str], str | None] = {}
        self._plain: dict[str | None, tuple[Limit, ...]] = {None: self.anonymous}
        self._llm: dict[str | None, tuple[Limit, ...]] = {None: self.anonymous}
        for tier, text in tiers.items():
            own = Limit.parse("tier", text)
            self._plain[tier] = (own,)
            extra = (Limit.parse("llm", llm[tier]),) if tier in llm else ()
            self._llm[tier] = (own, *extra)
        self.config = [
            anonymous,
            invalid_credentials,
            *(f"tier.{k}={v}" for k, v in sorted(tiers.items())),
            *(f"llm.{k}={v}" for k, v in sorted(llm.items())),
        ]
        self._policy_fields = {
            limits: policy_header(limits) for limits in {*self._plain.values(), *self._llm.values()}
        }

    def for_identity(self, identity: Identity, llm: bool) -> tuple[str, tuple[Limit, ...]]:
        """Counter key and limits for an authenticated request."""
        roles = identity.roles
        if roles in self._tiers:
            tier = self._tiers[roles]
        else:
            tier = self._tiers[roles] = self._tier_for(roles)
        table = self._llm if llm else self._plain
        return "sub:" + identity.subject, table.get(tier, self.anonymous)

    def for_client(self, client_ip: str) -> tuple[str, tuple[Limit, ...]]:
        """Counter key and limits for an unauthenticated request."""
        return "ip:" + client_ip, self.anonymous

    def policy_field(self, limits: tuple[Limit, ...]) -> str:
        """``RateLimit-Policy`` for limits, computed once per combination."""
        field = self._policy_fields.get(limits)
        if field is None:
            field = self._policy_fields[limits] = policy_header(limits)
        return field


class _TierFor(Protocol):
    def __call__(self, roles: frozenset[str]) -> str | None: ...


class ExceededLog:
    """Remembers which callers were told 429 recently, so one burst makes one audit event."""

    def __init__(self, clock: Callable[[], float], max_entries: int = 100_000) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._until: dict[str, float] = {}

    def first_in_window(self, key: str, retry_after: float) -> bool:
        """True when key was not refused during its current window (and note that it was)."""
        now = self._clock()
        if self._until.get(key, 0.0) > now:
            return False
        if len(self._until) >= self._max_entries:
            self._until = {k: t for k, t in self._until.items() if t > now}
            if len(self._until) >= self._max_entries:
                self._until.clear()
        self._until[key] = now + retry_after
        return True
