"""Conversation turns below the HTTP layer, with a scripted model for the rare paths."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from orchestrator.answer_liveness import AnswerLiveness
from orchestrator.chat import AnswerStream, ChatService, Question
from orchestrator.db import create_engine
from orchestrator.errors import AnswerSuperseded, IdempotencyInProgress
from orchestrator.llm import StreamDelta, StreamEnd, Usage
from orchestrator.models import Conversation, Message, MessageStatus, Role
from orchestrator.repository import ConversationRepository
from tests.fixtures.orchestrator import ScriptedLLM, make_principal
from tests.orchestrator.fakes import FedLLM, ManualClock, Upstream


async def test_history_leaves_out_failed_answers_and_keeps_the_last_turns(
    repository: ConversationRepository, scripted_llm: ScriptedLLM
) -> None:
    """The model sees at most max_history earlier turns and never a failed, empty answer."""
    conversation_id = (await repository.create_conversation(owner_sub="u1")).id
    conversation = await repository.get_conversation(conversation_id)
    assert conversation is not None
    for n in range(3):
        await repository.add_message(conversation, role=Role.USER, content=f"q{n}")
        await repository.add_message(
            conversation,
            role=Role.ASSISTANT,
            content="" if n == 2 else f"a{n}",
            status=MessageStatus.FAILED if n == 2 else MessageStatus.COMPLETE,
        )
    service = ChatService(repository, scripted_llm, max_history=3)
    await service.ask(make_principal(), conversation_id, Question("q3", agent="documentation"))
    assert [m["content"] for m in scripted_llm.sent[-1][1:]] == ["q1", "a1", "q2", "q3"]


async def test_no_history_when_max_history_is_zero(
    repository: ConversationRepository, scripted_llm: ScriptedLLM
) -> None:
    """With max_history 0 only the system prompt and the question are sent."""
    conversation_id = (await repository.create_conversation(owner_sub="u1")).id
    service = ChatService(repository, scripted_llm, max_history=0)
    await service.ask(make_principal(), conversation_id, Question("first", agent="documentation"))
    await service.ask(make_principal(), conversation_id, Question("second", agent="documentation"))
    assert [m["role"] for m in scripted_llm.sent[-1]] == ["system", "user"]


async def test_cancelled_request_still_stores_a_failed_answer(
    repository: ConversationRepository, scripted_llm: ScriptedLLM
) -> None:
    """When the request is cancelled while the model thinks, the failed answer is still stored."""
    conversation_id = (await repository.create_conversation(owner_sub="u1")).id
    scripted_llm.blocking = True
    service = ChatService(repository, scripted_llm)
    task = asyncio.create_task(
        service.ask(make_principal(), conversation_id, Question("q", agent="documentation"))
    )
    await scripted_llm.called.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    statuses = [(m.role, m.status) for m in await repository.list_messages(conversation_id)]
    assert statuses == [("user", "complete"), ("assistant", "failed")]


async def test_cancelled_routing_records_a_failure_and_a_retry_answers(
    repository: ConversationRepository, scripted_llm: ScriptedLLM
) -> None:
    """Cancelled while routing, the question gets a failed answer; its key can then be retried."""
    conversation_id = (await repository.create_conversation(owner_sub="u1")).id
    scripted_llm.blocking = True
    service = ChatService(repository, scripted_llm)
    question = Question("Which AMM task?", idempotency_key="k-1")
    task = asyncio.create_task(service.ask(make_principal(), conversation_id, question))
    await scripted_llm.called.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    statuses = [(m.role, m.status) for m in await repository.list_messages(conversation_id)]
    assert statuses == [("user", "complete"), ("assistant", "failed")]

    scripted_llm.blocking = False
    scripted_llm.answer = '{"agent": "documentation", "confidence": 0.9, "reasoning": "manual"}'
    exchange = await service.ask(make_principal(), conversation_id, question)
    assert exchange.assistant.status == "complete"
    assert len(await repository.list_messages(conversation_id)) == 2


STALE_AFTER = timedelta(seconds=60)


@pytest.fixture
async def timed(database_url: str, clock: ManualClock) -> AsyncIterator[ConversationRepository]:
    """A repository whose timestamps come from the test's clock."""
    engine = create_engine(database_url)
    yield ConversationRepository(engine, clock=clock)
    await engine.dispose()


def service_at(
    repository: ConversationRepository, llm: ScriptedLLM, clock: ManualClock
) -> ChatService:
    return ChatService(repository, llm, liveness=AnswerLiveness(STALE_AFTER, clock))


async def crashed_turn(
    repository: ConversationRepository, key: str, text: str = "The APU starter is"
) -> tuple[Conversation, Message, Message]:
    """What a process killed mid-stream leaves: a question, a streaming answer with some text."""
    conversation = await repository.create_conversation(owner_sub="u1")
    question, answer = await repository.add_question(
        conversation, content="Where is the APU starter?", idempotency_key=key
    )
    await repository.update_message(answer.id, agent="documentation", confidence=1.0)
    await repository.save_progress(answer.id, text, attempt=answer.attempt)
    return conversation, question, answer


