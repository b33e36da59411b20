"""A streamed answer: saved before it is sent, stored before it ends, however it ends."""

from __future__ import annotations

import asyncio
import logging

import pytest

from orchestrator.agents import AGENTS
from orchestrator.answer_stream import AnswerStream
from orchestrator.chat import ChatService, Exchange, Question
from orchestrator.classifier import choose_explicit
from orchestrator.errors import AnswerSuperseded, AnswerWithdrawn, StorageUnavailable
from orchestrator.llm import LLMUnavailable, StreamDelta, StreamEnd, Usage
from orchestrator.models import Conversation, Message, MessageStatus, Role
from orchestrator.repository import ConversationRepository
from orchestrator.turns import Turn
from tests.fixtures.orchestrator import ScriptedLLM, make_principal
from tests.orchestrator.fakes import NOW, FedLLM, Upstream, answer_row


class Writer:
    """An AnswerWriter that records its writes; a save can be held until released."""

    def __init__(self) -> None:
        self.saves: list[str] = []
        self.stored: list[tuple[str, MessageStatus, Usage | None]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.saving = asyncio.Event()
        self.save_result: bool | Exception = True
        # Set when a retry has taken the row over: the final write raises.
        self.superseded = False

    async def save_progress(self, content: str) -> bool:
        self.saves.append(content)
        self.saving.set()
        await self.hold.wait()
        if isinstance(self.save_result, Exception):
            raise self.save_result
        return self.save_result

    async def store(self, content: str, status: MessageStatus, usage: Usage | None) -> Message:
        if self.superseded:
            raise AnswerSuperseded("taken over")
        self.stored.append((content, status, usage))
        return answer_row(status, content=content)

    async def withdrawal(self) -> AnswerWithdrawn:
        return AnswerSuperseded("taken over")


def make_turn() -> Turn:
    """A routed turn whose answer row is ``streaming`` and empty."""
    conversation = Conversation(owner_sub="u1", created_at=NOW, updated_at=NOW)
    question = Message(
        conversation_id=conversation.id, owner_sub="u1", role=Role.USER, content="q", created_at=NOW
    )
    return Turn(
        conversation=conversation,
        user=question,
        answer=answer_row(),
        agent=AGENTS["documentation"],
        classification=choose_explicit("documentation", [AGENTS["documentation"]]),
        history=[],
        question=Question("q"),
    )


async def started(upstream: Upstream, writer: Writer) -> AnswerStream:
    stream = AnswerStream(make_turn(), upstream, writer)
    await stream.start()
    return stream


async def test_each_delta_is_saved_before_it_is_sent(repository: ConversationRepository) -> None:
    """The answer row exists before the first word and holds every word the client was sent."""
    conversation_id = (await repository.create_conversation(owner_sub="u1")).id
    upstream = Upstream()
    upstream.send(StreamDelta("Check "))
    service = ChatService(repository, FedLLM(upstream))
    stream = await service.ask_streaming(
        make_principal(), conversation_id, Question("q", agent="documentation")
    )
    assert not isinstance(stream, Exchange)
    before = (await repository.list_messages(conversation_id))[-1]
    assert (before.id, before.status, before.content) == (stream.message_id, "streaming", "")
    events = stream.events()
    sent = ""
    for word in ("the ", "AMM ", "task."):
        event = await anext(events)
        assert isinstance(event, StreamDelta)
        sent += event.content
        stored = (await repository.list_messages(conversation_id))[-1]
        assert (stored.content, stored.status) == (sent, "streaming")
        upstream.send(StreamDelta(word))
    upstream.send(StreamEnd(Usage(5, 4, 9), "stop"))
    rest = [event async for event in events]
    assert isinstance(rest[-1], StreamEnd)
    stored = (await repository.list_messages(conversation_id))[-1]
    assert (stored.content, stored.status, stored.total_tokens) == (
        "Check the AMM task.",
        "complete",
        9,
    )


async def test_chunks_arriving_during_a_save_go_out_after_the_next_one() -> None:
    """While a save is in flight chunks queue up; the next save covers them all at once."""
    upstream, writer = Upstream(), Writer()
    upstream.send(StreamDelta("a"))
    stream = await started(upstream, writer)
    events = stream.events()
    writer.hold.clear()
    first = asyncio.create_task(anext(events))
    await writer.saving.wait()
    upstream.send(StreamDelta("b"), StreamDelta("c"))
    await upstream.drained.wait()
    writer.hold.set()
    assert await first == StreamDelta("a")
    assert await anext(events) == StreamDelta("b")
    assert await anext(events) == StreamDelta("c")
    assert writer.saves == ["a", "abc"]
    upstream.send(StreamEnd(None, "stop"))
    assert isinstance(await anext(events), StreamEnd)
    await events.aclose()


async def test_the_end_is_passed_on_only_after_the_answer_is_stored() -> None:
    """The StreamEnd reaches the client after the complete answer and its usage are stored."""
    upstream, writer = Upstream(), Writer()
    upstream.send(StreamDelta("Done."), StreamEnd(Usage(1, 2, 3), "stop"))
    stream = await started(upstream, writer)
    async for event in stream.events():
        if isinstance(event, StreamEnd):
            assert writer.stored == [("Done.", MessageStatus.COMPLETE, Usage(1, 2, 3))]
    assert len(writer.stored) == 1


async def test_an_error_midway_is_passed_on_after_the_partial_answer_is_stored() -> None:
    """A model failing midway: the text so far is stored as partial, then the error is sent."""
    upstream, writer = Upstream(), Writer()
    upstream.send(StreamDelta("Half "), LLMUnavailable("gone"))
    stream = await started(upstream, writer)
    events = [event async for event in stream.events()]
    assert events[0] == StreamDelta("Half ")
    assert isinstance(events[1], LLMUnavailable)
    assert writer.stored == [("Half ", MessageStatus.PARTIAL, None)]


async def test_failure_before_the_first_chunk_stores_failed_and_raises() -> None:
    """A model that fails at once raises its error from start, after storing a failed answer."""
    upstream, writer = Upstream(), Writer()
    upstream.send(LLMUnavailable("busy"))
    with pytest.raises(LLMUnavailable):
        await started(upstream, writer)
    assert writer.stored == [("", MessageStatus.FAILED, None)]


async def test_an_unexpected_client_error_is_raised_after_storing() -> None:
    """An error that is not the model's own still leaves the received text stored."""
    upstream, writer = Upstream(), Writer()
    upstream.send(StreamDelta("Some"), RuntimeError("bug"))
    stream = await started(upstream, writer)
    events = stream.events()
    assert await anext(events) == StreamDelta("Some")
    with pytest.raises(RuntimeError, match="bug"):
        await anext(events)
    assert writer.stored == [("Some", MessageStatus.PARTIAL, None)]


async def test_a_failing_save_keeps_the_stream_going_and_stores_at_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A database error while saving progress is logged; the stream goes on and is stored."""
    upstream, writer = Upstream(), Writer()
    writer.save_result = StorageUnavailable("down")
    upstream.send(StreamDelta("a"))
    stream = await started(upstream, writer)
    events = stream.events()
    with caplog.at_level(logging.WARNING, logger="orchestrator.answer_stream"):
        assert await anext(events) == StreamDelta("a")
    assert "saving answer" in caplog.text
    upstream.send(StreamDelta("b"))
    assert await anext(events) == StreamDelta("b")
    upstream.send(None)
    assert [type(event) async for event in events] == [StreamEnd]
    assert writer.saves == ["a"]
    assert writer.stored == [("ab", MessageStatus.COMPLETE, None)]


async def test_a_save_refused_ends_the_stream_as_superseded_and_stores_nothing() -> None:
    """When the row is no longer this attempt's, the unsaved text is not sent and not stored."""
    upstream, writer = Upstream(), Writer()
    upstream.send(StreamDelta("a"))
    stream = await started(upstream, writer)
    events = stream.events()
    assert await anext(events) == StreamDelta("a")
    writer.save_result = False
    upstream.send(StreamDelta("b"))
    rest = [event async for event in events]
    assert len(rest) == 1
    assert isinstance(rest[0], AnswerSuperseded)
    assert (writer.saves, writer.stored) == (["a", "ab"], [])
    assert stream.superseded
    assert stream.stored is None
    assert upstream.closed


async def test_a_refused_final_write_replaces_the_end_with_superseded() -> None:
    """A stream whose final write finds the row taken over ends with AnswerSuperseded, not done."""
    upstream, writer = Upstream(), Writer()
    upstream.send(StreamDelta("a"))
    stream = await started(upstream, writer)
    events = stream.events()
    assert await anext(events) == StreamDelta("a")
    writer.superseded = True
    upstream.send(StreamEnd(Usage(1, 2, 3), "stop"))
    rest = [event async for event in events]
    assert [type(event) for event in rest] == [AnswerSuperseded]
    assert writer.stored == []
    assert stream.stored is None


async def test_a_client_gone_after_a_takeover_stores_nothing() -> None:
    """finish() of a superseded stream (client gone) leaves the retry's row alone."""
    upstream, writer = Upstream(), Writer()
    upstream.send(StreamDelta("part"))
    stream = await started(upstream, writer)
    writer.superseded = True
    await stream.finish()
    assert stream.superseded
    assert writer.stored == []


async def test_finishing_early_stops_the_reader_and_stores_what_arrived() -> None:
    """A client gone while the model is silent: reading stops, the stream closes, text is kept."""
    upstream, writer = Upstream(), Writer()
    upstream.send(StreamDelta("part"))
    stream = await started(upstream, writer)
    await stream.finish()
    await stream.finish()
    assert upstream.closed
    assert writer.stored == [("part", MessageStatus.PARTIAL, None)]


async def test_stream_without_end_marker_counts_as_complete(
    repository: ConversationRepository, scripted_llm: ScriptedLLM
) -> None:
    """An upstream stream that just stops is a complete answer without usage."""
    conversation_id = (await repository.create_conversation(owner_sub="u1")).id
    scripted_llm.stream_items = [StreamDelta("Hello "), StreamDelta("there.")]
    service = ChatService(repository, scripted_llm)
    stream = await service.ask_streaming(
        make_principal(), conversation_id, Question("q", agent="documentation")
    )
    assert not isinstance(stream, Exchange)
    events = [event async for event in stream.events()]
    assert isinstance(events[-1], StreamEnd)
    assert stream.stored is not None
    assert (stream.stored.content, stream.stored.status, stream.stored.total_tokens) == (
        "Hello there.",
        "complete",
        None,
    )


async def test_empty_stream_is_a_complete_empty_answer(
    repository: ConversationRepository, scripted_llm: ScriptedLLM
) -> None:
    """A stream with nothing in it is stored as a complete, empty answer."""
    conversation_id = (await repository.create_conversation(owner_sub="u1")).id
    service = ChatService(repository, scripted_llm)
    stream = await service.ask_streaming(
        make_principal(), conversation_id, Question("q", agent="documentation")
    )
    assert not isinstance(stream, Exchange)
    assert [type(event) for event in [e async for e in stream.events()]] == [StreamEnd]
    assert stream.stored is not None
    assert stream.stored.status == "complete"


async def test_failing_upstream_close_is_logged_and_the_answer_kept(
    repository: ConversationRepository, scripted_llm: ScriptedLLM, caplog: pytest.LogCaptureFixture
) -> None:
    """If closing the upstream stream fails, the answer is stored anyway and the failure logged."""
    conversation_id = (await repository.create_conversation(owner_sub="u1")).id
    scripted_llm.stream_items = [StreamDelta("part")]
    scripted_llm.close_fails = True
    service = ChatService(repository, scripted_llm)
    stream = await service.ask_streaming(
        make_principal(), conversation_id, Question("q", agent="documentation")
    )
    assert not isinstance(stream, Exchange)
    with caplog.at_level(logging.WARNING, logger="orchestrator.answer_stream"):
        await stream.finish()
        await stream.finish()
    assert "closing the model stream failed" in caplog.text
    answer = (await repository.list_messages(conversation_id))[-1]
    # The reader took the whole (short) stream before the client went: it is complete.
    assert (answer.content, answer.status) == ("part", "complete")
