"""Streamed answers (``Accept: text/event-stream``): events, cut streams, disconnects, replays."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from orchestrator.api import create_app
from orchestrator.db import create_engine
from orchestrator.llm import ChatMessage, StreamDelta, StreamEnd
from orchestrator.models import Message
from orchestrator.repository import ConversationRepository
from tests.fixtures.azure import FakeAzure
from tests.fixtures.orchestrator import (
    AssertionSigner,
    LiveOrchestrator,
    Orchestrator,
    ScriptedLLM,
    orchestrator_for,
    parse_sse,
    settings_for_tests,
    wait_for,
)

QUESTION = "Where is the brake wear pin limit for the main wheels?"
STREAM = {"accept": "text/event-stream"}


async def stream(
    orchestrator: Orchestrator,
    conversation_id: str,
    body: dict[str, Any] | None = None,
    *,
    key: str | None = None,
) -> httpx.Response:
    headers = {**orchestrator.as_user(), **STREAM}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await orchestrator.http.post(
        f"/api/conversations/{conversation_id}/messages",
        json=body or {"content": QUESTION, "agent": "documentation"},
        headers=headers,
    )


async def stored(orchestrator: Orchestrator, conversation_id: str) -> list[Message]:
    return await orchestrator.resources.repository.list_messages(uuid.UUID(conversation_id))


async def test_stream_sends_meta_deltas_done_and_stores_the_answer(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """meta, then deltas, then done with usage; the stored answer is their concatenation."""
    azure.queue_response(
        "Check the AMM task for the wear pin.", usage={"prompt_tokens": 9, "completion_tokens": 8}
    )
    conversation_id = await orchestrator.conversation()
    response = await stream(orchestrator, conversation_id)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-store"
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[0] == "meta"
    assert names[-1] == "done"
    assert set(names[1:-1]) == {"delta"}
    meta, done = events[0][1], events[-1][1]
    assert (meta["agent"], meta["confidence"]) == ("documentation", 1.0)
    assert done == {
        "message_id": meta["message_id"],
        "usage": {"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17},
        "partial": False,
    }
    text = "".join(data["content"] for name, data in events if name == "delta")
    assert text == "Check the AMM task for the wear pin."
    question, answer = await stored(orchestrator, conversation_id)
    assert str(question.id) == meta["user_message_id"]
    assert (str(answer.id), answer.content, answer.status) == (meta["message_id"], text, "complete")
    assert (answer.total_tokens, answer.agent, answer.classification_method) == (
        17,
        "documentation",
        "explicit",
    )


async def test_stream_with_classification_announces_the_chosen_agent(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """Without an explicit agent the meta event carries the classifier's choice."""
    azure.queue_response('{"agent": "troubleshooting", "confidence": 0.8, "reasoning": "fault"}')
    conversation_id = await orchestrator.conversation()
    response = await stream(orchestrator, conversation_id, {"content": QUESTION})
    meta = parse_sse(response.text)[0][1]
    assert (meta["agent"], meta["confidence"], meta["method"]) == ("troubleshooting", 0.8, "model")


