"""Token budgets under attack: a max_tokens the orchestrator would refuse is refused by the
running gateway first (422 problem+json naming the field), never a 500, and nothing is reserved,
charged or sent to the model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.fixtures.live import LiveStack
from tests.max_tokens_cases import REFUSED_MAX_TOKENS, message_body
from tests.security.evidence import assert_problem, bearer

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]


def _usage(gateway: httpx.Client, manager_token: Callable[[], str]) -> dict[str, Any]:
    report = gateway.get(
        "/api/admin/usage", params={"group_by": "subject"}, headers=bearer(manager_token())
    )
    assert report.status_code == 200, report.text
    usage: dict[str, Any] = report.json()
    return usage


def test_refused_max_tokens_shapes_reserve_and_charge_nothing(
    gateway: httpx.Client,
    live_stack: LiveStack,
    service_token: Callable[[], str],
    manager_token: Callable[[], str],
) -> None:
    """Huge, negative, zero, string, float, 1e400, NaN, boolean and nested max_tokens are each a
    422 naming the field, before any budget is reserved; the model is never called."""
    headers = {**bearer(service_token()), "Content-Type": "application/json"}
    created = gateway.post(
        "/api/conversations", json={"title": "max_tokens shapes"}, headers=headers
    )
    assert created.status_code == 201, created.text
    path = f"/api/conversations/{created.json()['id']}/messages"
    calls = len(live_stack.azure.calls())
    usage = _usage(gateway, manager_token)
    for name, max_tokens in REFUSED_MAX_TOKENS.items():
        answer = gateway.post(path, content=message_body(max_tokens), headers=headers)
        problem = assert_problem(answer, 422, "validation_failed")
        assert [error["loc"] for error in problem["errors"]] == [["body", "max_tokens"]], name
        assert 'qu="tokens"' not in answer.headers["ratelimit-policy"], name
    assert len(live_stack.azure.calls()) == calls
    assert _usage(gateway, manager_token) == usage
    conversation = gateway.get(path.removesuffix("/messages"), headers=headers)
    assert conversation.json()["messages"] == []