async def test_a_retry_while_the_answer_is_still_written_is_in_progress(
    timed: ConversationRepository, scripted_llm: ScriptedLLM, clock: ManualClock
) -> None:
    """Until the streaming answer is stale, its key answers IdempotencyInProgress (409)."""
    conversation, _, _ = await crashed_turn(timed, "k-live")
    clock.advance(STALE_AFTER.total_seconds())
    service = service_at(timed, scripted_llm, clock)
    question = Question(
        "Where is the APU starter?", agent="documentation", idempotency_key="k-live"
    )
    with pytest.raises(IdempotencyInProgress) as busy:
        await service.ask(make_principal(), conversation.id, question)
    assert scripted_llm.sent == []
    assert busy.value.retry_after == 1


async def test_a_retry_of_a_stale_answer_answers_again_under_the_same_ids(
    timed: ConversationRepository, scripted_llm: ScriptedLLM, clock: ManualClock
) -> None:
    """Once stale, the same key asks the model again; the answer replaces the cut one in place."""
    conversation, question, answer = await crashed_turn(timed, "k-stale")
    clock.advance(STALE_AFTER.total_seconds() + 1)
    service = service_at(timed, scripted_llm, clock)
    retry = Question("Where is the APU starter?", agent="documentation", idempotency_key="k-stale")
    exchange = await service.ask(make_principal(), conversation.id, retry)
    assert not exchange.replayed
    assert (exchange.user.id, exchange.assistant.id) == (question.id, answer.id)
    assert (exchange.assistant.content, exchange.assistant.status) == (
        "Scripted answer.",
        "complete",
    )
    stored = await timed.list_messages(conversation.id)
    assert [(m.role, m.status) for m in stored] == [("user", "complete"), ("assistant", "complete")]


async def test_two_retries_of_a_stale_answer_answer_it_once(
    timed: ConversationRepository, scripted_llm: ScriptedLLM, clock: ManualClock
) -> None:
    """Of two retries at once, one takes the stale answer over, the other is told it is busy."""
    conversation, _, _ = await crashed_turn(timed, "k-twice")
    clock.advance(STALE_AFTER.total_seconds() + 1)
    service = service_at(timed, scripted_llm, clock)
    retry = Question("Where is the APU starter?", agent="documentation", idempotency_key="k-twice")
    outcomes = await asyncio.gather(
        service.ask(make_principal(), conversation.id, retry),
        service.ask(make_principal(), conversation.id, retry),
        return_exceptions=True,
    )
    assert sorted(type(outcome).__name__ for outcome in outcomes) == [
        "Exchange",
        "IdempotencyInProgress",
    ]
    assert len(scripted_llm.sent) == 1


async def test_a_stale_question_without_an_answer_row_is_answered(
    timed: ConversationRepository, scripted_llm: ScriptedLLM, clock: ManualClock
) -> None:
    """A question stored before answers had their row gets one when its key is retried late."""
    conversation = await timed.create_conversation(owner_sub="u1")
    question = await timed.add_message(
        conversation, role=Role.USER, content="q", idempotency_key="k-old"
    )
    clock.advance(STALE_AFTER.total_seconds() + 1)
    service = service_at(timed, scripted_llm, clock)
    exchange = await service.ask(
        make_principal(),
        conversation.id,
        Question("q", agent="documentation", idempotency_key="k-old"),
    )
    assert exchange.user.id == question.id
    assert exchange.assistant.reply_to_id == question.id
    assert len(await timed.list_messages(conversation.id)) == 2


async def test_history_keeps_stale_text_and_leaves_out_answers_being_written(
    timed: ConversationRepository, scripted_llm: ScriptedLLM, clock: ManualClock
) -> None:
    """A stale answer counts as cut text; another request's answer still streaming is left out."""
    conversation = await timed.create_conversation(owner_sub="u1")
    _, cut = await timed.add_question(conversation, content="q-old")
    await timed.save_progress(cut.id, "cut text", attempt=1)
    clock.advance(STALE_AFTER.total_seconds() + 1)
    _, live = await timed.add_question(conversation, content="q-live")
    await timed.save_progress(live.id, "live text", attempt=1)
    clock.advance(1)
    service = service_at(timed, scripted_llm, clock)
    await service.ask(make_principal(), conversation.id, Question("q-new", agent="documentation"))
    assert [m["content"] for m in scripted_llm.sent[-1][1:]] == [
        "q-old",
        "cut text",
        "q-live",
        "q-new",
    ]


async def test_the_routing_calls_usage_is_stored_with_the_answer(
    repository: ConversationRepository, scripted_llm: ScriptedLLM
) -> None:
    """A question routed by the model keeps that call's token counts beside the answer's."""
    conversation_id = (await repository.create_conversation(owner_sub="u1")).id
    scripted_llm.answer = '{"agent": "documentation", "confidence": 0.9, "reasoning": "manual"}'
    service = ChatService(repository, scripted_llm)
    exchange = await service.ask(make_principal(), conversation_id, Question("Which AMM task?"))
    stored = (await repository.list_messages(conversation_id))[-1]
    assert exchange.assistant.classification_method == "model"
    assert (
        stored.classification_prompt_tokens,
        stored.classification_completion_tokens,
        stored.classification_total_tokens,
    ) == (1, 2, 3)


