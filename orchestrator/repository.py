"""Conversations and messages in SQL: the only module that queries them.

Every method runs in its own short transaction, so no session outlives a request or spans a
model call. Database failures leave this module as ``StorageUnavailable``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar

from sqlalchemy import delete, func, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from orchestrator.errors import IdempotencyInProgress, NotFound, StorageUnavailable
from orchestrator.models import Conversation, Message, MessageStatus, Role

T = TypeVar("T")

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


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing and the size of the whole listing."""

    items: list[T]
    total: int
    limit: int
    offset: int


def title_from(content: str) -> str:
    """A conversation title derived from its first question."""
    line = " ".join(content.split())
    if len(line) <= TITLE_MAX_CHARS:
        return line
    return line[: TITLE_MAX_CHARS - 1].rstrip() + "…"


class ConversationRepository:
    """Create, read, list and delete conversations; add and finalise their messages."""

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

    # Conversations

    async def create_conversation(
        self, *, owner_sub: str, owner_name: str = "", title: str = ""
    ) -> Conversation:
        """A new, empty conversation owned by owner_sub."""
        now = self._clock()
        conversation = Conversation(
            owner_sub=owner_sub,
            owner_name=owner_name,
            title=title.strip(),
            created_at=now,
            updated_at=now,
        )
        async with self._transaction() as session:
            session.add(conversation)
        return conversation

    async def get_conversation(self, conversation_id: uuid.UUID) -> Conversation | None:
        """Any user's conversation by id (callers check ``conversations:read:all``)."""
        async with self._transaction() as session:
            return await session.get(Conversation, conversation_id)

    async def get_owned_conversation(
        self, conversation_id: uuid.UUID, owner_sub: str
    ) -> Conversation | None:
        """The conversation when owner_sub owns it; None for a missing or foreign id."""
        conversation = await self.get_conversation(conversation_id)
        if conversation is None or conversation.owner_sub != owner_sub:
            return None
        return conversation

    async def list_for_owner(
        self, owner_sub: str, *, limit: int = 20, offset: int = 0
    ) -> Page[Conversation]:
        """owner_sub's conversations, most recently active first."""
        return await self._list(owner_sub, limit=limit, offset=offset)

    async def list_all(
        self, *, owner_sub: str | None = None, limit: int = 20, offset: int = 0
    ) -> Page[Conversation]:
        """Every user's conversations (or one user's), most recently active first."""
        return await self._list(owner_sub, limit=limit, offset=offset)

    async def _list(self, owner_sub: str | None, *, limit: int, offset: int) -> Page[Conversation]:
        query = select(Conversation)
        count = select(func.count()).select_from(Conversation)
        if owner_sub is not None:
            query = query.where(col(Conversation.owner_sub) == owner_sub)
            count = count.where(col(Conversation.owner_sub) == owner_sub)
        query = (
            query.order_by(
                col(Conversation.updated_at).desc(),
                col(Conversation.created_at).desc(),
                col(Conversation.id).desc(),
            )
            .limit(limit)
            .offset(offset)
        )
        async with self._transaction() as session:
            items = list((await session.exec(query)).all())
            total = (await session.exec(count)).one()
        return Page(items=items, total=total, limit=limit, offset=offset)

    async def delete_conversation(self, conversation_id: uuid.UUID, owner_sub: str) -> bool:
        """Delete owner_sub's conversation and all its messages; False when none matched."""
        async with self._transaction() as session:
            owned = (
                await session.exec(
                    select(Conversation.id).where(
                        col(Conversation.id) == conversation_id,
                        col(Conversation.owner_sub) == owner_sub,
                    )
                )
            ).first()
            if owned is None:
                return False
            # Explicit, so the messages go even where foreign keys are not enforced.
            await session.exec(
                delete(Message).where(col(Message.conversation_id) == conversation_id)
            )
            await session.exec(delete(Conversation).where(col(Conversation.id) == conversation_id))
        return True

    # Messages

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
        )
        _apply_usage(message, usage)
        touch = (
            update(Conversation)
            .where(col(Conversation.id) == conversation.id)
            .values(updated_at=now)
        )
        try:
            async with self._transaction() as session:
                session.add(message)
                await session.flush()
                await session.exec(touch)
                if role is Role.USER:
                    await session.exec(
                        update(Conversation)
                        .where(
                            col(Conversation.id) == conversation.id,
                            col(Conversation.title) == "",
                        )
                        .values(title=title_from(content))
                    )
        except IntegrityError as exc:
            if idempotency_key is not None and await self.find_by_idempotency_key(
                conversation.owner_sub, idempotency_key
            ):
                raise IdempotencyInProgress(
                    "A request with this Idempotency-Key is already being processed"
                ) from exc
            raise NotFound("Conversation not found") from exc
        return message

    async def update_message(
        self,
        message_id: uuid.UUID,
        *,
        content: str | None = None,
        status: MessageStatus | None = None,
        usage: TokenUsage | None = None,
        agent: str | None = None,
        confidence: float | None = None,
        classification_method: str | None = None,
    ) -> Message:
        """Change a stored message (finalise a streamed or retried answer); raises NotFound."""
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
            session.add(message)
        return message

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


def _apply_usage(message: Message, usage: TokenUsage | None) -> None:
    if usage is None:
        return
    message.prompt_tokens = usage.prompt_tokens
    message.completion_tokens = usage.completion_tokens
    message.total_tokens = usage.total_tokens
