"""Conversations API: own conversations only, ``read:all`` to see others', 404 for foreign ids."""

from __future__ import annotations

import uuid

import pytest

from orchestrator.models import Role
from tests.fixtures.orchestrator import FakeClock, Orchestrator


async def test_create_returns_the_conversation(orchestrator: Orchestrator) -> None:
    """POST creates a conversation owned by the caller with the given title."""
    response = await orchestrator.http.post(
        "/api/conversations", json={"title": "A320 brake wear"}, headers=orchestrator.as_user("u1")
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["title"], body["owner_sub"], body["owner_name"]) == (
        "A320 brake wear",
        "u1",
        "User u1",
    )
    assert uuid.UUID(body["id"])
    assert body["created_at"] == body["updated_at"]


async def test_create_without_body_or_title_is_untitled(orchestrator: Orchestrator) -> None:
    """Both an empty body and no body at all create an untitled conversation."""
    headers = orchestrator.as_user()
    for content in (b"", b"{}"):
        response = await orchestrator.http.post(
            "/api/conversations",
            content=content,
            headers={**headers, "content-type": "application/json"} if content else headers,
        )
        assert response.status_code == 201, response.text
        assert response.json()["title"] == ""


async def test_create_needs_the_permission(orchestrator: Orchestrator) -> None:
    """Without conversations:create the caller gets 403."""
    headers = orchestrator.as_user(permissions=["conversations:read:own"])
    response = await orchestrator.http.post("/api/conversations", json={}, headers=headers)
    assert response.status_code == 403


@pytest.mark.parametrize(
    "body", [{"title": "x" * 201}, {"title": 5}, {"owner_sub": "someone-else"}, [1]]
)
async def test_create_with_invalid_body_is_422_problem(
    orchestrator: Orchestrator, body: object
) -> None:
    """An invalid body answers 422 problem+json saying where, without echoing the input."""
    response = await orchestrator.http.post(
        "/api/conversations", json=body, headers=orchestrator.as_user()
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert problem["errors"]
    assert all(set(error) == {"loc", "msg", "type"} for error in problem["errors"])
    assert "someone-else" not in response.text


async def test_list_own_newest_first_with_paging(orchestrator: Orchestrator) -> None:
    """The list holds the caller's conversations only, most recent first, paged."""
    ids = [await orchestrator.conversation("u1") for _ in range(3)]
    await orchestrator.conversation("u2")
    headers = orchestrator.as_user("u1")
    first = (await orchestrator.http.get("/api/conversations?limit=2", headers=headers)).json()
    rest = (
        await orchestrator.http.get("/api/conversations?limit=2&offset=2", headers=headers)
    ).json()
    assert [c["id"] for c in first["items"] + rest["items"]] == ids[::-1]
    assert (first["total"], first["limit"], first["offset"]) == (3, 2, 0)


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "offset=-1", "scope=mine"])
async def test_list_with_invalid_query_is_422(orchestrator: Orchestrator, query: str) -> None:
    """Out-of-range paging and unknown scopes answer 422."""
    response = await orchestrator.http.get(
        f"/api/conversations?{query}", headers=orchestrator.as_user()
    )
    assert response.status_code == 422


async def test_scope_all_needs_read_all(orchestrator: Orchestrator) -> None:
    """scope=all without conversations:read:all is 403."""
    response = await orchestrator.http.get(
        "/api/conversations?scope=all", headers=orchestrator.as_user(role="engineer")
    )
    assert response.status_code == 403
    assert "conversations:read:all" in response.json()["detail"]


async def test_scope_all_lists_everyone_and_filters_by_user(orchestrator: Orchestrator) -> None:
    """A manager lists every user's conversations and can narrow them to one user."""
    await orchestrator.conversation("u1")
    theirs = await orchestrator.conversation("u2")
    headers = orchestrator.as_user("boss", role="manager")
    everyone = await orchestrator.http.get("/api/conversations?scope=all", headers=headers)
    assert everyone.json()["total"] == 2
    only = await orchestrator.http.get("/api/conversations?scope=all&user=u2", headers=headers)
    assert [c["id"] for c in only.json()["items"]] == [theirs]


async def test_user_filter_without_scope_all_is_422(orchestrator: Orchestrator) -> None:
    """Filtering by user only makes sense with scope=all."""
    response = await orchestrator.http.get(
        "/api/conversations?user=u2", headers=orchestrator.as_user(role="manager")
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


async def test_list_needs_a_read_permission(orchestrator: Orchestrator) -> None:
    """A caller with no conversations:read:* permission cannot list."""
    headers = orchestrator.as_user(permissions=["conversations:create"])
    assert (await orchestrator.http.get("/api/conversations", headers=headers)).status_code == 403


async def test_get_own_conversation_with_messages(orchestrator: Orchestrator) -> None:
    """GET returns the conversation with its messages, oldest first."""
    conversation_id = await orchestrator.conversation("u1")
    repository = orchestrator.resources.repository
    conversation = await repository.get_conversation(uuid.UUID(conversation_id))
    assert conversation is not None
    await repository.add_message(conversation, role=Role.USER, content="question")
    await repository.add_message(conversation, role=Role.ASSISTANT, content="answer")
    response = await orchestrator.http.get(
        f"/api/conversations/{conversation_id}", headers=orchestrator.as_user("u1")
    )
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == conversation_id
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "question"),
        ("assistant", "answer"),
    ]


