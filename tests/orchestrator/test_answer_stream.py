"""A streamed answer: what counts as received, complete, partial; closing never loses it."""

from __future__ import annotations

import logging

import pytest

from orchestrator.chat import ChatService, Exchange, Question
from orchestrator.llm import StreamDelta, StreamEnd
from orchestrator.repository import ConversationRepository
from tests.fixtures.orchestrator import ScriptedLLM, make_principal


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
    with caplog.at_level(logging.WARNING, logger="orchestrator.chat"):
        await stream.finish()
        await stream.finish()
    assert "closing the model stream failed" in caplog.text
    answer = (await repository.list_messages(conversation_id))[-1]
    assert (answer.content, answer.status) == ("part", "partial")
