"""Validation of the policy file's tables: each function checks one table and returns it typed.

Validation is strict: unknown keys, permissions not declared under ``[permissions]``, unknown or
cyclic role inheritance, malformed or clashing route templates and unparsable rate limits are
errors. Every error is a ``PolicyError`` whose message says where.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from limits import parse_many

from gateway.budgets.config import BudgetConfig, BudgetConfigError
from gateway.policy.route_trie import PLACEHOLDER, RouteRule, Upstream, segments

__all__ = ["PolicyError", "PolicyTables", "RateLimitConfig", "validate"]

_PERMISSION = re.compile(r"^[a-z][a-z-]*:[a-z][a-z-]*(:[a-z][a-z-]*)?$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class PolicyError(ValueError):
    """The policy file is invalid; the message says where."""


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Limit strings in the ``limits`` library's syntax (``"120/minute"``)."""

    anonymous: str
    invalid_credentials: str
    tiers: Mapping[str, str]
    llm: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PolicyTables:
    """A policy file's tables, validated; routes of every environment."""

    permissions: dict[str, str]
    roles: dict[str, frozenset[str]]
    routes: list[RouteRule]
    rate_limits: RateLimitConfig
    budgets: BudgetConfig | None


def validate(data: Mapping[str, Any]) -> PolicyTables:
    """Validate a parsed policy file. Raises PolicyError."""
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
    return PolicyTables(permissions, roles, routes, limits, budgets)


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
    optional = {"permission", "public", "llm", "environments", "static"}
    entry = _table(value, where, {"methods", "path", "upstream"}, optional)
    methods = frozenset(m.upper() for m in _strings(entry["methods"], f"{where}.methods"))
    if not methods or not methods <= _METHODS:
        raise PolicyError(f"{where}.methods must be among {sorted(_METHODS)}")
    path = entry["path"]
    if not isinstance(path, str) or not path.startswith("/") or "//" in path:
        raise PolicyError(f"{where}.path must be an absolute path")
    names = [m.group(1) for s in segments(path) if (m := PLACEHOLDER.match(s))]
    if len(names) != len(set(names)) or any(
        "{" in s and not PLACEHOLDER.match(s) for s in segments(path)
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
    static = entry.get("static", False)
    if not isinstance(static, bool):
        raise PolicyError(f"{where}.static must be a boolean")
    if static and (not public or upstream is not Upstream.GATEWAY or methods - {"GET", "HEAD"}):
        raise PolicyError(f"{where}: static routes are public GET/HEAD routes of the gateway")
    return RouteRule(methods, path, permission, public, upstream, llm, environments, static)


def _check_clashes(routes: Iterable[RouteRule]) -> None:
    """Two rules clash when a method and the same template shape appear in both."""
    seen: dict[tuple[str, str], str] = {}
    for rule in routes:
        shape = "/".join("{}" if PLACEHOLDER.match(s) else s for s in segments(rule.path))
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