async def test_foreign_or_unknown_conversation_is_404(orchestrator: Orchestrator) -> None:
    """Another user's conversation and an unknown id both answer 404, indistinguishably."""
    theirs = await orchestrator.conversation("u2")
    headers = orchestrator.as_user("u1", role="engineer")
    foreign = await orchestrator.http.get(f"/api/conversations/{theirs}", headers=headers)
    unknown = await orchestrator.http.get(f"/api/conversations/{uuid.uuid4()}", headers=headers)
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["detail"] == unknown.json()["detail"]


async def test_read_all_may_get_another_users_conversation(orchestrator: Orchestrator) -> None:
    """With conversations:read:all a GET of someone else's conversation is allowed."""
    theirs = await orchestrator.conversation("u2")
    response = await orchestrator.http.get(
        f"/api/conversations/{theirs}", headers=orchestrator.as_user("boss", role="manager")
    )
    assert response.status_code == 200
    assert response.json()["owner_sub"] == "u2"


async def test_get_needs_a_read_permission(orchestrator: Orchestrator) -> None:
    """Without any conversations:read:* permission even one's own conversation is 403."""
    mine = await orchestrator.conversation("u1")
    headers = orchestrator.as_user("u1", permissions=["conversations:create"])
    response = await orchestrator.http.get(f"/api/conversations/{mine}", headers=headers)
    assert response.status_code == 403


async def test_get_with_malformed_id_is_422(orchestrator: Orchestrator) -> None:
    """A conversation id that is not a UUID is a validation error."""
    response = await orchestrator.http.get(
        "/api/conversations/not-a-uuid", headers=orchestrator.as_user()
    )
    assert response.status_code == 422


async def test_delete_own_conversation(orchestrator: Orchestrator) -> None:
    """DELETE answers 204, then the conversation is gone (404)."""
    mine = await orchestrator.conversation("u1")
    headers = orchestrator.as_user("u1")
    deleted = await orchestrator.http.delete(f"/api/conversations/{mine}", headers=headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    again = await orchestrator.http.get(f"/api/conversations/{mine}", headers=headers)
    assert again.status_code == 404


async def test_delete_foreign_is_404_even_for_read_all(orchestrator: Orchestrator) -> None:
    """Nobody deletes another user's conversation: 404, and it is still there."""
    theirs = await orchestrator.conversation("u2")
    response = await orchestrator.http.delete(
        f"/api/conversations/{theirs}", headers=orchestrator.as_user("boss", role="manager")
    )
    assert response.status_code == 404
    still = await orchestrator.http.get(
        f"/api/conversations/{theirs}", headers=orchestrator.as_user("u2")
    )
    assert still.status_code == 200


async def test_delete_needs_the_permission(orchestrator: Orchestrator) -> None:
    """Without conversations:delete:own the caller gets 403 and nothing is deleted."""
    mine = await orchestrator.conversation("u1")
    headers = orchestrator.as_user("u1", permissions=["conversations:read:own"])
    response = await orchestrator.http.delete(f"/api/conversations/{mine}", headers=headers)
    assert response.status_code == 403


async def test_wrong_method_is_405_problem(orchestrator: Orchestrator) -> None:
    """An unsupported method answers 405 problem+json with Allow."""
    response = await orchestrator.http.put("/api/conversations", headers=orchestrator.as_user())
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert response.headers["allow"]


async def test_an_answer_left_streaming_reads_as_partial_or_failed_once_stale(
    timed_orchestrator: Orchestrator, clock: FakeClock
) -> None:
    """An answer no process writes any more shows as streaming, then as partial or failed."""
    app = timed_orchestrator
    conversation_id = await app.conversation()
    repository = app.resources.repository
    conversation = await repository.get_conversation(uuid.UUID(conversation_id))
    assert conversation is not None
    _, cut = await repository.add_question(conversation, content="Where is the APU starter?")
    await repository.save_progress(cut.id, "The APU starter is", attempt=cut.attempt)
    clock.advance(1)
    await repository.add_question(conversation, content="And its part number?")

    async def answers() -> list[tuple[str, str]]:
        response = await app.http.get(
            f"/api/conversations/{conversation_id}", headers=app.as_user()
        )
        assert response.status_code == 200
        messages = response.json()["messages"]
        return [(m["status"], m["content"]) for m in messages if m["role"] == "assistant"]

    assert await answers() == [("streaming", "The APU starter is"), ("streaming", "")]
    clock.advance(app.resources.liveness.stale_after.total_seconds() + 1)
    assert await answers() == [("partial", "The APU starter is"), ("failed", "")]
