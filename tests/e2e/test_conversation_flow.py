"""Through the whole stack with real Keycloak users: gateway → orchestrator → local Azure server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.live import LiveStack

pytestmark = [pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

TokenSource = Callable[[str], dict[str, Any]]


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _sse_events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    event, data = "message", []
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data.append(line.split(":", 1)[1].strip())
        elif not line and data:
            yield event, json.loads("\n".join(data))
            event, data = "message", []


def test_technician_asks_a_troubleshooting_question_and_gets_a_streamed_answer(
    live_stack: LiveStack, user_tokens: TokenSource
) -> None:
    """A technician creates, asks (streamed, routed to troubleshooting), lists and deletes."""
    auth = _bearer(user_tokens("tech1"))
    with live_stack.client(headers=auth) as client:
        created = client.post("/api/conversations", json={"title": "APU fault"})
        assert created.status_code == 201, created.text
        conversation_id = created.json()["id"]

        question = "APU fails to start with fault code 4521, how do I troubleshoot it?"
        with client.stream(
            "POST",
            f"/api/conversations/{conversation_id}/messages",
            json={"content": question},
            headers={"Accept": "text/event-stream"},
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = list(_sse_events(response))
        kinds = [kind for kind, _ in events]
        assert kinds[0] == "meta", kinds
        assert kinds[-1] == "done", kinds
        assert kinds.count("delta") >= 2, "the answer should arrive in several chunks"
        assert events[0][1]["agent"] == "troubleshooting"
        answer = "".join(data["content"] for kind, data in events if kind == "delta")
        assert events[-1][1]["usage"]["total_tokens"] > 0

        listed = client.get("/api/conversations").json()
        items = listed["items"] if isinstance(listed, dict) else listed
        assert conversation_id in [item["id"] for item in items]

        detail = client.get(f"/api/conversations/{conversation_id}").json()
        contents = [message["content"] for message in detail["messages"]]
        assert contents == [question, answer]

        assert client.delete(f"/api/conversations/{conversation_id}").status_code == 204
        assert client.get(f"/api/conversations/{conversation_id}").status_code == 404

    calls = live_stack.azure.calls()
    assert any(question in json.dumps(call.body) for call in calls)


def test_manager_lists_everyones_conversations_and_technician_cannot(
    live_stack: LiveStack, user_tokens: TokenSource
) -> None:
    """`scope=all` works for a manager and answers 403 for a technician."""
    with live_stack.client(headers=_bearer(user_tokens("tech1"))) as tech:
        own = tech.post("/api/conversations", json={"title": "wheel change"}).json()["id"]
        refused = tech.get("/api/conversations", params={"scope": "all"})
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
    with live_stack.client(headers=_bearer(user_tokens("mgr1"))) as manager:
        everyone = manager.get("/api/conversations", params={"scope": "all"})
        assert everyone.status_code == 200
        body = everyone.json()
        items = body["items"] if isinstance(body, dict) else body
        assert own in [item["id"] for item in items]


@pytest.mark.parametrize(
    ("username", "agent", "allowed"),
    [
        ("tech1", "compliance", False),
        ("eng1", "compliance", True),
        ("tech1", "troubleshooting", True),
    ],
)
def test_agent_choice_follows_the_callers_permissions(
    live_stack: LiveStack, user_tokens: TokenSource, username: str, agent: str, allowed: bool
) -> None:
    """A technician may not pick the compliance agent; an engineer may."""
    with live_stack.client(headers=_bearer(user_tokens(username))) as client:
        conversation = client.post("/api/conversations", json={}).json()["id"]
        answer = client.post(
            f"/api/conversations/{conversation}/messages",
            json={"content": "Is AD 2024-05-12 applicable to our A320 fleet?", "agent": agent},
        )
        assert answer.status_code == (201 if allowed else 403), answer.text
        if allowed:
            assert answer.json()["assistant_message"]["agent"] == agent


def test_service_account_reaches_the_orchestrator_as_itself(
    live_stack: LiveStack, service_tokens: TokenSource
) -> None:
    """A client-credentials token works like a user token, with the service's identity."""
    with live_stack.client(headers=_bearer(service_tokens("mro-planning-sync"))) as client:
        created = client.post("/api/conversations", json={"title": "nightly sync"})
        assert created.status_code == 201, created.text
        assert created.json()["owner_sub"]


def test_requests_without_or_with_bad_credentials_never_reach_the_orchestrator(
    live_stack: LiveStack,
) -> None:
    """No credential → 401 with a challenge; a forged token → 401; the orchestrator alone → 401."""
    with live_stack.client() as client:
        missing = client.get("/api/conversations")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        forged = client.get("/api/conversations", headers={"Authorization": "Bearer a.b.c"})
        assert forged.status_code == 401
    direct = httpx.get(f"{live_stack.orchestrator_url}/api/conversations", timeout=10)
    assert direct.status_code == 401
