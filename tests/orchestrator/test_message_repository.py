"""Answers written as they stream: question and answer row together, progress, claims.

On SQLite and (marked ``postgres``) on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import create_engine
from orchestrator.errors import IdempotencyInProgress
from orchestrator.migrate import upgrade
from orchestrator.models import Conversation, MessageStatus, Role
from orchestrator.repository import ConversationRepository
from tests.fixtures.postgres import fresh_schema


class ManualClock:
    """A UTC clock the test moves; every reading without a move gives the same time."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(
        "database_url" if request.param == "sqlite" else "postgres_url"
    )
    return url


@pytest.fixture
async def engine(backend_url: str) -> AsyncIterator[AsyncEngine]:
    if backend_url.startswith("sqlite"):
        engine = create_engine(backend_url)
        yield engine
        await engine.dispose()
        return
    async with fresh_schema(backend_url) as engine:
        await upgrade(engine)
        yield engine


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def repo(engine: AsyncEngine, clock: ManualClock) -> ConversationRepository:
    return ConversationRepository(engine, clock=clock)


@pytest.fixture
async def conversation(repo: ConversationRepository) -> Conversation:
    return await repo.create_conversation(owner_sub="u1")


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
    assert (stored[1].reply_to_id, stored[1].request_id) == (question.id, "r1")
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


async def test_progress_is_saved_with_its_time_while_streaming_only(
    repo: ConversationRepository, conversation: Conversation, clock: ManualClock
) -> None:
    """save_progress writes text and time of a streaming answer; a finished one is left alone."""
    _, answer = await repo.add_question(conversation, content="q")
    clock.advance(5)
    assert await repo.save_progress(answer.id, "First words") is True
    saved = (await repo.list_messages(conversation.id))[1]
    assert (saved.content, saved.status, saved.updated_at) == (
        "First words",
        "streaming",
        clock.now,
    )
    await repo.update_message(answer.id, content="All of it.", status=MessageStatus.COMPLETE)
    assert await repo.save_progress(answer.id, "First words and more") is False
    assert (await repo.list_messages(conversation.id))[1].content == "All of it."


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


async def test_a_failed_answer_is_claimed_once_and_emptied(
    repo: ConversationRepository, conversation: Conversation, clock: ManualClock
) -> None:
    """A claimed failed answer is streaming, empty, without usage; a second claim fails."""
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
    again = await repo.claim_answer(answer.id, stale_before=clock.now - timedelta(seconds=60))
    assert again is None


async def test_a_streaming_answer_is_claimed_only_once_stale(
    repo: ConversationRepository, conversation: Conversation, clock: ManualClock
) -> None:
    """A streaming answer written after stale_before is not claimable; one written before is."""
    _, answer = await repo.add_question(conversation, content="q")
    await repo.save_progress(answer.id, "Some words")
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
    far_future = datetime(2100, 1, 1, tzinfo=UTC)
    assert await repo.claim_answer(answer.id, stale_before=far_future) is None
    assert (await repo.list_messages(conversation.id))[1].content == "kept"


async def test_claiming_an_unknown_answer_finds_nothing(repo: ConversationRepository) -> None:
    """An id that matches no row is not claimable."""
    far_future = datetime(2100, 1, 1, tzinfo=UTC)
    assert await repo.claim_answer(uuid.uuid4(), stale_before=far_future) is None


async def test_add_message_dates_its_first_write(
    repo: ConversationRepository, conversation: Conversation, clock: ManualClock
) -> None:
    """A message added on its own is written at its creation time."""
    message = await repo.add_message(conversation, role=Role.USER, content="q")
    assert message.updated_at == message.created_at == clock.now
