"""Budget configuration: windows, the budgets a caller spends, weights and table validation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.budgets.config import BudgetConfig, BudgetLine, Window
from gateway.identity import AuthMethod, Identity
from gateway.policy.policy_file import Policy, PolicyError
from tests.gateway.budgets.test_meter import policy_with

ROLES = ("technician", "engineer", "manager", "admin", "service")
NOON = datetime(2025, 5, 14, 12, 0, tzinfo=UTC).timestamp()
TECH = Identity("tech-1", AuthMethod.JWT, frozenset({"technician"}), username="tech1")
KEY = Identity(
    "apikey:k1", AuthMethod.API_KEY, frozenset({"service"}), api_key_id="k1", username=""
)
SERVICE = Identity(
    "sa-1", AuthMethod.CLIENT_CREDENTIALS, frozenset({"service"}), client_id="erp-sync"
)


# --- configuration ----------------------------------------------------------------------------


def test_windows_are_utc_calendar_windows() -> None:
    """Minute, day and month windows start and end on UTC edges (December rolls the year)."""
    moment = datetime(2025, 12, 31, 23, 59, 30, tzinfo=UTC).timestamp()
    label, start, end = Window.MINUTE.bounds(moment)
    assert (start, end) == (moment - 30, moment + 30)
    assert Window.DAY.bounds(moment)[0] == "20251231"
    assert Window.DAY.bounds(moment)[2] == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    label, start, end = Window.MONTH.bounds(moment)
    assert label == "202512"
    assert start == datetime(2025, 12, 1, tzinfo=UTC).timestamp()
    assert end == datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def test_lines_cover_own_budget_overrides_and_tier_pool() -> None:
    """A caller spends its tier's budgets under its own partition, overridden window by window
    for named callers, plus its tier's shared pool."""
    config = BudgetConfig.from_dict(
        {
            "tiers": {"technician": {"per_day": 100, "per_month": 1000}, "service": {"per_day": 5}},
            "pools": {"technician": {"per_minute": 50}},
            "callers": {"user:tech1": {"per_day": 200}, "api_key:k1": {"per_minute": 7}},
        },
        ROLES,
    )
    assert config.lines_for(TECH, "technician") == (
        BudgetLine("user", "user:tech-1", Window.DAY, 200),
        BudgetLine("user", "user:tech-1", Window.MONTH, 1000),
        BudgetLine("tier", "tier:technician", Window.MINUTE, 50),
    )
    assert config.lines_for(KEY, "service") == (
        BudgetLine("api_key", "api_key:apikey:k1", Window.DAY, 5),
        BudgetLine("api_key", "api_key:apikey:k1", Window.MINUTE, 7),
    )
    assert config.lines_for(SERVICE, "service") == (
        BudgetLine("service", "service:sa-1", Window.DAY, 5),
    )
    # Without a tier only a named caller's own override applies.
    assert config.lines_for(SERVICE, None) == ()
    assert config.lines_for(TECH, None) == (BudgetLine("user", "user:tech-1", Window.DAY, 200),)


def test_reservation_weight_is_the_named_agent_or_the_dearest_allowed() -> None:
    """Weights default to 1; without a named agent the dearest agent the caller may use counts."""
    config = BudgetConfig.from_dict({"agents": {"compliance": {"weight": 3}}}, ROLES)
    engineer = ["agents:use:documentation", "agents:use:compliance", "messages:create"]
    assert config.reserve_weight(None, engineer) == 3.0
    assert config.reserve_weight("documentation", engineer) == 1.0
    assert config.reserve_weight(None, ["agents:use:documentation"]) == 1.0
    assert config.estimate(content_chars=41, max_tokens=100) == 11 + 2000 + 100


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"tiers": {"pilot": {"per_day": 1}}}, "budgets.tiers: unknown ['pilot']"),
        ({"tiers": {"technician": {"per_week": 1}}}, "unknown ['per_week']"),
        ({"tiers": {"technician": {"per_day": 0}}}, "per_day must be an integer >= 1"),
        ({"callers": {"bob": {"per_day": 1}}}, "name callers as user:<username>"),
        ({"agents": {"compliance": {"weight": 0}}}, "weight must be a number > 0"),
        ({"redis_down": "ignore"}, "redis_down must be 'refuse' or 'allow'"),
        ({"default_max_tokens": 20_000}, "default_max_tokens must be at most 16384"),
        ({"surprise": 1}, "budgets: unknown ['surprise']"),
    ],
)
def test_invalid_budget_tables_stop_the_policy(table: dict[str, Any], message: str) -> None:
    """Each mistake in [budgets] is a PolicyError saying where."""
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        policy_with(table)


def test_packaged_policy_has_budgets_for_every_tier() -> None:
    """The shipped policy gives every rate-limit tier a budget for each window."""
    packaged = Policy.load()
    assert packaged.budgets is not None
    assert set(packaged.budgets.tiers) == set(packaged.rate_limits.tiers)
    assert all(len(windows) == 3 for windows in packaged.budgets.tiers.values())