async def test_failure_before_the_first_chunk_is_a_problem_not_a_stream(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """A model that refuses at once yields 503 problem+json with Retry-After, question kept."""
    azure.inject_fault("429", retry_after=3)
    conversation_id = await orchestrator.conversation()
    response = await stream(orchestrator, conversation_id)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "3"
    assert [(m.role, m.status) for m in await stored(orchestrator, conversation_id)] == [
        ("user", "complete"),
        ("assistant", "failed"),
    ]


async def test_stream_cut_upstream_sends_error_and_stores_partial(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """An upstream cut mid-answer ends with an error event; what arrived is stored as partial."""
    azure.inject_fault("cut", after_chunks=3)
    conversation_id = await orchestrator.conversation()
    response = await stream(orchestrator, conversation_id)

    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["meta", "delta", "delta", "delta", "error"]
    error = events[-1][1]
    assert (error["status"], error["code"], error["partial"]) == (503, "llm_unavailable", True)
    assert error["type"].endswith("/llm_unavailable")
    assert error["message_id"] == events[0][1]["message_id"]
    received = "".join(data["content"] for name, data in events if name == "delta")
    question, answer = await stored(orchestrator, conversation_id)
    assert question.content == QUESTION
    assert (str(answer.id), answer.status, answer.content) == (
        error["message_id"],
        "partial",
        received,
    )


async def test_malformed_chunk_mid_stream_is_a_502_error_event(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """An unreadable chunk mid-stream ends the stream with a 502 error event, partial stored."""
    azure.inject_fault("malformed", after_chunks=2)
    conversation_id = await orchestrator.conversation()
    response = await stream(orchestrator, conversation_id)
    name, error = parse_sse(response.text)[-1]
    assert (name, error["status"], error["code"]) == ("error", 502, "llm_bad_response")
    assert (await stored(orchestrator, conversation_id))[-1].status == "partial"


async def test_streamed_retry_with_same_key_replays(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """A streamed retry with the same key replays the stored answer under the same ids."""
    conversation_id = await orchestrator.conversation()
    first = parse_sse((await stream(orchestrator, conversation_id, key="stream-1")).text)
    again = await stream(orchestrator, conversation_id, key="stream-1")
    replay = parse_sse(again.text)

    assert again.headers["idempotent-replayed"] == "true"
    assert [name for name, _ in replay] == ["meta", "delta", "done"]
    assert replay[0][1]["message_id"] == first[0][1]["message_id"]
    assert replay[-1][1] == first[-1][1]
    first_text = "".join(data["content"] for name, data in first if name == "delta")
    assert replay[1][1]["content"] == first_text
    assert len(azure.calls()) == 1


async def test_whole_retry_of_a_streamed_send_returns_the_same_ids(
    orchestrator: Orchestrator,
) -> None:
    """A non-streamed retry with the key of a streamed send returns that exchange as JSON."""
    conversation_id = await orchestrator.conversation()
    first = parse_sse((await stream(orchestrator, conversation_id, key="mixed-1")).text)
    response = await orchestrator.http.post(
        f"/api/conversations/{conversation_id}/messages",
        json={"content": QUESTION, "agent": "documentation"},
        headers={**orchestrator.as_user(), "Idempotency-Key": "mixed-1"},
    )
    assert response.status_code == 201
    assert response.json()["assistant_message"]["id"] == first[0][1]["message_id"]


async def test_client_disconnect_mid_stream_stores_partial(
    database_url: str, azure: FakeAzure, assertion_signer: AssertionSigner
) -> None:
    """A client that hangs up mid-answer leaves the received part stored as partial."""
    azure.inject_fault("slow", after_chunks=2, delay=3.0)
    settings = settings_for_tests(database_url, azure)
    app = create_app(settings, jwks=assertion_signer.jwks())
    engine = create_engine(database_url)
    repository = ConversationRepository(engine)
    try:
        with LiveOrchestrator(app) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                headers = assertion_signer.headers("u1")
                created = await client.post("/api/conversations", json={}, headers=headers)
                conversation_id = uuid.UUID(created.json()["id"])
                deltas = await _read_deltas_then_hang_up(client, conversation_id, headers, 2)

            async def partial_answer() -> Message | None:
                messages = await repository.list_messages(conversation_id)
                last = messages[-1]
                return last if last.role == "assistant" and last.status == "partial" else None

            answer = await wait_for(partial_answer, within=5)
            assert answer.content == "".join(deltas)
            assert len(await repository.list_messages(conversation_id)) == 2
    finally:
        await engine.dispose()


async def _read_deltas_then_hang_up(
    client: httpx.AsyncClient, conversation_id: uuid.UUID, headers: dict[str, str], count: int
) -> list[str]:
    deltas: list[str] = []
    async with client.stream(
        "POST",
        f"/api/conversations/{conversation_id}/messages",
        json={"content": QUESTION, "agent": "documentation"},
        headers={**headers, **STREAM},
    ) as response:
        assert response.status_code == 200
        buffer = ""
        async for text in response.aiter_text():
            buffer += text
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                for name, data in parse_sse(block + "\n\n"):
                    if name == "delta":
                        deltas.append(data["content"])
            if len(deltas) >= count:
                break
    return deltas


async def test_done_without_upstream_usage_says_null(
    database_url: str, assertion_signer: AssertionSigner
) -> None:
    """A model that reports no usage gives ``usage: null`` in done; nothing is invented."""
    llm = ScriptedLLM()
    llm.stream_items = [StreamDelta("Short answer.")]
    settings = settings_for_tests(database_url, None)
    async with orchestrator_for(settings, assertion_signer, llm=llm) as orchestrator:
        conversation_id = await orchestrator.conversation()
        events = parse_sse((await stream(orchestrator, conversation_id)).text)
        assert events[-1] == (
            "done",
            {"message_id": events[0][1]["message_id"], "usage": None, "partial": False},
        )
        answer = (await stored(orchestrator, conversation_id))[-1]
        assert (answer.content, answer.total_tokens) == ("Short answer.", None)


async def test_meta_reports_the_routing_calls_usage_as_recorded(
    orchestrator: Orchestrator, azure: FakeAzure
) -> None:
    """meta carries the classifier's usage and done the answer's, each as the server recorded it."""
    azure.queue_response('{"agent": "troubleshooting", "confidence": 0.8, "reasoning": "fault"}')
    conversation_id = await orchestrator.conversation()
    events = parse_sse(
        (await stream(orchestrator, conversation_id, {"content": QUESTION}, key="s-1")).text
    )
    classify, answer_call = azure.calls()
    recorded = azure.usage()
    meta, done = events[0][1], events[-1][1]
    assert meta["classification_usage"] == recorded[classify.seq]
    assert done["usage"] == recorded[answer_call.seq]

    replay = parse_sse(
        (await stream(orchestrator, conversation_id, {"content": QUESTION}, key="s-1")).text
    )
    assert replay[0][1]["classification_usage"] == recorded[classify.seq]


async def test_meta_has_no_routing_usage_for_an_explicit_agent(orchestrator: Orchestrator) -> None:
    """A question that names its agent costs no routing call: classification_usage is null."""
    conversation_id = await orchestrator.conversation()
    meta = parse_sse((await stream(orchestrator, conversation_id)).text)[0][1]
    assert (meta["method"], meta["classification_usage"]) == ("explicit", None)


class TakenOverLLM(ScriptedLLM):
    """A model whose answer row a retry takes over right after its first chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.repository: ConversationRepository | None = None
        self.conversation_id: uuid.UUID | None = None

    def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> AsyncIterator[StreamDelta | StreamEnd]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[StreamDelta | StreamEnd]:
        assert self.repository is not None
        assert self.conversation_id is not None
        yield StreamDelta("Old ")
        answer = (await self.repository.list_messages(self.conversation_id))[-1]
        far_future = datetime(2100, 1, 1, tzinfo=UTC)
        assert await self.repository.claim_answer(answer.id, stale_before=far_future)
        yield StreamDelta("words.")


async def test_a_stream_taken_over_by_a_retry_ends_with_an_error_event(
    database_url: str, assertion_signer: AssertionSigner
) -> None:
    """A superseded stream ends with an answer_superseded error event, storing none of it."""
    llm = TakenOverLLM()
    settings = settings_for_tests(database_url, None)
    async with orchestrator_for(settings, assertion_signer, llm=llm) as orchestrator:
        conversation_id = await orchestrator.conversation()
        llm.repository = orchestrator.resources.repository
        llm.conversation_id = uuid.UUID(conversation_id)
        events = parse_sse((await stream(orchestrator, conversation_id)).text)
        name, error = events[-1]
        assert (name, error["code"], error["status"], error["partial"]) == (
            "error",
            "answer_superseded",
            409,
            False,
        )
        assert "done" not in [event for event, _ in events]
        answer = (await stored(orchestrator, conversation_id))[-1]
        assert (answer.content, answer.status, answer.attempt) == ("", "streaming", 2)


class DeletedMidStreamLLM(ScriptedLLM):
    """A model whose conversation its owner deletes right after the first chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.repository: ConversationRepository | None = None
        self.conversation_id: uuid.UUID | None = None

    def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> AsyncIterator[StreamDelta | StreamEnd]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[StreamDelta | StreamEnd]:
        assert self.repository is not None
        assert self.conversation_id is not None
        yield StreamDelta("Half ")
        owner = (await self.repository.list_messages(self.conversation_id))[-1].owner_sub
        assert await self.repository.delete_conversation(self.conversation_id, owner)
        yield StreamDelta("an answer.")


async def test_deleting_the_conversation_mid_stream_ends_with_conversation_deleted(
    database_url: str, assertion_signer: AssertionSigner, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream whose conversation is deleted ends with 410 conversation_deleted, no retry
    blamed, no row left behind, and a log line saying so."""
    llm = DeletedMidStreamLLM()
    settings = settings_for_tests(database_url, None)
    async with orchestrator_for(settings, assertion_signer, llm=llm) as orchestrator:
        conversation_id = await orchestrator.conversation()
        llm.repository = orchestrator.resources.repository
        llm.conversation_id = uuid.UUID(conversation_id)
        with caplog.at_level(logging.INFO, logger="orchestrator"):
            events = parse_sse((await stream(orchestrator, conversation_id)).text)
        name, error = events[-1]
        assert (name, error["code"], error["status"], error["partial"]) == (
            "error",
            "conversation_deleted",
            410,
            False,
        )
        assert "retry" not in error["detail"]
        assert "done" not in [event for event, _ in events]
        assert await stored(orchestrator, conversation_id) == []
        gone = await orchestrator.http.get(
            f"/api/conversations/{conversation_id}", headers=orchestrator.as_user()
        )
        assert gone.status_code == 404
        assert any(
            "deleted" in r.getMessage() and "retry" not in r.getMessage() for r in caplog.records
        ), [r.getMessage() for r in caplog.records]
