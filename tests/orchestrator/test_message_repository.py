"""Messages in SQL: a question stored with its answer row, updates, and conditional final writes.

On SQLite and (marked ``postgres``) on PostgreSQL.
"""

from __future__ import annotations

import uuid

import pytest

from orchestrator.errors import (
    AnswerSuperseded,
    ConversationDeleted,
    IdempotencyInProgress,
    NotFound,
)
from orchestrator.llm import Usage
from orchestrator.models import Conversation, MessageStatus, Role
from orchestrator.repository import ConversationRepository
from tests.orchestrator.fakes import ManualClock


async def test_question_and_its_streaming_answer_are_stored_together(
    repo: ConversationRepository, conversation: Conversation
) -> None:
    """add_question stores the question and an empty streaming answer listed right after it."""
    question, answer = await repo.add_question(
        conversation, content="Brake wear pin?", idempotency_key="k1", request_id="r1"
    )
    stored = await repo.list_messages(conversation.id)
    assert [m.id for m in stored] == [question.id, answer.id]
    assert (stored[0].role, stored[0].status, stored[0].idempotency_key) == (
        "user",
        "complete",
        "k1",
    )
    assert (stored[1].role, stored[1].status, stored[1].content) == ("assistant", "streaming", "")
    assert (stored[1].reply_to_id, stored[1].request_id, stored[1].attempt) == (
        question.id,
        "r1",
        1,
    )
    assert stored[1].updated_at == stored[0].created_at
    titled = await repo.get_conversation(conversation.id)
    assert titled is not None
    assert titled.title == "Brake wear pin?"


async def test_a_taken_key_stores_neither_question_nor_answer(
    repo: ConversationRepository, conversation: Conversation
) -> None:
    """A second question with the same key raises IdempotencyInProgress and leaves no rows."""
    await repo.add_question(conversation, content="q", idempotency_key="same")
    with pytest.raises(IdempotencyInProgress):
        await repo.add_question(conversation, content="q", idempotency_key="same")
    assert len(await repo.list_messages(conversation.id)) == 2


async def test_update_stores_the_routing_usage_and_the_time_of_the_write(
    repo: ConversationRepository, conversation: Conversation, clock: ManualClock
) -> None:
    """update_message keeps the classifier's token counts apart from the answer's and dates it."""
    _, answer = await repo.add_question(conversation, content="q")
    clock.advance(3)
    await repo.update_message(
        answer.id, usage=Usage(10, 5, 15), classification_usage=Usage(180, 20, 200)
    )
    stored = (await repo.list_messages(conversation.id))[1]
    assert (stored.prompt_tokens, stored.completion_tokens, stored.total_tokens) == (10, 5, 15)
    assert (
        stored.classification_prompt_tokens,
        stored.classification_completion_tokens,
        stored.classification_total_tokens,
    ) == (180, 20, 200)
    assert stored.updated_at == clock.now


async def test_update_keeps_what_it_is_not_given(
    repo: ConversationRepository, conversation: Conversation
) -> None:
    """Arguments left None keep the stored route, text and usage."""
    _, answer = await repo.add_question(conversation, content="q")
    await repo.update_message(answer.id, agent="documentation", confidence=0.8, content="text")
    updated = await repo.update_message(answer.id, status=MessageStatus.COMPLETE)
    assert (updated.agent, updated.confidence, updated.content, updated.status) == (
        "documentation",
        0.8,
        "text",
        "complete",
    )


async def test_the_owning_attempt_writes_the_final_answer(
    repo: ConversationRepository, conversation: Conversation
) -> None:
    """update_message with the row's own attempt stores the answer like an unconditional one."""
    _, answer = await repo.add_question(conversation, content="q")
    stored = await repo.update_message(
        answer.id, attempt=1, content="Done.", status=MessageStatus.COMPLETE
    )
    assert (stored.content, stored.status, stored.attempt) == ("Done.", "complete", 1)


async def test_a_superseded_final_write_changes_nothing(
    repo: ConversationRepository, conversation: Conversation, clock: ManualClock
) -> None:
    """Once a retry claimed the row, the old attempt's final write raises and stores nothing."""
    _, answer = await repo.add_question(conversation, content="q")
    clock.advance(10)
    claimed = await repo.claim_answer(answer.id, stale_before=clock.now)
    assert claimed is not None
    await repo.update_message(answer.id, attempt=claimed.attempt, content="New answer.")
    with pytest.raises(AnswerSuperseded):
        await repo.update_message(
            answer.id, attempt=1, content="Old answer.", status=MessageStatus.PARTIAL
        )
    stored = (await repo.list_messages(conversation.id))[1]
    assert (stored.content, stored.status, stored.attempt) == ("New answer.", "streaming", 2)


async def test_a_conditional_write_of_a_deleted_answer_says_the_conversation_was_deleted(
    repo: ConversationRepository, conversation: Conversation
) -> None:
    """An attempt whose row is gone learns its conversation was deleted (no retry is blamed);
    without attempt it is NotFound."""
    with pytest.raises(ConversationDeleted):
        await repo.update_message(uuid.uuid4(), attempt=1, content="x")
    with pytest.raises(NotFound):
        await repo.update_message(uuid.uuid4(), content="x")


async def test_add_message_dates_its_first_write(
    repo: ConversationRepository, conversation: Conversation, clock: ManualClock
) -> None:
    """A message added on its own is written at its creation time, as its first attempt."""
    message = await repo.add_message(conversation, role=Role.USER, content="q")
    assert message.updated_at == message.created_at == clock.now
    assert message.attempt == 1
