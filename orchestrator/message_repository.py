"""Messages in SQL: questions, answers as they are written, and the transaction they share.

Every method runs in its own short transaction, so no session outlives a request or spans a
model call. Database failures leave this module as ``StorageUnavailable``.
``AnswerRepository`` (``orchestrator.answer_repository``) adds the writes of answers that stream
and their takeover by a retry; ``update_message`` with ``attempt`` is the conditional final write.
``ConversationRepository`` (``orchestrator.repository``) adds the conversations.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from orchestrator.errors import (
    AnswerSuperseded,
    AnswerWithdrawn,
    ConversationDeleted,
    IdempotencyInProgress,
    NotFound,
    StorageUnavailable,
)
from orchestrator.models import Conversation, Message, MessageStatus, Role

TITLE_MAX_CHARS = 80


def utc_now() -> datetime:
    return datetime.now(UTC)


class TokenUsage(Protocol):
    """Token counts of one model call (``orchestrator.llm.Usage`` fits)."""

    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def total_tokens(self) -> int: ...


def title_from(content: str) -> str:
    """A conversation title derived from its first question."""
    line = " ".join(content.split())
    if len(line) <= TITLE_MAX_CHARS:
        return line
    return line[: TITLE_MAX_CHARS - 1].rstrip() + "…"


class MessageRepository:
    """Add, read and finalise messages; write answers while they stream."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        self._clock = clock

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except IntegrityError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise StorageUnavailable("The conversation store is unavailable") from exc

    async def ping(self) -> None:
        """Raise StorageUnavailable unless the database answers."""
        async with self._transaction() as session:
            await session.exec(select(text("1")))

    async def list_messages(self, conversation_id: uuid.UUID) -> list[Message]:
        """The conversation's messages, oldest first."""
        query = (
            select(Message)
            .where(col(Message.conversation_id) == conversation_id)
            .order_by(col(Message.created_at), col(Message.id))
        )
        async with self._transaction() as session:
            return list((await session.exec(query)).all())

    async def add_message(
        self,
        conversation: Conversation,
        *,
        message_id: uuid.UUID | None = None,
        role: Role,
        content: str,
        status: MessageStatus = MessageStatus.COMPLETE,
        reply_to_id: uuid.UUID | None = None,
        agent: str | None = None,
        confidence: float | None = None,
        classification_method: str | None = None,
        usage: TokenUsage | None = None,
        classification_usage: TokenUsage | None = None,
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> Message:
        """Append a message; the first user message also titles an untitled conversation.

        Raises IdempotencyInProgress when owner and idempotency_key are already taken, NotFound
        when the conversation is gone.
        """
        now = self._clock()
        message = Message(
            id=message_id or uuid.uuid4(),
            conversation_id=conversation.id,
            owner_sub=conversation.owner_sub,
            role=role,
            content=content,
            status=status,
            reply_to_id=reply_to_id,
            agent=agent,
            confidence=confidence,
            classification_method=classification_method,
            idempotency_key=idempotency_key,
            request_id=request_id,
            created_at=now,
            updated_at=now,
        )
        _apply_usage(message, usage)
        _apply_usage(message, classification_usage, "classification_")
        await self._insert(conversation, [message], now)
        return message

    async def add_question(
        self,
        conversation: Conversation,
        *,
        content: str,
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> tuple[Message, Message]:
        """Store a question and its answer-to-be (``streaming``, empty) in one transaction.

        Every question thus has its answer row from the start, however the turn ends. Raises
        as ``add_message`` does.
        """
        now = self._clock()
        question = Message(
            conversation_id=conversation.id,
            owner_sub=conversation.owner_sub,
            role=Role.USER,
            content=content,
            status=MessageStatus.COMPLETE,
            idempotency_key=idempotency_key,
            request_id=request_id,
            created_at=now,
            updated_at=now,
        )
        answer = Message(
            conversation_id=conversation.id,
            owner_sub=conversation.owner_sub,
            role=Role.ASSISTANT,
            content="",
            status=MessageStatus.STREAMING,
            reply_to_id=question.id,
            request_id=request_id,
            # Messages are listed by time: the answer must come after its question.
            created_at=now + timedelta(microseconds=1),
            updated_at=now,
        )
        await self._insert(conversation, [question, answer], now)
        return question, answer

    async def _insert(
        self, conversation: Conversation, messages: list[Message], now: datetime
    ) -> None:
        touch = (
            update(Conversation)
            .where(col(Conversation.id) == conversation.id)
            .values(updated_at=now)
        )
        try:
            async with self._transaction() as session:
                for message in messages:
                    session.add(message)
                    # One flush per row: the answer refers to the question before it.
                    await session.flush()
                await session.exec(touch)
                first_question = next((m for m in messages if m.role == Role.USER), None)
                if first_question is not None:
                    await session.exec(
                        update(Conversation)
                        .where(
                            col(Conversation.id) == conversation.id,
                            col(Conversation.title) == "",
                        )
                        .values(title=title_from(first_question.content))
                    )
        except IntegrityError as exc:
            key = next((m.idempotency_key for m in messages if m.idempotency_key), None)
            if key is not None and await self.find_by_idempotency_key(conversation.owner_sub, key):
                raise IdempotencyInProgress(
                    "A request with this Idempotency-Key is already being processed"
                ) from exc
            raise NotFound("Conversation not found") from exc

    async def update_message(
        self,
        message_id: uuid.UUID,
        *,
        attempt: int | None = None,
        content: str | None = None,
        status: MessageStatus | None = None,
        usage: TokenUsage | None = None,
        classification_usage: TokenUsage | None = None,
        agent: str | None = None,
        confidence: float | None = None,
        classification_method: str | None = None,
    ) -> Message:
        """Change a stored message (route, finalise a streamed or retried answer).

        Arguments left None keep their stored value. With attempt, the write happens only while
        that attempt still owns the row. Raises NotFound; when attempt was given, AnswerSuperseded
        if another attempt owns the row and ConversationDeleted if it is gone.
        """
        changes = {
            "content": content,
            "status": status,
            "agent": agent,
            "confidence": confidence,
            "classification_method": classification_method,
        }
        values: dict[str, object] = {k: v for k, v in changes.items() if v is not None}
        values |= _usage_values(usage, "") | _usage_values(classification_usage, "classification_")
        values["updated_at"] = self._clock()
        statement = update(Message).where(col(Message.id) == message_id)
        if attempt is not None:
            statement = statement.where(col(Message.attempt) == attempt)
        async with self._transaction() as session:
            result = await session.exec(statement.values(values))
            message = await session.get(Message, message_id) if result.rowcount else None
        if message is not None:
            return message
        if attempt is not None:
            raise await self.withdrawal(message_id)
        raise NotFound("Message not found")

    async def withdrawal(self, message_id: uuid.UUID) -> AnswerWithdrawn:
        """Why an attempt may no longer write this answer: its row was deleted with the
        conversation, or a retry owns it now (called after a conditional write changed nothing).
        """
        async with self._transaction() as session:
            row = await session.get(Message, message_id)
        if row is None:
            return ConversationDeleted("The conversation was deleted while this answer was written")
        return AnswerSuperseded("This answer was taken over by a retry of the same request")

    async def find_by_idempotency_key(self, owner_sub: str, key: str) -> Message | None:
        """The user message owner_sub sent with this Idempotency-Key, if any."""
        query = select(Message).where(
            col(Message.owner_sub) == owner_sub, col(Message.idempotency_key) == key
        )
        async with self._transaction() as session:
            return (await session.exec(query)).first()

    async def find_reply(self, message_id: uuid.UUID) -> Message | None:
        """The assistant message answering message_id, if any."""
        query = (
            select(Message)
            .where(col(Message.reply_to_id) == message_id)
            .order_by(col(Message.created_at).desc())
        )
        async with self._transaction() as session:
            return (await session.exec(query)).first()


def _usage_values(usage: TokenUsage | None, prefix: str) -> dict[str, int]:
    """The columns (named with prefix) that store usage; none when usage is None."""
    if usage is None:
        return {}
    return {
        f"{prefix}prompt_tokens": usage.prompt_tokens,
        f"{prefix}completion_tokens": usage.completion_tokens,
        f"{prefix}total_tokens": usage.total_tokens,
    }


def _apply_usage(message: Message, usage: TokenUsage | None, prefix: str = "") -> None:
    for name, value in _usage_values(usage, prefix).items():
        setattr(message, name, value)
