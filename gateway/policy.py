"""The authorisation policy: roles grant permissions, routes require one. Deny by default.

The policy is a TOML file (the packaged ``gateway/policy.toml`` unless a path is given), validated
strictly at load: unknown keys, permissions not declared under ``[permissions]``, unknown or
cyclic role inheritance, clashing route templates and unparsable rate limits are errors.

Route templates are literal segments and ``{name}`` placeholders, each matching exactly one
non-empty segment. Matching walks a trie of segments, so its cost depends on the path's length,
not on the number of routes; a literal segment wins over a placeholder.
"""

from __future__ import annotations

import importlib.resources
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from limits import parse_many

from gateway.budgets import BudgetConfig, BudgetConfigError

__all__ = [
    "MatrixRow",
    "Policy",
    "PolicyError",
    "RateLimitConfig",
    "RouteMatch",
    "RouteRule",
    "Upstream",
]

_PERMISSION = re.compile(r"^[a-z][a-z-]*:[a-z][a-z-]*(:[a-z][a-z-]*)?$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_PARAM = re.compile(r"^\{([a-z_][a-z0-9_]*)\}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class PolicyError(ValueError):
    """The policy file is invalid; the message says where."""


class Upstream(StrEnum):
    """Who answers a route."""

    ORCHESTRATOR = "orchestrator"
    GATEWAY = "gateway"


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One ``[[routes]]`` entry: a path template, its methods and what it needs."""

    methods: frozenset[str]
    path: str
    permission: str | None
    public: bool
    upstream: Upstream
    llm: bool = False
    # None: every environment; otherwise the rule exists only in these.
    environments: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """A rule that matched a request, with the placeholder values taken from the path."""

    rule: RouteRule
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Limit strings in the ``limits`` library's syntax (``"120/minute"``)."""

    anonymous: str
    invalid_credentials: str
    tiers: Mapping[str, str]
    llm: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class MatrixRow:
    """One permission and the roles that hold it (directly or inherited)."""

    permission: str
    description: str
    roles: frozenset[str]


@dataclass
class _Node:
    literal: dict[str, _Node] = field(default_factory=dict)
    param: _Node | None = None
    # method -> (rule, placeholder names in path order)
    leaf: dict[str, tuple[RouteRule, tuple[str, ...]]] = field(default_factory=dict)


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
        # Token budgets of LLM routes (gateway.budgets); None: no [budgets] table, no budgets.
        self.budgets = budgets
        self._tier_rank = _rank_tiers(rate_limits.tiers)
        self._root = _Node()
        for rule in self.routes:
            if rule.environments is None or environment in rule.environments:
                self._add(rule)

    @classmethod
    def load(cls, path: Path | None = None, *, environment: str | None = None) -> Policy:
        """Load and validate a policy file (None: the packaged ``policy.toml``).

        Routes limited to some ``environments`` are kept only when environment is one of them.
        Raises PolicyError when the file is invalid.
        """
        if path is None:
            text = importlib.resources.files("gateway").joinpath("policy.toml").read_text("utf-8")
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
        _table(
            data,
            "policy",
            {"version", "permissions", "roles", "routes", "rate_limits"},
            {"budgets"},
        )
        if data["version"] != 1:
            raise PolicyError(f"unsupported policy version {data['version']!r}")
        permissions = _permissions(data["permissions"])
        roles = _roles(data["roles"], permissions)
        entries = data["routes"]
        if not isinstance(entries, list):
            raise PolicyError("routes must be a list of tables")
        routes = [_route(entry, f"routes[{n}]", permissions) for n, entry in enumerate(entries)]
        _check_clashes(routes)
        limits = _rate_limits(data["rate_limits"], roles)
        budgets = None
        if "budgets" in data:
            try:
                budgets = BudgetConfig.from_dict(data["budgets"], roles)
            except BudgetConfigError as exc:
                raise PolicyError(str(exc)) from exc
        return cls(permissions, roles, routes, limits, environment=environment, budgets=budgets)

    def permissions_for(self, roles: Iterable[str]) -> frozenset[str]:
        """Every permission the roles grant, inheritance included; unknown roles grant nothing."""
        granted: set[str] = set()
        for role in roles:
            granted |= self.roles.get(role, frozenset())
        return frozenset(granted)

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The rule for method and path, or None when no rule allows that method there."""
        method = method.upper()
        for node, values in self._candidates(path):
            if method in node.leaf:
                rule, names = node.leaf[method]
                return RouteMatch(rule=rule, params=dict(zip(names, values, strict=True)))
        return None

    def allowed_methods(self, path: str) -> set[str]:
        """Methods some rule allows on path (empty: the path is unknown). For 405 answers."""
        return {method for node, _ in self._candidates(path) for method in node.leaf}

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

    def _add(self, rule: RouteRule) -> None:
        node = self._root
        names: list[str] = []
        for segment in _segments(rule.path):
            param = _PARAM.match(segment)
            if param is None:
                node = node.literal.setdefault(segment, _Node())
            else:
                names.append(param.group(1))
                node.param = node.param or _Node()
                node = node.param
        for method in rule.methods:
            node.leaf[method] = (rule, tuple(names))

    def _candidates(self, path: str) -> Iterator[tuple[_Node, list[str]]]:
        """Nodes with rules that path reaches, literal segments before placeholders."""
        if path.startswith("/"):
            yield from _walk(self._root, _segments(path), 0, [])


def _walk(
    node: _Node, segments: list[str], index: int, values: list[str]
) -> Iterator[tuple[_Node, list[str]]]:
    if index == len(segments):
        if node.leaf:
            yield node, values
        return
    segment = segments[index]
    child = node.literal.get(segment)
    if child is not None:
        yield from _walk(child, segments, index + 1, values)
    if node.param is not None and segment not in ("", ".", ".."):
        yield from _walk(node.param, segments, index + 1, [*values, segment])


def _segments(path: str) -> list[str]:
    return [] if path == "/" else path[1:].split("/")


def _rank_tiers(tiers: Mapping[str, str]) -> dict[str, float]:
    rank: dict[str, float] = {}
    for role, text in tiers.items():
        item = parse_many(text)[0]
        rank[role] = float(item.amount) / float(item.get_expiry())
    return rank


# --- validation -------------------------------------------------------------------------------


def _table(
    value: object, where: str, required: set[str], optional: set[str] | None = None
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(f"{where} must be a table")
    missing, unknown = required - value.keys(), value.keys() - required - (optional or set())
    if missing or unknown:
        raise PolicyError(f"{where}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    return value


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyError(f"{where} must be a list of strings")
    return value


def _permissions(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise PolicyError("permissions must be a non-empty table")
    for name, description in value.items():
        if not _PERMISSION.match(name) or not isinstance(description, str):
            raise PolicyError(f"permission {name!r} must be resource:action[:scope] = text")
    return dict(value)


def _roles(value: object, permissions: Mapping[str, str]) -> dict[str, frozenset[str]]:
    if not isinstance(value, dict) or not value:
        raise PolicyError("roles must be a non-empty table")
    direct: dict[str, set[str]] = {}
    parents: dict[str, list[str]] = {}
    for role, spec in value.items():
        where = f"roles.{role}"
        if not _NAME.match(role):
            raise PolicyError(f"{where}: invalid role name")
        spec = _table(spec, where, {"permissions"}, {"inherits"})
        granted = _strings(spec["permissions"], f"{where}.permissions")
        unknown = [p for p in granted if p not in permissions]
        if unknown:
            raise PolicyError(f"{where} grants undeclared permissions {unknown}")
        direct[role] = set(granted)
        parents[role] = _strings(spec.get("inherits", []), f"{where}.inherits")
        missing = [p for p in parents[role] if p not in value]
        if missing:
            raise PolicyError(f"{where} inherits unknown roles {missing}")
    resolved: dict[str, frozenset[str]] = {}

    def resolve(role: str, chain: tuple[str, ...]) -> frozenset[str]:
        if role in chain:
            raise PolicyError(f"role inheritance cycle: {' -> '.join((*chain, role))}")
        if role not in resolved:
            granted = set(direct[role])
            for parent in parents[role]:
                granted |= resolve(parent, (*chain, role))
            resolved[role] = frozenset(granted)
        return resolved[role]

    for role in value:
        resolve(role, ())
    return resolved


def _route(value: object, where: str, permissions: Mapping[str, str]) -> RouteRule:
    optional = {"permission", "public", "llm", "environments"}
    entry = _table(value, where, {"methods", "path", "upstream"}, optional)
    methods = frozenset(m.upper() for m in _strings(entry["methods"], f"{where}.methods"))
    if not methods or not methods <= _METHODS:
        raise PolicyError(f"{where}.methods must be among {sorted(_METHODS)}")
    path = entry["path"]
    if not isinstance(path, str) or not path.startswith("/") or "//" in path:
        raise PolicyError(f"{where}.path must be an absolute path")
    names = [m.group(1) for s in _segments(path) if (m := _PARAM.match(s))]
    if len(names) != len(set(names)) or any(
        "{" in s and not _PARAM.match(s) for s in _segments(path)
    ):
        raise PolicyError(f"{where}.path has malformed or repeated placeholders")
    public, llm, permission = (
        entry.get("public", False),
        entry.get("llm", False),
        entry.get("permission"),
    )
    if not isinstance(public, bool) or not isinstance(llm, bool):
        raise PolicyError(f"{where}: public and llm must be booleans")
    if public == (permission is not None):
        raise PolicyError(f"{where} needs exactly one of public = true or a permission")
    if permission is not None and permission not in permissions:
        raise PolicyError(f"{where} requires undeclared permission {permission!r}")
    try:
        upstream = Upstream(entry["upstream"])
    except ValueError:
        raise PolicyError(
            f"{where}.upstream must be one of {[u.value for u in Upstream]}"
        ) from None
    environments = None
    if "environments" in entry:
        environments = frozenset(_strings(entry["environments"], f"{where}.environments"))
    return RouteRule(methods, path, permission, public, upstream, llm, environments)


def _check_clashes(routes: Iterable[RouteRule]) -> None:
    """Two rules clash when a method and the same template shape appear in both."""
    seen: dict[tuple[str, str], str] = {}
    for rule in routes:
        shape = "/".join("{}" if _PARAM.match(s) else s for s in _segments(rule.path))
        for method in rule.methods:
            if (method, shape) in seen:
                other = seen[method, shape]
                raise PolicyError(f"{method} {rule.path} clashes with {method} {other}")
            seen[method, shape] = rule.path


def _rate_limits(value: object, roles: Mapping[str, frozenset[str]]) -> RateLimitConfig:
    value = _table(value, "rate_limits", {"anonymous", "invalid_credentials", "tiers", "llm"})
    for name in ("anonymous", "invalid_credentials"):
        _limit(value[name], f"rate_limits.{name}")
    tables: list[dict[str, str]] = []
    for table in ("tiers", "llm"):
        entries = _table(value[table], f"rate_limits.{table}", set(), set(roles))
        for role, text in entries.items():
            _limit(text, f"rate_limits.{table}.{role}")
        tables.append(dict(entries))
    return RateLimitConfig(value["anonymous"], value["invalid_credentials"], tables[0], tables[1])


def _limit(text: object, where: str) -> None:
    try:
        ok = isinstance(text, str) and len(parse_many(text)) == 1
    except ValueError:
        ok = False
    if not ok:
        raise PolicyError(f"{where} must be one rate limit such as '60/minute'")
