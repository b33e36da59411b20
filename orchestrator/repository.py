"""Conversations and their messages in SQL: the only place that queries them.

Conversations are here; the message operations come from ``MessageRepository``
(``orchestrator.message_repository``) and ``AnswerRepository`` (``orchestrator.answer_repository``).
Every method runs in its own short transaction, so no session outlives a request or spans a model
call. Database failures leave as ``StorageUnavailable``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import delete, func
from sqlmodel import col, select

from orchestrator.answer_repository import AnswerRepository
from orchestrator.message_repository import (
    TITLE_MAX_CHARS,
    TokenUsage,
    title_from,
    utc_now,
)
from orchestrator.models import Conversation, Message

__all__ = [
    "TITLE_MAX_CHARS",
    "ConversationRepository",
    "Page",
    "TokenUsage",
    "title_from",
    "utc_now",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing and the size of the whole listing."""

    items: list[T]
    total: int
    limit: int
    offset: int


class ConversationRepository(AnswerRepository):
    """Create, read, list and delete conversations; add and finalise their messages."""

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
