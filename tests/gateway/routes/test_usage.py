"""``GET /api/admin/usage``: managers see who used how many tokens on which agent."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI

from gateway.budgets.usage_store import UsageRecord
from tests.gateway.budgets.test_meter import MANAGER, TECH, StandInOrchestrator, gateway_app
from tests.gateway.harness import running

pytestmark = pytest.mark.redis

TODAY = datetime(2025, 5, 14, 9, 30, tzinfo=UTC)


def _app(tmp_path: Path, redis_url: str) -> FastAPI:
    return gateway_app(tmp_path, redis_url, StandInOrchestrator(), clock=TODAY.timestamp)


def _seed(app: FastAPI) -> None:
    recorder = app.state.usage_recorder
    for day, subject, label, agent, total in [
        (date(2025, 4, 30), "u-1", "tech1", "documentation", 999),
        (date(2025, 5, 1), "u-1", "tech1", "documentation", 100),
        (date(2025, 5, 3), "u-1", "tech1", "troubleshooting", 40),
        (date(2025, 5, 14), "u-2", "eng1", "compliance", 500),
    ]:
        recorder.record(
            UsageRecord(
                day=day,
                kind="user",
                subject=subject,
                agent=agent,
                label=label,
                tier="technician",
                prompt_tokens=total - 10,
                completion_tokens=10,
                total_tokens=total,
                charged_tokens=total * (2 if agent == "compliance" else 1),
            )
        )


async def test_manager_sees_this_months_usage_per_person_and_agent(
    tmp_path: Path, redis_url: str
) -> None:
    """By default the report covers this month so far, grouped by caller and agent, largest
    first, with totals; usage not yet written is written before reading."""
    app = _app(tmp_path, redis_url)
    _seed(app)
    async with running(app) as http:
        response = await http.get("/api/admin/usage", headers=MANAGER)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["from"], report["to"], report["group_by"]) == (
        "2025-05-01",
        "2025-05-14",
        "subject,agent",
    )
    assert (report["requests"], report["total_tokens"], report["charged_tokens"]) == (
        3,
        640,
        1140,
    )
    assert [(i["label"], i["agent"], i["total_tokens"]) for i in report["items"]] == [
        ("eng1", "compliance", 500),
        ("tech1", "documentation", 100),
        ("tech1", "troubleshooting", 40),
    ]
    assert "day" not in report["items"][0]


async def test_report_filters_and_groups_by_day(tmp_path: Path, redis_url: str) -> None:
    """from/to, subject and group_by=day narrow and shape the report."""
    app = _app(tmp_path, redis_url)
    _seed(app)
    async with running(app) as http:
        response = await http.get(
            "/api/admin/usage",
            headers=MANAGER,
            params={"from": "2025-04-01", "to": "2025-05-02", "subject": "u-1", "group_by": "day"},
        )
    items = response.json()["items"]
    assert [(i["day"], i["total_tokens"]) for i in items] == [
        ("2025-04-30", 999),
        ("2025-05-01", 100),
    ]
    assert "subject" not in items[0]


async def test_technician_may_not_read_usage(tmp_path: Path, redis_url: str) -> None:
    """Without usage:read the report is a 403."""
    async with running(_app(tmp_path, redis_url)) as http:
        response = await http.get("/api/admin/usage", headers=TECH)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "2025-05-10", "to": "2025-05-01"}, "bad_date_range"),
        ({"from": "2023-01-01", "to": "2025-05-01"}, "bad_date_range"),
        ({"group_by": "subject,password"}, "bad_group_by"),
        ({"group_by": "agent,agent"}, "bad_group_by"),
        ({"kind": "robot"}, "validation_failed"),
    ],
)
async def test_bad_parameters_are_problems(
    tmp_path: Path, redis_url: str, params: dict[str, str], code: str
) -> None:
    """Reversed or overlong ranges, unknown groups and kinds are refused with a stable code."""
    async with running(_app(tmp_path, redis_url)) as http:
        response = await http.get("/api/admin/usage", headers=MANAGER, params=params)
    assert response.status_code in (400, 422)
    assert response.json()["code"] == code
