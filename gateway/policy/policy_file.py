"""The authorisation policy: roles grant permissions, routes require one. Deny by default.

The policy is a TOML file (the packaged ``gateway/policy/policy.toml`` unless a path is given),
validated strictly at load (``gateway.policy.schema``): unknown keys, permissions not declared under
``[permissions]``, unknown or cyclic role inheritance, clashing route templates and unparsable rate
limits are errors. Routes are matched by a trie of path segments (``gateway.policy.route_trie``).
"""

from __future__ import annotations

import importlib.resources
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from limits import parse_many

from gateway.budgets.config import BudgetConfig
from gateway.policy.route_trie import RouteMatch, RouteRule, RouteTrie, Upstream
from gateway.policy.schema import PolicyError, RateLimitConfig, validate

__all__ = [
    "MatrixRow",
    "Policy",
    "PolicyError",
    "RateLimitConfig",
    "RouteMatch",
    "RouteRule",
    "Upstream",
]


@dataclass(frozen=True, slots=True)
class MatrixRow:
    """One permission and the roles that hold it (directly or inherited)."""

    permission: str
    description: str
    roles: frozenset[str]


class Policy:
    """Roles, permissions, routes and rate limits, loaded from one validated file."""

    def __init__(
        self,
        permissions: Mapping[str, str],
        role_permissions: Mapping[str, frozenset[str]],
        routes: Iterable[RouteRule],
        rate_limits: RateLimitConfig,
        *,
        environment: str | None = None,
        budgets: BudgetConfig | None = None,
    ) -> None:
        self.permissions = dict(permissions)
        self.roles = dict(role_permissions)
        self.routes = tuple(routes)
        self.rate_limits = rate_limits
        # Token budgets of LLM routes (gateway.budgets.config); None: no [budgets] table, no
        # budgets.
        self.budgets = budgets
        self._tier_rank = _rank_tiers(rate_limits.tiers)
        self._trie = RouteTrie()
        for rule in self.routes:
            if rule.environments is None or environment in rule.environments:
                self._trie.add(rule)

    @classmethod
    def load(cls, path: Path | None = None, *, environment: str | None = None) -> Policy:
        """Load and validate a policy file (None: the packaged ``policy.toml``).

        Routes limited to some ``environments`` are kept only when environment is one of them.
        Raises PolicyError when the file is invalid.
        """
        if path is None:
            text = (
                importlib.resources.files("gateway.policy")
                .joinpath("policy.toml")
                .read_text("utf-8")
            )
        else:
            text = path.read_text("utf-8")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"policy is not valid TOML: {exc}") from exc
        return cls.from_dict(data, environment=environment)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, environment: str | None = None) -> Policy:
        """Validate parsed TOML and build the policy. Raises PolicyError."""
        tables = validate(data)
        return cls(
            tables.permissions,
            tables.roles,
            tables.routes,
            tables.rate_limits,
            environment=environment,
            budgets=tables.budgets,
        )

    def permissions_for(self, roles: Iterable[str]) -> frozenset[str]:
        """Every permission the roles grant, inheritance included; unknown roles grant nothing."""
        granted: set[str] = set()
        for role in roles:
            granted |= self.roles.get(role, frozenset())
        return frozenset(granted)

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The rule for method and path, or None when no rule allows that method there."""
        return self._trie.match(method, path)

    def allowed_methods(self, path: str) -> set[str]:
        """Methods some rule allows on path (empty: the path is unknown). For 405 answers."""
        return self._trie.allowed_methods(path)

    def tier_for(self, roles: Iterable[str]) -> str | None:
        """The rate-limit tier of the caller: its role with the most generous limit."""
        ranked = [(self._tier_rank[role], role) for role in roles if role in self._tier_rank]
        return max(ranked)[1] if ranked else None

    def policy_matrix(self) -> list[MatrixRow]:
        """Each declared permission with the roles holding it, in declaration order."""
        return [
            MatrixRow(
                permission,
                description,
                frozenset(role for role, granted in self.roles.items() if permission in granted),
            )
            for permission, description in self.permissions.items()
        ]


def _rank_tiers(tiers: Mapping[str, str]) -> dict[str, float]:
    rank: dict[str, float] = {}
    for role, text in tiers.items():
        item = parse_many(text)[0]
        rank[role] = float(item.amount) / float(item.get_expiry())
    return rank