class RacingRepository(ConversationRepository):
    """Misses an earlier request once, as a request arriving together with it does."""

    hide_once = False

    async def find_by_idempotency_key(self, owner_sub: str, key: str) -> Message | None:
        if self.hide_once:
            self.hide_once = False
            return None
        return await super().find_by_idempotency_key(owner_sub, key)


async def test_the_409_says_how_long_until_a_retry_can_take_over(
    timed: ConversationRepository, scripted_llm: ScriptedLLM, clock: ManualClock
) -> None:
    """retry_after counts from the answer's last write to its staleness; then a retry answers."""
    conversation, _, _ = await crashed_turn(timed, "k-wait")
    clock.advance(20)
    service = service_at(timed, scripted_llm, clock)
    retry = Question("Where is the APU starter?", agent="documentation", idempotency_key="k-wait")
    with pytest.raises(IdempotencyInProgress) as busy:
        await service.ask(make_principal(), conversation.id, retry)
    assert busy.value.retry_after == STALE_AFTER.total_seconds() - 20 + 1
    clock.advance(busy.value.retry_after)
    exchange = await service.ask(make_principal(), conversation.id, retry)
    assert exchange.assistant.status == "complete"


async def test_a_request_racing_the_first_with_its_key_waits_the_whole_bound(
    database_url: str, scripted_llm: ScriptedLLM, clock: ManualClock
) -> None:
    """When the key's question is stored meanwhile, the 409 asks to wait the whole bound."""
    engine = create_engine(database_url)
    try:
        racing = RacingRepository(engine, clock=clock)
        conversation = await racing.create_conversation(owner_sub="u1")
        await racing.add_question(conversation, content="q", idempotency_key="k-race")
        racing.hide_once = True
        service = service_at(racing, scripted_llm, clock)
        with pytest.raises(IdempotencyInProgress) as busy:
            await service.ask(
                make_principal(),
                conversation.id,
                Question("q", agent="documentation", idempotency_key="k-race"),
            )
    finally:
        await engine.dispose()
    assert busy.value.retry_after == STALE_AFTER.total_seconds() + 1


@pytest.mark.parametrize("ends", [False, True], ids=["while-streaming", "at-the-end"])
async def test_a_stream_taken_over_by_a_retry_changes_nothing_more(
    timed: ConversationRepository, clock: ManualClock, ends: bool
) -> None:
    """A live stream wrongly judged stale stops with AnswerSuperseded; the retry's answer stays."""
    conversation = await timed.create_conversation(owner_sub="u1")
    question = Question("Where is the APU starter?", agent="documentation", idempotency_key="k-f")
    upstream = Upstream()
    upstream.send(StreamDelta("Old "))
    first = service_at(timed, FedLLM(upstream), clock)
    stream = await first.ask_streaming(make_principal(), conversation.id, question)
    assert isinstance(stream, AnswerStream)
    events = stream.events()
    assert await anext(events) == StreamDelta("Old ")
    # The first process is silent past the bound (a frozen event loop): a retry takes over.
    clock.advance(STALE_AFTER.total_seconds() + 1)
    retry = service_at(timed, ScriptedLLM(), clock)
    retried = await retry.ask(make_principal(), conversation.id, question)
    assert retried.assistant.id == stream.message_id
    written = (await timed.list_messages(conversation.id))[-1]
    clock.advance(1)
    upstream.send(StreamDelta("words"), *([StreamEnd(Usage(1, 2, 3), "stop")] if ends else []))
    assert [type(event) for event in [e async for e in events]] == [AnswerSuperseded]
    stored = (await timed.list_messages(conversation.id))[-1]
    assert (stored.content, stored.status, stored.attempt, stored.updated_at) == (
        "Scripted answer.",
        "complete",
        2,
        written.updated_at,
    )


async def test_a_whole_answer_taken_over_meanwhile_is_not_stored(
    timed: ConversationRepository, clock: ManualClock
) -> None:
    """A non-streamed answer whose row a retry took over raises AnswerSuperseded, stores nothing."""
    conversation = await timed.create_conversation(owner_sub="u1")
    question = Question("Where is the APU starter?", agent="documentation", idempotency_key="k-w")
    slow = ScriptedLLM()
    slow.blocking = True
    slow.answer = "Old answer."
    first = asyncio.create_task(
        service_at(timed, slow, clock).ask(make_principal(), conversation.id, question)
    )
    await slow.called.wait()
    clock.advance(STALE_AFTER.total_seconds() + 1)
    retry = service_at(timed, ScriptedLLM(), clock)
    await retry.ask(make_principal(), conversation.id, question)
    slow.block.set()
    with pytest.raises(AnswerSuperseded):
        await first
    stored = (await timed.list_messages(conversation.id))[-1]
    assert (stored.content, stored.status) == ("Scripted answer.", "complete")
