"""The conversation repository, on SQLite and (marked ``postgres``) on PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import create_engine
from orchestrator.errors import IdempotencyInProgress, NotFound, StorageUnavailable
from orchestrator.llm import Usage
from orchestrator.models import MessageStatus, Role
from orchestrator.repository import TITLE_MAX_CHARS, ConversationRepository, title_from


class TickingClock:
    """A UTC clock that moves one second per reading, so every write has its own time."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def repo(engine: AsyncEngine) -> ConversationRepository:
    """This module's repository: a clock that ticks, so every write has its own time."""
    return ConversationRepository(engine, clock=TickingClock())


async def test_create_stores_owner_title_and_times(repo: ConversationRepository) -> None:
    """A new conversation is stored with its owner, trimmed title and UTC timestamps."""
    created = await repo.create_conversation(owner_sub="u1", owner_name="Ann", title="  Gear  ")
    stored = await repo.get_conversation(created.id)
    assert stored is not None
    assert (stored.owner_sub, stored.owner_name, stored.title) == ("u1", "Ann", "Gear")
    assert stored.created_at == created.created_at == stored.updated_at
    assert stored.created_at.tzinfo is not None
    assert stored.created_at.utcoffset() == timedelta(0)


async def test_get_unscoped_finds_any_owner_and_none_for_unknown(
    repo: ConversationRepository,
) -> None:
    """The unscoped get returns every user's conversation and None for an unknown id."""
    theirs = await repo.create_conversation(owner_sub="u2")
    assert (await repo.get_conversation(theirs.id)) is not None
    assert await repo.get_conversation(uuid.uuid4()) is None


async def test_get_owned_hides_foreign_and_missing(repo: ConversationRepository) -> None:
    """The owner-scoped get returns one's own conversation, None for a foreign or unknown id."""
    mine = await repo.create_conversation(owner_sub="u1")
    theirs = await repo.create_conversation(owner_sub="u2")
    assert (await repo.get_owned_conversation(mine.id, "u1")) is not None
    assert await repo.get_owned_conversation(theirs.id, "u1") is None
    assert await repo.get_owned_conversation(uuid.uuid4(), "u1") is None


async def test_list_for_owner_newest_activity_first_with_paging(
    repo: ConversationRepository,
) -> None:
    """An owner's list holds only theirs, most recently active first, paged with a total."""
    first = await repo.create_conversation(owner_sub="u1", title="first")
    second = await repo.create_conversation(owner_sub="u1", title="second")
    third = await repo.create_conversation(owner_sub="u1", title="third")
    await repo.create_conversation(owner_sub="u2", title="other")
    await repo.add_message(first, role=Role.USER, content="bump")

    page = await repo.list_for_owner("u1", limit=2, offset=0)
    assert [c.title for c in page.items] == ["first", "third"]
    assert (page.total, page.limit, page.offset) == (3, 2, 0)
    rest = await repo.list_for_owner("u1", limit=2, offset=2)
    assert [c.id for c in rest.items] == [second.id]
    assert third.id in {c.id for c in page.items}


async def test_list_all_spans_owners_and_filters_by_owner(repo: ConversationRepository) -> None:
    """Listing all returns every owner's conversations, or one owner's when filtered."""
    await repo.create_conversation(owner_sub="u1")
    await repo.create_conversation(owner_sub="u2")
    await repo.create_conversation(owner_sub="u2")
    everything = await repo.list_all()
    assert everything.total == 3
    assert {c.owner_sub for c in everything.items} == {"u1", "u2"}
    only_u2 = await repo.list_all(owner_sub="u2", limit=1)
    assert only_u2.total == 2
    assert [c.owner_sub for c in only_u2.items] == ["u2"]


