"""Route matching by a trie of path segments: literals first, placeholders as a fallback."""

from __future__ import annotations

import pytest

from gateway.policy.route_trie import RouteRule, RouteTrie, Upstream, segments


def rule(path: str, *methods: str) -> RouteRule:
    """A public gateway rule for path and methods."""
    return RouteRule(frozenset(methods or ("GET",)), path, None, True, Upstream.GATEWAY)


def trie(*rules: RouteRule) -> RouteTrie:
    """A trie holding rules."""
    built = RouteTrie()
    for item in rules:
        built.add(item)
    return built


def test_segments_of_the_root_are_none() -> None:
    """``/`` has no segments; other paths split on every slash, empty segments kept."""
    assert segments("/") == []
    assert segments("/a//b/") == ["a", "", "b", ""]


def test_literal_wins_and_placeholder_takes_the_rest() -> None:
    """/things/special matches its literal rule; any other segment fills the placeholder."""
    special, generic = rule("/things/special"), rule("/things/{id}")
    routes = trie(generic, special)
    assert routes.match("get", "/things/special") == routes.match("GET", "/things/special")
    found = routes.match("GET", "/things/special")
    other = routes.match("GET", "/things/c-1")
    assert found is not None
    assert other is not None
    assert (found.rule, found.params) == (special, {})
    assert (other.rule, other.params) == (generic, {"id": "c-1"})


def test_dead_end_literal_branch_falls_back_to_the_placeholder() -> None:
    """A literal prefix without a rule further down gives way to the placeholder branch."""
    deep = rule("/things/{id}/y")
    routes = trie(rule("/things/special/x"), deep)
    found = routes.match("GET", "/things/special/y")
    assert found is not None
    assert (found.rule, found.params) == (deep, {"id": "special"})


@pytest.mark.parametrize("path", ["/things/", "/things/.", "/things/..", "things/a", ""])
def test_empty_and_dot_segments_never_fill_a_placeholder(path: str) -> None:
    """Empty, ``.`` and ``..`` segments and relative paths match nothing."""
    routes = trie(rule("/things/{id}"))
    assert routes.match("GET", path) is None
    assert routes.allowed_methods(path) == set()


def test_allowed_methods_gather_every_reachable_rule() -> None:
    """Methods of the literal and of the placeholder rule both count for a 405 answer."""
    routes = trie(rule("/things/special", "GET"), rule("/things/{id}", "DELETE", "PUT"))
    assert routes.allowed_methods("/things/special") == {"GET", "DELETE", "PUT"}
    assert routes.match("POST", "/things/special") is None
