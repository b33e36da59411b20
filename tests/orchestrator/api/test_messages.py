"""Sending a message (whole answers): routing, storage, upstream failures, idempotency."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from orchestrator.agents import AGENTS
from orchestrator.llm import AzureLLMClient
from orchestrator.models import Message, Role
from tests.fixtures.azure import FakeAzure
from tests.fixtures.orchestrator import (
    FakeClock,
    Orchestrator,
    orchestrator_for,
    parse_sse,
    settings_for_tests,
)
from tests.max_tokens_cases import REFUSED_MAX_TOKENS, message_body

QUESTION = "Hydraulic pressure drops when the gear retracts, what should I check?"


def classified(agent: str, confidence: float = 0.9) -> str:
    return json.dumps({"agent": agent, "confidence": confidence, "reasoning": "test"})


async def send(
    orchestrator: Orchestrator,
    conversation_id: str,
    body: dict[str, Any] | None = None,
    *,
    sub: str = "user-1",
    key: str | None = None,
    **claims: Any,
) -> Any:
    headers = orchestrator.as_user(sub, **claims)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await orchestrator.http.post(
        f"/api/conversations/{conversation_id}/messages",
        json=body if body is not None else {"content": QUESTION},
        headers=headers,
    )


async def stored(orchestrator: Orchestrator, conversation_id: str) -> list[Any]:
    return await orchestrator.resources.repository.list_messages(uuid.UUID(conversation_id))


async def test_answer_is_routed_stored_and_returned(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """The model's routing and answer are stored with agent, confidence, method and usage."""
    azure.queue_response(classified("troubleshooting"))
    usage = {"prompt_tokens": 12, "completion_tokens": 5}
    azure.queue_response("Run TSM task 29-10-00-810-801.", usage=usage)
    conversation_id = await orchestrator.conversation()
    response = await send(orchestrator, conversation_id)

    assert response.status_code == 201, response.text
    user, answer = response.json()["user_message"], response.json()["assistant_message"]
    assert (user["role"], user["content"], user["status"]) == ("user", QUESTION, "complete")
    assert answer["content"] == "Run TSM task 29-10-00-810-801."
    assert (answer["agent"], answer["confidence"], answer["method"]) == (
        "troubleshooting",
        0.9,
        "model",
    )
    assert answer["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    assert (answer["reply_to"], answer["status"]) == (user["id"], "complete")
    assert [m.id for m in await stored(orchestrator, conversation_id)] == [
        uuid.UUID(user["id"]),
        uuid.UUID(answer["id"]),
    ]
    classify, answer_call = azure.calls()
    assert classify.body["response_format"]["type"] == "json_schema"
    assert answer_call.system_prompt == AGENTS["troubleshooting"].system_prompt
    assert answer_call.messages[-1] == {"role": "user", "content": QUESTION}


async def test_routing_only_offers_the_callers_agents(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """The classifier's choices are the caller's allowed agents only."""
    conversation_id = await orchestrator.conversation()
    response = await send(orchestrator, conversation_id)
    assert response.status_code == 201
    schema = azure.calls()[0].body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["agent"]["enum"] == ["documentation", "troubleshooting"]


async def test_explicit_agent_skips_classification(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """An allowed explicit agent is used as is: method explicit, one model call."""
    conversation_id = await orchestrator.conversation()
    response = await send(
        orchestrator, conversation_id, {"content": QUESTION, "agent": "documentation"}
    )
    answer = response.json()["assistant_message"]
    assert (answer["agent"], answer["confidence"], answer["method"]) == (
        "documentation",
        1.0,
        "explicit",
    )
    assert len(azure.calls()) == 1


@pytest.mark.parametrize("agent", ["planning", "no-such-agent"])
async def test_agent_not_allowed_is_403_and_nothing_stored(
    orchestrator: Orchestrator, azure: FakeAzure, agent: str
) -> None:
    """A technician naming planning (or an unknown agent) gets 403; nothing is stored or sent."""
    conversation_id = await orchestrator.conversation()
    response = await send(orchestrator, conversation_id, {"content": QUESTION, "agent": agent})
    assert response.status_code == 403
    assert response.json()["code"] == "agent_not_allowed"
    assert await stored(orchestrator, conversation_id) == []
    assert azure.calls() == []


async def test_no_usable_agent_is_403(orchestrator: Orchestrator, azure: FakeAzure) -> None:
    """A caller allowed to send but to use no agent gets 403 no_agent_available."""
    permissions = ["conversations:create", "messages:create"]
    conversation_id = await orchestrator.conversation(permissions=permissions)
    response = await send(orchestrator, conversation_id, permissions=permissions)
    assert response.status_code == 403
    assert response.json()["code"] == "no_agent_available"
    assert await stored(orchestrator, conversation_id) == []


async def test_sending_needs_messages_create(orchestrator: Orchestrator) -> None:
    """Without messages:create the caller gets 403."""
    conversation_id = await orchestrator.conversation()
    response = await send(orchestrator, conversation_id, permissions=["agents:use:documentation"])
    assert response.status_code == 403


async def test_foreign_conversation_is_404_even_for_managers(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """Nobody posts into another user's conversation, read:all or not."""
    theirs = await orchestrator.conversation("u2")
    response = await send(orchestrator, theirs, sub="boss", role="manager")
    assert response.status_code == 404
    assert await stored(orchestrator, theirs) == []
    assert azure.calls() == []


async def test_history_goes_with_the_next_question(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """The second question is sent with the first question and answer before it."""
    conversation_id = await orchestrator.conversation()
    azure.queue_response("First answer.")
    body = {"content": "First question", "agent": "documentation"}
    await send(orchestrator, conversation_id, body)
    await send(
        orchestrator, conversation_id, {"content": "Second question", "agent": "documentation"}
    )
    last = azure.calls()[-1].messages
    assert [(m["role"], m["content"]) for m in last[1:]] == [
        ("user", "First question"),
        ("assistant", "First answer."),
        ("user", "Second question"),
    ]


async def test_max_tokens_reaches_the_model(orchestrator: Orchestrator, azure: FakeAzure) -> None:
    """max_tokens in the body bounds the model's answer."""
    conversation_id = await orchestrator.conversation()
    body = {"content": QUESTION, "agent": "documentation", "max_tokens": 64}
    assert (await send(orchestrator, conversation_id, body)).status_code == 201
    assert azure.calls()[0].body["max_completion_tokens"] == 64


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"content": ""},
        {"content": "   \n"},
        {"content": "x" * 32_001},
        {"content": "ok", "max_tokens": 0},
        {"content": "ok", "agent": ""},
        {"content": "ok", "temperature": 2},
    ],
    ids=["missing", "empty", "blank", "too-long", "zero-tokens", "empty-agent", "extra-field"],
)
async def test_invalid_body_is_422_and_nothing_stored(
    orchestrator: Orchestrator, body: dict[str, Any]
) -> None:
    """A body that does not validate is 422 problem+json and stores nothing."""
    conversation_id = await orchestrator.conversation()
    response = await send(orchestrator, conversation_id, body)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"
    assert await stored(orchestrator, conversation_id) == []


@pytest.mark.parametrize("max_tokens", REFUSED_MAX_TOKENS.values(), ids=REFUSED_MAX_TOKENS.keys())
async def test_max_tokens_other_than_an_integer_in_range_is_422(
    orchestrator: Orchestrator, azure: FakeAzure, max_tokens: str
) -> None:
    """max_tokens is a JSON integer from 1 to 16,384 (never a string, float or bool coerced into
    one), as the gateway reserves for; anything else is a 422 naming the field, never a 500."""
    conversation_id = await orchestrator.conversation()
    response = await orchestrator.http.post(
        f"/api/conversations/{conversation_id}/messages",
        content=message_body(max_tokens),
        headers={**orchestrator.as_user(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert [error["loc"] for error in problem["errors"]] == [["body", "max_tokens"]]
    assert await stored(orchestrator, conversation_id) == []
    assert azure.calls() == []


@pytest.mark.parametrize(
    ("fault", "options", "status", "code"),
    [
        ("429", {"retry_after": 7}, 503, "llm_unavailable"),
        ("500", {}, 503, "llm_unavailable"),
        ("error", {"status": 400, "code": "content_filter"}, 502, "llm_rejected"),
        ("malformed", {}, 502, "llm_bad_response"),
        ("cut", {}, 503, "llm_unavailable"),
    ],
)
async def test_upstream_failure_keeps_the_question(
    orchestrator: Orchestrator,
    azure: FakeAzure,
    fault: Any,
    options: dict[str, Any],
    status: int,
    code: str,
) -> None:
    """Upstream faults become 502/503 problems; the question and a failed answer are stored."""
    azure.inject_fault(fault, **options)
    conversation_id = await orchestrator.conversation()
    body = {"content": QUESTION, "agent": "documentation"}
    response = await send(orchestrator, conversation_id, body)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert response.headers.get("retry-after") == ("7" if fault == "429" else None)
    question, answer = await stored(orchestrator, conversation_id)
    assert (question.role, question.content) == (Role.USER, QUESTION)
    assert (answer.status, answer.content, answer.reply_to_id) == ("failed", "", question.id)


async def test_upstream_timeout_is_504(
    database_url: str, azure: FakeAzure, assertion_signer: Any
) -> None:
    """A model slower than the timeout answers 504 llm_timeout; the question is kept."""
    llm = AzureLLMClient(azure.llm_settings(max_retries=0, timeout_seconds=0.3))
    settings = settings_for_tests(database_url, azure)
    try:
        async with orchestrator_for(settings, assertion_signer, llm=llm) as orchestrator:
            azure.inject_fault("slow", delay=2.0)
            conversation_id = await orchestrator.conversation()
            body = {"content": QUESTION, "agent": "documentation"}
            response = await send(orchestrator, conversation_id, body)
            assert response.status_code == 504
            assert response.json()["code"] == "llm_timeout"
            assert [m.status for m in await stored(orchestrator, conversation_id)] == [
                "complete",
                "failed",
            ]
    finally:
        await llm.aclose()


async def test_same_idempotency_key_replays_the_stored_exchange(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """A retried send with the same key returns the same ids and creates nothing new."""
    conversation_id = await orchestrator.conversation()
    body = {"content": QUESTION, "agent": "documentation"}
    first = await send(orchestrator, conversation_id, body, key="retry-me-1")
    second = await send(orchestrator, conversation_id, body, key="retry-me-1")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(await stored(orchestrator, conversation_id)) == 2
    assert len(azure.calls()) == 1


async def test_idempotency_keys_are_per_user(orchestrator: Orchestrator) -> None:
    """Two users may use the same key without seeing each other's exchange."""
    mine = await orchestrator.conversation("u1")
    theirs = await orchestrator.conversation("u2")
    body = {"content": QUESTION, "agent": "documentation"}
    a = await send(orchestrator, mine, body, sub="u1", key="shared-key")
    b = await send(orchestrator, theirs, body, sub="u2", key="shared-key")
    assert a.status_code == b.status_code == 201
    assert a.json()["user_message"]["id"] != b.json()["user_message"]["id"]


@pytest.mark.parametrize("change", ["content", "conversation"])
async def test_key_reused_for_another_request_is_422(
    orchestrator: Orchestrator, change: str
) -> None:
    """Reusing a key with other content or another conversation is 422 and stores nothing."""
    first = await orchestrator.conversation()
    other = await orchestrator.conversation() if change == "conversation" else first
    body = {"content": QUESTION, "agent": "documentation"}
    await send(orchestrator, first, body, key="key-1")
    changed = {**body, "content": "Something else"} if change == "content" else body
    response = await send(orchestrator, other, changed, key="key-1")
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert len(await stored(orchestrator, first)) == 2


async def test_key_of_a_request_still_running_is_409(orchestrator: Orchestrator) -> None:
    """A key whose question is stored but not yet answered answers 409 with Retry-After."""
    conversation_id = await orchestrator.conversation()
    repository = orchestrator.resources.repository
    conversation = await repository.get_conversation(uuid.UUID(conversation_id))
    assert conversation is not None
    await repository.add_message(
        conversation, role=Role.USER, content=QUESTION, idempotency_key="busy-key"
    )
    response = await send(orchestrator, conversation_id, key="busy-key")
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_in_progress"
    bound = orchestrator.resources.liveness.stale_after.total_seconds()
    assert 1 <= int(response.headers["retry-after"]) <= bound + 1


async def test_retry_after_failure_answers_with_the_same_ids(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """After a 503, the same key asks the model again and fills in the failed answer."""
    conversation_id = await orchestrator.conversation()
    body = {"content": QUESTION, "agent": "documentation"}
    azure.inject_fault("429", retry_after=1)
    failed = await send(orchestrator, conversation_id, body, key="after-503")
    assert failed.status_code == 503
    question, failed_answer = await stored(orchestrator, conversation_id)

    azure.queue_response("Now it works.")
    retried = await send(orchestrator, conversation_id, body, key="after-503")
    assert retried.status_code == 201
    assert retried.json()["user_message"]["id"] == str(question.id)
    answer = retried.json()["assistant_message"]
    assert (answer["id"], answer["content"], answer["status"]) == (
        str(failed_answer.id),
        "Now it works.",
        "complete",
    )
    assert len(await stored(orchestrator, conversation_id)) == 2


@pytest.mark.parametrize("key", ["has space", "x" * 256, "ü-key"])
async def test_malformed_idempotency_key_is_422(orchestrator: Orchestrator, key: str) -> None:
    """Keys with spaces, non-ASCII or over 255 characters are refused."""
    conversation_id = await orchestrator.conversation()
    headers = {**orchestrator.as_user(), "Idempotency-Key": key}
    response = await orchestrator.http.post(
        f"/api/conversations/{conversation_id}/messages",
        json={"content": QUESTION},
        headers=[(k.encode(), v.encode()) for k, v in headers.items()],
    )
    assert response.status_code == 422


async def test_classification_usage_is_what_the_model_server_recorded(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """The routing call's and the answer's token counts match the server's record exactly."""
    azure.queue_response(classified("troubleshooting"))
    conversation_id = await orchestrator.conversation()
    response = await send(orchestrator, conversation_id, key="routed-1")
    assert response.status_code == 201, response.text
    answer = response.json()["assistant_message"]
    classify, answer_call = azure.calls()
    recorded = azure.usage()
    assert answer["method"] == "model"
    assert answer["classification_usage"] == recorded[classify.seq]
    assert answer["usage"] == recorded[answer_call.seq]

    replayed = await send(orchestrator, conversation_id, key="routed-1")
    assert replayed.json()["assistant_message"]["classification_usage"] == recorded[classify.seq]
    detail = await orchestrator.http.get(
        f"/api/conversations/{conversation_id}", headers=orchestrator.as_user()
    )
    assert detail.json()["messages"][1]["classification_usage"] == recorded[classify.seq]


async def test_no_classification_usage_without_a_model_answer(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """An explicit agent, or keywords after a failed routing call, report null usage for it."""
    conversation_id = await orchestrator.conversation()
    explicit = await send(
        orchestrator, conversation_id, {"content": QUESTION, "agent": "documentation"}
    )
    assert explicit.json()["assistant_message"]["classification_usage"] is None
    azure.inject_fault("500")
    fallback = (await send(orchestrator, conversation_id)).json()["assistant_message"]
    assert (fallback["method"], fallback["classification_usage"]) == ("keywords", None)


async def crashed_answer(app: Orchestrator, key: str) -> tuple[str, Message, Message]:
    """What a process killed mid-answer leaves: the question and a streaming answer with text."""
    conversation_id = await app.conversation()
    repository = app.resources.repository
    conversation = await repository.get_conversation(uuid.UUID(conversation_id))
    assert conversation is not None
    question, answer = await repository.add_question(
        conversation, content=QUESTION, idempotency_key=key
    )
    await repository.save_progress(answer.id, "Check the hydraulic", attempt=answer.attempt)
    return conversation_id, question, answer


async def test_retry_of_an_answer_cut_by_a_crash_is_answered_once_stale(
    timed_orchestrator: Orchestrator, clock: FakeClock
) -> None:
    """409 while the answer may still be written; then the same key gets a new answer, same ids."""
    app = timed_orchestrator
    conversation_id, question, answer = await crashed_answer(app, "crash-1")
    body = {"content": QUESTION, "agent": "documentation"}
    busy = await send(app, conversation_id, body, key="crash-1")
    assert busy.status_code == 409
    assert busy.json()["code"] == "idempotency_in_progress"
    # Nothing was written since: the whole bound, strictly past it, is left.
    stale_after = app.resources.liveness.stale_after.total_seconds()
    assert busy.headers["retry-after"] == str(int(stale_after) + 1)

    clock.advance(app.resources.liveness.stale_after.total_seconds() + 1)
    retried = await send(app, conversation_id, body, key="crash-1")
    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers
    exchange = retried.json()
    assert (exchange["user_message"]["id"], exchange["assistant_message"]["id"]) == (
        str(question.id),
        str(answer.id),
    )
    assert exchange["assistant_message"]["status"] == "complete"
    assert not exchange["assistant_message"]["content"].startswith("Check the hydraulic")
    assert len(await stored(app, conversation_id)) == 2


async def test_streamed_retry_of_an_answer_cut_by_a_crash_streams_a_new_one(
    timed_orchestrator: Orchestrator, clock: FakeClock
) -> None:
    """A streamed retry of a stale answer streams a fresh answer into the same row."""
    app = timed_orchestrator
    conversation_id, _, answer = await crashed_answer(app, "crash-2")
    clock.advance(app.resources.liveness.stale_after.total_seconds() + 1)
    headers = {**app.as_user(), "Idempotency-Key": "crash-2", "accept": "text/event-stream"}
    response = await app.http.post(
        f"/api/conversations/{conversation_id}/messages",
        json={"content": QUESTION, "agent": "documentation"},
        headers=headers,
    )
    events = parse_sse(response.text)
    assert (events[0][0], events[-1][0]) == ("meta", "done")
    assert events[0][1]["message_id"] == str(answer.id)
    text = "".join(data["content"] for name, data in events if name == "delta")
    final = (await stored(app, conversation_id))[-1]
    assert (final.id, final.status, final.content) == (answer.id, "complete", text)
