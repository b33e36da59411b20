"""Validation of the policy file's tables into their typed form."""

from __future__ import annotations

import pytest

from gateway.policy.route_trie import Upstream
from gateway.policy.schema import PolicyError, validate
from tests.gateway.policy.test_policy_file import minimal, with_route


def test_valid_tables_come_back_typed_with_inheritance_resolved() -> None:
    """Roles carry inherited permissions, routes are rules, no [budgets] means no budgets."""
    tables = validate(minimal())
    assert tables.roles["writer"] == frozenset({"things:read", "things:write"})
    assert [r.path for r in tables.routes] == ["/things/{id}", "/healthz"]
    assert tables.routes[1].upstream is Upstream.GATEWAY
    assert tables.rate_limits.tiers == {"reader": "100/minute", "writer": "200/minute"}
    assert tables.budgets is None


def test_routes_of_every_environment_are_kept() -> None:
    """Validation keeps environment-limited rules; the policy picks its environment's later."""
    data = with_route(
        methods=["GET"], path="/docs", public=True, upstream="gateway", environments=["development"]
    )
    (docs,) = [r for r in validate(data).routes if r.path == "/docs"]
    assert docs.environments == frozenset({"development"})


def test_budget_errors_become_policy_errors() -> None:
    """An invalid [budgets] table is reported as a PolicyError naming the key."""
    with pytest.raises(PolicyError, match=r"budgets\.redis_down"):
        validate(minimal(budgets={"redis_down": "ignore"}))


def test_static_routes_are_public_read_only_routes_of_the_gateway() -> None:
    """``static = true`` is kept on a public GET route of the gateway and refused elsewhere."""
    data = with_route(
        methods=["GET"], path="/ui/{name}", public=True, upstream="gateway", static=True
    )
    (ui,) = [r for r in validate(data).routes if r.path == "/ui/{name}"]
    assert ui.static is True
    for bad in (
        {"methods": ["POST"], "public": True, "upstream": "gateway"},
        {"methods": ["GET"], "public": True, "upstream": "orchestrator"},
        {"methods": ["GET"], "permission": "things:read", "upstream": "gateway"},
    ):
        with pytest.raises(PolicyError, match="static"):
            validate(with_route(path="/ui/{name}", static=True, **bad))
