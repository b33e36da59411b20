"""Conversation turns below the HTTP layer, with a scripted model for the rare paths."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.chat import ChatService, Question
from orchestrator.models import MessageStatus, Role
from orchestrator.repository import ConversationRepository
from tests.fixtures.orchestrator import ScriptedLLM, make_principal


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
