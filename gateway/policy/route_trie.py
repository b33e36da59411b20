"""Route rules and their matching: a trie of path segments, literal segments before placeholders.

Route templates are literal segments and ``{name}`` placeholders, each matching exactly one
non-empty segment. Matching walks a trie of segments, so its cost depends on the path's length,
not on the number of routes; a literal segment wins over a placeholder, and a placeholder is tried
when the literal branch dead-ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["PLACEHOLDER", "RouteMatch", "RouteRule", "RouteTrie", "Upstream", "segments"]

# One ``{name}`` placeholder segment of a route template.
PLACEHOLDER = re.compile(r"^\{([a-z_][a-z0-9_]*)\}$")


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
    # The web UI's packaged files: public, read-only and stateless, so not rate-limited (a
    # hangar's tablets behind one address load a dozen of them per page).
    static: bool = False


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """A rule that matched a request, with the placeholder values taken from the path."""

    rule: RouteRule
    params: dict[str, str]


def segments(path: str) -> list[str]:
    """The segments of an absolute path or template (none for ``/``)."""
    return [] if path == "/" else path[1:].split("/")


@dataclass
class _Node:
    literal: dict[str, _Node] = field(default_factory=dict)
    param: _Node | None = None
    # method -> (rule, placeholder names in path order)
    leaf: dict[str, tuple[RouteRule, tuple[str, ...]]] = field(default_factory=dict)


class RouteTrie:
    """The rules of one environment, indexed by path segment."""

    def __init__(self) -> None:
        self._root = _Node()

    def add(self, rule: RouteRule) -> None:
        """Index rule under its template; a later rule replaces an earlier one's methods."""
        node = self._root
        names: list[str] = []
        for segment in segments(rule.path):
            param = PLACEHOLDER.match(segment)
            if param is None:
                node = node.literal.setdefault(segment, _Node())
            else:
                names.append(param.group(1))
                node.param = node.param or _Node()
                node = node.param
        for method in rule.methods:
            node.leaf[method] = (rule, tuple(names))

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The rule for method and path, or None when no rule allows that method there."""
        method = method.upper()
        for node, values in self._candidates(path):
            if method in node.leaf:
                rule, names = node.leaf[method]
                return RouteMatch(rule=rule, params=dict(zip(names, values, strict=True)))
        return None

    def allowed_methods(self, path: str) -> set[str]:
        """Methods some rule allows on path (empty: the path is unknown)."""
        return {method for node, _ in self._candidates(path) for method in node.leaf}

    def _candidates(self, path: str) -> Iterator[tuple[_Node, list[str]]]:
        """Nodes with rules that path reaches, literal segments before placeholders."""
        if path.startswith("/"):
            yield from _walk(self._root, segments(path), 0, [])


def _walk(
    node: _Node, parts: list[str], index: int, values: list[str]
) -> Iterator[tuple[_Node, list[str]]]:
    if index == len(parts):
        if node.leaf:
            yield node, values
        return
    segment = parts[index]
    child = node.literal.get(segment)
    if child is not None:
        yield from _walk(child, parts, index + 1, values)
    if node.param is not None and segment not in ("", ".", ".."):
        yield from _walk(node.param, parts, index + 1, [*values, segment])