async def test_first_user_message_titles_an_untitled_conversation(
    repo: ConversationRepository,
) -> None:
    """The first question titles an untitled conversation; later ones and answers do not."""
    untitled = await repo.create_conversation(owner_sub="u1")
    await repo.add_message(untitled, role=Role.ASSISTANT, content="not a title")
    await repo.add_message(untitled, role=Role.USER, content="Hydraulic   leak\non gear")
    await repo.add_message(untitled, role=Role.USER, content="second question")
    titled = await repo.create_conversation(owner_sub="u1", title="Kept")
    await repo.add_message(titled, role=Role.USER, content="question")

    assert (await repo.get_conversation(untitled.id)).title == "Hydraulic leak on gear"  # type: ignore[union-attr]
    assert (await repo.get_conversation(titled.id)).title == "Kept"  # type: ignore[union-attr]


def test_title_from_long_question_is_cut_with_an_ellipsis() -> None:
    """A long first question becomes a title of at most TITLE_MAX_CHARS ending in an ellipsis."""
    title = title_from("word " * 100)
    assert len(title) <= TITLE_MAX_CHARS
    assert title.endswith("…")


async def test_add_message_stores_every_field_and_touches_conversation(
    repo: ConversationRepository,
) -> None:
    """An answer keeps id, agent, confidence, method, usage, link and request id; activity moves."""
    conversation = await repo.create_conversation(owner_sub="u1")
    question = await repo.add_message(
        conversation, role=Role.USER, content="q", idempotency_key="k1", request_id="r1"
    )
    answer_id = uuid.uuid4()
    await repo.add_message(
        conversation,
        message_id=answer_id,
        role=Role.ASSISTANT,
        content="a",
        status=MessageStatus.PARTIAL,
        reply_to_id=question.id,
        agent="troubleshooting",
        confidence=0.75,
        classification_method="model",
        usage=Usage(10, 5, 15),
        request_id="r1",
    )
    messages = await repo.list_messages(conversation.id)
    assert [m.id for m in messages] == [question.id, answer_id]
    answer = messages[1]
    assert (answer.role, answer.content, answer.status) == ("assistant", "a", "partial")
    assert (answer.agent, answer.confidence, answer.classification_method) == (
        "troubleshooting",
        0.75,
        "model",
    )
    assert (answer.prompt_tokens, answer.completion_tokens, answer.total_tokens) == (10, 5, 15)
    assert (answer.reply_to_id, answer.request_id, answer.owner_sub) == (question.id, "r1", "u1")
    touched = await repo.get_conversation(conversation.id)
    assert touched is not None
    assert touched.updated_at == answer.created_at > conversation.updated_at


async def test_list_messages_only_that_conversation_oldest_first(
    repo: ConversationRepository,
) -> None:
    """Messages come back oldest first and never from another conversation."""
    one = await repo.create_conversation(owner_sub="u1")
    two = await repo.create_conversation(owner_sub="u1")
    for text in ("a", "b", "c"):
        await repo.add_message(one, role=Role.USER, content=text)
    await repo.add_message(two, role=Role.USER, content="elsewhere")
    assert [m.content for m in await repo.list_messages(one.id)] == ["a", "b", "c"]


async def test_update_message_finalises_a_partial_answer(repo: ConversationRepository) -> None:
    """Updating sets content, status, usage and routing; unspecified fields stay."""
    conversation = await repo.create_conversation(owner_sub="u1")
    question = await repo.add_message(conversation, role=Role.USER, content="q")
    answer = await repo.add_message(
        conversation,
        role=Role.ASSISTANT,
        content="",
        status=MessageStatus.FAILED,
        reply_to_id=question.id,
        agent="documentation",
    )
    await repo.update_message(
        answer.id,
        content="full answer",
        status=MessageStatus.COMPLETE,
        usage=Usage(3, 4, 7),
        agent="planning",
        confidence=0.9,
        classification_method="keywords",
    )
    await repo.update_message(answer.id)
    stored = (await repo.list_messages(conversation.id))[1]
    assert (stored.content, stored.status, stored.total_tokens) == ("full answer", "complete", 7)
    assert (stored.agent, stored.confidence, stored.classification_method) == (
        "planning",
        0.9,
        "keywords",
    )


