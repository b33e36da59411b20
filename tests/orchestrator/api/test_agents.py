"""``GET /api/agents``: the agents the caller's permissions allow, nothing more."""

from __future__ import annotations

import pytest

from tests.fixtures.orchestrator import Orchestrator


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("technician", ["documentation", "troubleshooting"]),
        ("engineer", ["documentation", "troubleshooting", "planning", "compliance"]),
        ("service", ["documentation", "planning"]),
    ],
)
async def test_lists_the_agents_the_role_may_use(
    orchestrator: Orchestrator, role: str, expected: list[str]
) -> None:
    """Each role sees exactly the agents its agents:use:* permissions name."""
    response = await orchestrator.http.get("/api/agents", headers=orchestrator.as_user(role=role))
    assert response.status_code == 200
    items = response.json()["items"]
    assert [item["name"] for item in items] == expected
    assert all(item["title"] and item["description"] for item in items)
    assert all(set(item) == {"name", "title", "description"} for item in items)


async def test_without_agents_read_is_403(orchestrator: Orchestrator) -> None:
    """A caller without agents:read gets 403 permission_denied."""
    headers = orchestrator.as_user(permissions=["agents:use:documentation"])
    response = await orchestrator.http.get("/api/agents", headers=headers)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
