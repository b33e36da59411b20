"""Answers that stream: progress saved by the owning attempt, takeover of failed or stale rows.

On SQLite and (marked ``postgres``) on PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.llm import Usage
from orchestrator.models import Conversation, MessageStatus
from orchestrator.repository import ConversationRepository
from tests.orchestrator.fakes import ManualClock

FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


async def test_progress_is_saved_with_its_time_while_streaming_only(
    repo: ConversationRepository, conversation: Conversation, clock: ManualClock
) -> None:
    """save_progress writes text and time of a streaming answer; a finished one is left alone."""
    _, answer = await repo.add_question(conversation, content="q")
    clock.advance(5)
    assert await repo.save_progress(answer.id, "First words", attempt=1) is True
    saved = (await repo.list_messages(conversation.id))[1]
    assert (saved.content, saved.status, saved.updated_at) == (
        "First words",
        "streaming",
        clock.now,
    )
    await repo.update_message(answer.id, content="All of it.", status=MessageStatus.COMPLETE)
    assert await repo.save_progress(answer.id, "First words and more", attempt=1) is False
    assert (await repo.list_messages(conversation.id))[1].content == "All of it."


async def test_a_superseded_attempt_saves_nothing(
    repo: ConversationRepository, conversation: Conversation, clock: ManualClock
) -> None:
    """After a retry claimed the row, the old attempt's saves change neither text nor time."""
    _, answer = await repo.add_question(conversation, content="q")
    assert await repo.save_progress(answer.id, "Old words", attempt=1)
    clock.advance(60)
    claimed = await repo.claim_answer(answer.id, stale_before=clock.now)
    assert claimed is not None
    claimed_at = clock.now
    clock.advance(1)
    assert await repo.save_progress(answer.id, "Old words and more", attempt=1) is False
    stored = (await repo.list_messages(conversation.id))[1]
    assert (stored.content, stored.updated_at, stored.attempt) == ("", claimed_at, 2)
    assert await repo.save_progress(answer.id, "New words", attempt=2) is True
    assert (await repo.list_messages(conversation.id))[1].content == "New words"


async def test_a_failed_answer_is_claimed_once_and_emptied(
    repo: ConversationRepository, conversation: Conversation, clock: ManualClock
) -> None:
    """A claimed failed answer is streaming, empty, without usage, one attempt further on."""
    _, answer = await repo.add_question(conversation, content="q")
    await repo.update_message(
        answer.id,
        content="cut",
        status=MessageStatus.FAILED,
        usage=Usage(1, 2, 3),
        classification_usage=Usage(4, 5, 9),
    )
    clock.advance(1)
    claimed = await repo.claim_answer(answer.id, stale_before=clock.now - timedelta(seconds=60))
    assert claimed is not None
    assert (claimed.id, claimed.status, claimed.content, claimed.updated_at) == (
        answer.id,
        "streaming",
        "",
        clock.now,
    )
    assert (claimed.total_tokens, claimed.classification_total_tokens) == (None, None)
    assert claimed.attempt == answer.attempt + 1
    again = await repo.claim_answer(answer.id, stale_before=clock.now - timedelta(seconds=60))
    assert again is None


async def test_every_claim_is_a_new_attempt(
    repo: ConversationRepository, conversation: Conversation
) -> None:
    """A row claimed, failed and claimed again counts three attempts."""
    _, answer = await repo.add_question(conversation, content="q")
    await repo.update_message(answer.id, attempt=1, status=MessageStatus.FAILED)
    first = await repo.claim_answer(answer.id, stale_before=FAR_FUTURE)
    assert first is not None
    await repo.update_message(answer.id, attempt=first.attempt, status=MessageStatus.FAILED)
    second = await repo.claim_answer(answer.id, stale_before=FAR_FUTURE)
    assert second is not None
    assert (first.attempt, second.attempt) == (2, 3)


async def test_a_streaming_answer_is_claimed_only_once_stale(
    repo: ConversationRepository, conversation: Conversation, clock: ManualClock
) -> None:
    """A streaming answer written after stale_before is not claimable; one written before is."""
    _, answer = await repo.add_question(conversation, content="q")
    await repo.save_progress(answer.id, "Some words", attempt=1)
    written = clock.now
    assert await repo.claim_answer(answer.id, stale_before=written) is None
    assert (await repo.list_messages(conversation.id))[1].content == "Some words"
    claimed = await repo.claim_answer(answer.id, stale_before=written + timedelta(microseconds=1))
    assert claimed is not None
    assert claimed.content == ""


@pytest.mark.parametrize("status", [MessageStatus.COMPLETE, MessageStatus.PARTIAL])
async def test_finished_answers_are_never_claimed(
    repo: ConversationRepository, conversation: Conversation, status: MessageStatus
) -> None:
    """A complete or partial answer stays as it is, however old."""
    _, answer = await repo.add_question(conversation, content="q")
    await repo.update_message(answer.id, content="kept", status=status)
    assert await repo.claim_answer(answer.id, stale_before=FAR_FUTURE) is None
    assert (await repo.list_messages(conversation.id))[1].content == "kept"


async def test_claiming_an_unknown_answer_finds_nothing(repo: ConversationRepository) -> None:
    """An id that matches no row is not claimable."""
    assert await repo.claim_answer(uuid.uuid4(), stale_before=FAR_FUTURE) is None
