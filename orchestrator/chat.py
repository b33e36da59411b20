"""Conversation turns: store the question, route it to an agent, answer, store the answer.

The question is stored together with its answer's row (``streaming``, empty) before the model is
called, so neither an upstream failure nor a crash loses the question, and every question has
exactly one answer row. The row ends ``complete``; ``partial`` when a stream was cut (client
gone, upstream failed) after some text; ``failed`` when the model gave nothing. A row left
``streaming`` by a process that died reads as ``partial`` or ``failed`` once it is stale
(``orchestrator.answer_liveness``).

A retry with the same ``Idempotency-Key`` replays a ``complete`` or ``partial`` answer, answers
409 while the first attempt is still being written (``Retry-After``: the seconds until it is
stale), and after a ``failed`` or stale answer asks the model again: the new answer replaces the
old one in the same row (same ids), the question is not stored twice. Every write of an answer is
conditional on the attempt that claimed it, so an attempt wrongly judged abandoned (a frozen
event loop, replica clocks apart) stops with ``AnswerSuperseded`` instead of overwriting the
retry's answer.
"""

from __future__ import annotations

import uuid

import anyio

from orchestrator.agents import AGENTS, allowed_agents
from orchestrator.answer_liveness import AnswerLiveness, last_written
from orchestrator.answer_stream import AnswerStream
from orchestrator.classifier import NoAgentAvailable, choose_explicit, classify_request
from orchestrator.completion import generate_chat_completion, stream_chat_completion
from orchestrator.errors import (
    AnswerWithdrawn,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    NotFound,
)
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
        liveness: AnswerLiveness | None = None,
        min_confidence: float = 0.5,
        classifier_timeout: float = 10.0,
        max_history: int = 20,
    ) -> None:
        self._repository = repository
        self._llm = llm
        self._liveness = liveness or AnswerLiveness()
        self._min_confidence = min_confidence
        self._classifier_timeout = classifier_timeout
        self._max_history = max_history

    async def ask(
        self, principal: Principal, conversation_id: uuid.UUID, question: Question
    ) -> Exchange:
        """The whole answer, stored.

        Raises NotFound, PermissionDenied (agent not allowed, none available), the idempotency
        errors, AnswerWithdrawn when a retry took the answer over meanwhile (AnswerSuperseded)
        or the conversation was deleted (ConversationDeleted), and the model's
        LLMError after storing the question and a ``failed`` answer.
        """
        begun = await self._begin(principal, conversation_id, question)
        if isinstance(begun, Exchange):
            return begun
        writer = _AnswerRow(self._repository, begun.answer)
        try:
            completion = await generate_chat_completion(
                self._llm,
                begun.agent,
                begun.history,
                question.content,
                max_tokens=question.max_tokens,
            )
        except BaseException:
            await writer.give_up()
            raise
        assistant = await writer.store(completion.content, MessageStatus.COMPLETE, completion.usage)
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
        stream = AnswerStream(begun, upstream, _AnswerRow(self._repository, begun.answer))
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
        earlier: tuple[Message, Message] | None = None
        if question.idempotency_key is not None:
            attempt = await self._earlier_attempt(principal, conversation, question)
            if isinstance(attempt, Exchange):
                return attempt
            earlier = attempt
        if earlier is None:
            user, answer = await self._add_question(conversation, question)
        else:
            user, answer = earlier
        try:
            history = await self._history(conversation, user)
            classification = explicit or await classify_request(
                question.content,
                options,
                self._llm,
                min_confidence=self._min_confidence,
                timeout=self._classifier_timeout,
            )
            answer = await self._repository.update_message(
                answer.id,
                attempt=answer.attempt,
                agent=classification.agent,
                confidence=classification.confidence,
                classification_method=classification.method,
                classification_usage=classification.usage,
            )
        except BaseException:
            # Without a final status the key would stay "in progress" until the row is stale.
            await _AnswerRow(self._repository, answer).give_up()
            raise
        return Turn(
            conversation=conversation,
            user=user,
            answer=answer,
            agent=AGENTS[classification.agent],
            classification=classification,
            history=history,
            question=question,
        )

    async def _add_question(
        self, conversation: Conversation, question: Question
    ) -> tuple[Message, Message]:
        """Store the question and its answer row; raises IdempotencyInProgress with Retry-After
        when a request with the same key stored its question first."""
        try:
            return await self._repository.add_question(
                conversation,
                content=question.content,
                idempotency_key=question.idempotency_key,
                request_id=question.request_id,
            )
        except IdempotencyInProgress as exc:
            # The other request has only just begun: its answer is stale after the whole bound.
            exc.retry_after = self._liveness.seconds_until_stale(self._liveness.clock())
            raise

    async def _earlier_attempt(
        self, principal: Principal, conversation: Conversation, question: Question
    ) -> Exchange | tuple[Message, Message] | None:
        """A replayable Exchange; (stored question, claimed answer) to answer again; or None.

        Raises IdempotencyKeyReused for a different request, IdempotencyInProgress while the
        earlier attempt is still being answered.
        """
        assert question.idempotency_key is not None  # noqa: S101 - checked by the caller
        earlier = await self._repository.find_by_idempotency_key(
            principal.sub, question.idempotency_key
        )
        if earlier is None:
            return None
        if earlier.conversation_id != conversation.id or earlier.content != question.content:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used for a different request"
            )
        answer = await self._repository.find_reply(earlier.id)
        if answer is None:
            # A question stored before answers got their row with it: retried once stale.
            if earlier.created_at >= self._liveness.stale_before():
                raise self._in_progress(earlier)
            return earlier, await self._repository.add_message(
                conversation,
                role=Role.ASSISTANT,
                content="",
                status=MessageStatus.STREAMING,
                reply_to_id=earlier.id,
                request_id=question.request_id,
            )
        if answer.status in (MessageStatus.COMPLETE, MessageStatus.PARTIAL):
            return Exchange(user=earlier, assistant=answer, replayed=True)
        claimed = await self._repository.claim_answer(
            answer.id, stale_before=self._liveness.stale_before()
        )
        if claimed is None:
            raise self._in_progress(answer)
        return earlier, claimed

    def _in_progress(self, message: Message) -> IdempotencyInProgress:
        """The 409 for a key whose attempt last wrote message, with the wait until it is stale."""
        return IdempotencyInProgress(
            "A request with this Idempotency-Key is still being processed",
            retry_after=self._liveness.seconds_until_stale(last_written(message)),
        )

    async def _history(self, conversation: Conversation, user: Message) -> list[tuple[str, str]]:
        """The turns before user's message that reached the model's answer, oldest first.

        Answers still being written by another request are left out; stale ones count as cut.
        """
        history: list[tuple[str, str]] = []
        for message in await self._repository.list_messages(conversation.id):
            if message.id == user.id:
                break
            status = self._liveness.status_of(message)
            if status not in (MessageStatus.FAILED, MessageStatus.STREAMING) and message.content:
                history.append((message.role, message.content))
        return history[-self._max_history :] if self._max_history else []


class _AnswerRow:
    """The ``AnswerWriter`` of one answer row, for the attempt that owns it."""

    def __init__(self, repository: ConversationRepository, answer: Message) -> None:
        self._repository = repository
        self._answer_id = answer.id
        self._attempt = answer.attempt

    async def save_progress(self, content: str) -> bool:
        return await self._repository.save_progress(self._answer_id, content, attempt=self._attempt)

    async def store(self, content: str, status: MessageStatus, usage: Usage | None) -> Message:
        return await self._repository.update_message(
            self._answer_id, attempt=self._attempt, content=content, status=status, usage=usage
        )

    async def withdrawal(self) -> AnswerWithdrawn:
        return await self._repository.withdrawal(self._answer_id)

    async def give_up(self) -> None:
        """Store the answer as ``failed`` (even when cancelled), unless a retry owns it now."""
        with anyio.CancelScope(shield=True):
            try:
                await self.store("", MessageStatus.FAILED, None)
            except AnswerWithdrawn:
                return
