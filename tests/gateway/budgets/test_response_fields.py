"""Token budgets as RateLimit-Policy/RateLimit members and the budget warning."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.budgets.config import BudgetLine, Window
from gateway.budgets.response_fields import budget_fields
from gateway.budgets.store import LineState

NOON = datetime(2025, 5, 14, 12, 0, tzinfo=UTC).timestamp()


def test_budget_fields_follow_the_draft_with_a_token_unit() -> None:
    """Each budget is a RateLimit-Policy member with qu="tokens" and a partition key; the
    warning names budgets used to 80 % or more."""
    line = BudgetLine("user", "user:tech-1", Window.DAY, 1000)
    pool = BudgetLine("tier", "tier:technician", Window.MINUTE, 100)
    fields = budget_fields(
        [LineState(line, 820, 3600.2), LineState(pool, 10, 30.0)], NOON, warn_ratio=0.8
    )
    policy = fields[b"ratelimit-policy"]
    assert policy.startswith('"tokens-user-day";q=1000;w=86400;qu="tokens";pk=:')
    assert ', "tokens-tier-minute";q=100;w=60;qu="tokens";pk=:' in policy
    assert fields[b"ratelimit"].startswith('"tokens-user-day";r=180;t=3601;pk=:')
    assert fields[b"mro-budget-warning"] == "user:day 82%"
