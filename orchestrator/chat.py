"""Conversation turns: store the question, route it to an agent, answer, store the answer.

The user's message is stored before the model is called, so an upstream failure never loses it.
An answer is stored once, when it is final: ``complete``; ``partial`` when a stream was cut
(client gone, upstream failed) after some text; ``failed`` when the model gave nothing. A retry
with the same ``Idempotency-Key`` replays a stored answer and re-asks the model after a failure.
"""

from __future__ import annotations

import uuid
from functools import partial

import anyio

from orchestrator.agents import AGENTS, allowed_agents
from orchestrator.answer_stream import AnswerStream
from orchestrator.classifier import NoAgentAvailable, choose_explicit, classify_request
from orchestrator.completion import generate_chat_completion, stream_chat_completion
from orchestrator.errors import IdempotencyInProgress, IdempotencyKeyReused, NotFound
from orchestrator.identity import Principal
from orchestrator.llm import LLMClient, Usage
from orchestrator.models import Conversation, Message, MessageStatus, Role
from orchestrator.repository import ConversationRepository
from orchestrator.turns import Exchange, Question, Turn

__all__ = ["AnswerStream", "ChatService", "Exchange", "Question", "Turn"]


class ChatService:
    """Runs conversation turns for one orchestrator (shared repository and model client)."""

    def __init__(
        self,
        repository: ConversationRepository,
        llm: LLMClient,
        *,
        min_confidence: float = 0.5,
        classifier_timeout: float = 10.0,
        max_history: int = 20,
    ) -> None:
        self._repository = repository
        self._llm = llm
        self._min_confidence = min_confidence
        self._classifier_timeout = classifier_timeout
        self._max_history = max_history

    async def ask(
        self, principal: Principal, conversation_id: uuid.UUID, question: Question
    ) -> Exchange:
        """The whole answer, stored.

        Raises NotFound, PermissionDenied (agent not allowed, none available), the idempotency
        errors, and the model's LLMError after storing the question and a ``failed`` answer.
        """
        begun = await self._begin(principal, conversation_id, question)
        if isinstance(begun, Exchange):
            return begun
        answer_id = _answer_id(begun)
        try:
            completion = await generate_chat_completion(
                self._llm,
                begun.agent,
                begun.history,
                question.content,
                max_tokens=question.max_tokens,
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._store_answer(begun, answer_id, "", MessageStatus.FAILED, None)
            raise
        assistant = await self._store_answer(
            begun, answer_id, completion.content, MessageStatus.COMPLETE, completion.usage
        )
        return Exchange(user=begun.user, assistant=assistant)

    async def ask_streaming(
        self, principal: Principal, conversation_id: uuid.UUID, question: Question
    ) -> Exchange | AnswerStream:
        """A stream of the answer, started; or the stored Exchange of an earlier identical request.

        The first upstream event is awaited here, so a model that fails before answering raises
        its LLMError (after storing a ``failed`` answer) instead of opening an empty stream.
        Raises as ``ask`` does.
        """
        begun = await self._begin(principal, conversation_id, question)
        if isinstance(begun, Exchange):
            return begun
        upstream = stream_chat_completion(
            self._llm,
            begun.agent,
            begun.history,
            question.content,
            max_tokens=question.max_tokens,
        )
        answer_id = _answer_id(begun)
        stream = AnswerStream(
            begun, answer_id, upstream, partial(self._store_answer, begun, answer_id)
        )
        await stream.start()
        return stream

    async def _begin(
        self, principal: Principal, conversation_id: uuid.UUID, question: Question
    ) -> Turn | Exchange:
        conversation = await self._repository.get_owned_conversation(conversation_id, principal.sub)
        if conversation is None:
            raise NotFound("Conversation not found")
        options = allowed_agents(principal.permissions)
        if not options:
            raise NoAgentAvailable("The caller may not use any agent")
        explicit = choose_explicit(question.agent, options) if question.agent else None
        user, failed_answer = None, None
        if question.idempotency_key is not None:
            earlier = await self._earlier_attempt(principal, conversation, question)
            if isinstance(earlier, Exchange):
                return earlier
            user, failed_answer = earlier
        if user is None:
            user = await self._repository.add_message(
                conversation,
                role=Role.USER,
                content=question.content,
                idempotency_key=question.idempotency_key,
                request_id=question.request_id,
            )
        try:
            history = await self._history(conversation, user)
            classification = explicit or await classify_request(
                question.content,
                options,
                self._llm,
                min_confidence=self._min_confidence,
                timeout=self._classifier_timeout,
            )
        except BaseException:
            # Without an answer the key would stay "in progress" for good: record the failure.
            if failed_answer is None:
                with anyio.CancelScope(shield=True):
                    await self._repository.add_message(
                        conversation,
                        role=Role.ASSISTANT,
                        content="",
                        status=MessageStatus.FAILED,
                        reply_to_id=user.id,
                        request_id=question.request_id,
                    )
            raise
        return Turn(
            conversation=conversation,
            user=user,
            agent=AGENTS[classification.agent],
            classification=classification,
            history=history,
            question=question,
            failed_answer=failed_answer,
        )

    async def _earlier_attempt(
        self, principal: Principal, conversation: Conversation, question: Question
    ) -> Exchange | tuple[Message | None, Message | None]:
        """A replayable Exchange, or (stored question, failed answer) to answer again."""
        assert question.idempotency_key is not None  # noqa: S101 - checked by the caller
        earlier = await self._repository.find_by_idempotency_key(
            principal.sub, question.idempotency_key
        )
        if earlier is None:
            return None, None
        if earlier.conversation_id != conversation.id or earlier.content != question.content:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used for a different request"
            )
        answer = await self._repository.find_reply(earlier.id)
        if answer is None:
            raise IdempotencyInProgress(
                "A request with this Idempotency-Key is still being processed"
            )
        if answer.status == MessageStatus.FAILED:
            return earlier, answer
        return Exchange(user=earlier, assistant=answer, replayed=True)

    async def _history(self, conversation: Conversation, user: Message) -> list[tuple[str, str]]:
        """The turns before user's message that reached the model's answer, oldest first."""
        history: list[tuple[str, str]] = []
        for message in await self._repository.list_messages(conversation.id):
            if message.id == user.id:
                break
            if message.status != MessageStatus.FAILED and message.content:
                history.append((message.role, message.content))
        return history[-self._max_history :] if self._max_history else []

    async def _store_answer(
        self,
        turn: Turn,
        answer_id: uuid.UUID,
        content: str,
        status: MessageStatus,
        usage: Usage | None,
    ) -> Message:
        classification = turn.classification
        if turn.failed_answer is not None:
            return await self._repository.update_message(
                turn.failed_answer.id,
                content=content,
                status=status,
                usage=usage,
                agent=classification.agent,
                confidence=classification.confidence,
                classification_method=classification.method,
            )
        return await self._repository.add_message(
            turn.conversation,
            message_id=answer_id,
            role=Role.ASSISTANT,
            content=content,
            status=status,
            reply_to_id=turn.user.id,
            agent=classification.agent,
            confidence=classification.confidence,
            classification_method=classification.method,
            usage=usage,
            request_id=turn.question.request_id,
        )


def _answer_id(turn: Turn) -> uuid.UUID:
    return turn.failed_answer.id if turn.failed_answer is not None else uuid.uuid4()