async def test_update_unknown_message_is_not_found(repo: ConversationRepository) -> None:
    """Updating a message that does not exist raises NotFound."""
    with pytest.raises(NotFound):
        await repo.update_message(uuid.uuid4(), content="x")


async def test_delete_removes_conversation_and_messages_of_owner_only(
    repo: ConversationRepository,
) -> None:
    """Deleting removes the owner's conversation with its messages; others stay; foreign fails."""
    doomed = await repo.create_conversation(owner_sub="u1")
    kept = await repo.create_conversation(owner_sub="u1")
    question = await repo.add_message(doomed, role=Role.USER, content="q", idempotency_key="k")
    await repo.add_message(doomed, role=Role.ASSISTANT, content="a", reply_to_id=question.id)
    await repo.add_message(kept, role=Role.USER, content="stays")

    assert await repo.delete_conversation(doomed.id, "u2") is False
    assert await repo.delete_conversation(doomed.id, "u1") is True
    assert await repo.delete_conversation(doomed.id, "u1") is False

    assert await repo.get_conversation(doomed.id) is None
    assert await repo.list_messages(doomed.id) == []
    assert await repo.find_by_idempotency_key("u1", "k") is None
    assert [m.content for m in await repo.list_messages(kept.id)] == ["stays"]


async def test_idempotency_key_is_unique_per_owner(repo: ConversationRepository) -> None:
    """A key finds its owner's message only; reusing it raises, another owner may use it too."""
    mine = await repo.create_conversation(owner_sub="u1")
    theirs = await repo.create_conversation(owner_sub="u2")
    sent = await repo.add_message(mine, role=Role.USER, content="q", idempotency_key="same")
    await repo.add_message(theirs, role=Role.USER, content="q", idempotency_key="same")

    found = await repo.find_by_idempotency_key("u1", "same")
    assert found is not None
    assert found.id == sent.id
    assert await repo.find_by_idempotency_key("u1", "other") is None
    with pytest.raises(IdempotencyInProgress):
        await repo.add_message(mine, role=Role.USER, content="q", idempotency_key="same")


async def test_add_message_to_deleted_conversation_is_not_found(
    repo: ConversationRepository,
) -> None:
    """A message for a conversation deleted meanwhile raises NotFound (foreign key)."""
    conversation = await repo.create_conversation(owner_sub="u1")
    await repo.delete_conversation(conversation.id, "u1")
    with pytest.raises(NotFound):
        await repo.add_message(conversation, role=Role.USER, content="late")
    with pytest.raises(NotFound):
        await repo.add_message(conversation, role=Role.USER, content="late", idempotency_key="k")


async def test_find_reply_returns_the_answer_of_a_question(repo: ConversationRepository) -> None:
    """find_reply gives the answer linked to a question, None before there is one."""
    conversation = await repo.create_conversation(owner_sub="u1")
    question = await repo.add_message(conversation, role=Role.USER, content="q")
    assert await repo.find_reply(question.id) is None
    answer = await repo.add_message(
        conversation, role=Role.ASSISTANT, content="a", reply_to_id=question.id
    )
    found = await repo.find_reply(question.id)
    assert found is not None
    assert found.id == answer.id


async def test_ping_answers_on_a_working_database(repo: ConversationRepository) -> None:
    """ping returns quietly when the database answers."""
    await repo.ping()


async def test_database_failure_is_storage_unavailable(tmp_path: Path) -> None:
    """A database that cannot be opened surfaces as StorageUnavailable, not a driver error."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}")  # a folder, not a file
    repo = ConversationRepository(engine)
    try:
        with pytest.raises(StorageUnavailable) as caught:
            await repo.ping()
        assert caught.value.code == "storage_unavailable"
        with pytest.raises(StorageUnavailable):
            await repo.create_conversation(owner_sub="u1")
    finally:
        await engine.dispose()
