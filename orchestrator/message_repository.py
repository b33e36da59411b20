"""Messages in SQL: questions, answers as they are written, and the transaction they share.

Every method runs in its own short transaction, so no session outlives a request or spans a
model call. Database failures leave this module as ``StorageUnavailable``.
``ConversationRepository`` (``orchestrator.repository``) adds the conversations.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import and_, func, or_, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from orchestrator.errors import IdempotencyInProgress, NotFound, StorageUnavailable
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
        _apply_classification_usage(message, classification_usage)
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
        content: str | None = None,
        status: MessageStatus | None = None,
        usage: TokenUsage | None = None,
        classification_usage: TokenUsage | None = None,
        agent: str | None = None,
        confidence: float | None = None,
        classification_method: str | None = None,
    ) -> Message:
        """Change a stored message (route, finalise a streamed or retried answer); raises NotFound.

        Arguments left None keep their stored value.
        """
        async with self._transaction() as session:
            message = await session.get(Message, message_id)
            if message is None:
                raise NotFound("Message not found")
            if content is not None:
                message.content = content
            if status is not None:
                message.status = status
            if agent is not None:
                message.agent = agent
            if confidence is not None:
                message.confidence = confidence
            if classification_method is not None:
                message.classification_method = classification_method
            _apply_usage(message, usage)
            _apply_classification_usage(message, classification_usage)
            message.updated_at = self._clock()
            session.add(message)
        return message

    async def save_progress(self, message_id: uuid.UUID, content: str) -> bool:
        """Store the text a ``streaming`` answer has so far; False when it is no longer streaming.

        One UPDATE by primary key, no read: it runs for every batch of streamed text.
        """
        statement = (
            update(Message)
            .where(col(Message.id) == message_id, col(Message.status) == MessageStatus.STREAMING)
            .values(content=content, updated_at=self._clock())
        )
        async with self._transaction() as session:
            result = await session.exec(statement)
        return bool(result.rowcount)

    async def claim_answer(
        self, message_id: uuid.UUID, *, stale_before: datetime
    ) -> Message | None:
        """Take over a ``failed`` answer, or a ``streaming`` one last written before stale_before,
        to answer its question again: it becomes ``streaming`` and empty.

        Atomic, so of two retries at once only one wins; None when the answer was not
        claimable (it is being written, or another retry took it).
        """
        claimable = or_(
            col(Message.status) == MessageStatus.FAILED,
            and_(
                col(Message.status) == MessageStatus.STREAMING,
                func.coalesce(col(Message.updated_at), col(Message.created_at)) < stale_before,
            ),
        )
        statement = (
            update(Message)
            .where(col(Message.id) == message_id, claimable)
            .values(
                status=MessageStatus.STREAMING,
                content="",
                updated_at=self._clock(),
                **dict.fromkeys(_USAGE_COLUMNS),
            )
        )
        async with self._transaction() as session:
            result = await session.exec(statement)
            if not result.rowcount:
                return None
            return await session.get(Message, message_id)

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


_USAGE_COLUMNS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "classification_prompt_tokens",
    "classification_completion_tokens",
    "classification_total_tokens",
)


def _apply_usage(message: Message, usage: TokenUsage | None) -> None:
    if usage is None:
        return
    message.prompt_tokens = usage.prompt_tokens
    message.completion_tokens = usage.completion_tokens
    message.total_tokens = usage.total_tokens


def _apply_classification_usage(message: Message, usage: TokenUsage | None) -> None:
    if usage is None:
        return
    message.classification_prompt_tokens = usage.prompt_tokens
    message.classification_completion_tokens = usage.completion_tokens
    message.classification_total_tokens = usage.total_tokens
