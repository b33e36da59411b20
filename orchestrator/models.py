"""Conversations and their messages (SQLModel tables).

The schema itself is owned by the Alembic migrations in ``orchestrator/migrations``; these models
must stay in step with them (a test compares the two).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Text,
    TypeDecorator,
    Uuid,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

# The orchestrator's own metadata: other packages' SQLModel tables never leak into its schema.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)  # noqa: S101 - the column type guarantees it
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_REGISTRY = registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))


class OrchestratorTable(SQLModel, registry=_REGISTRY):
    """Base of the orchestrator's tables; ``OrchestratorTable.metadata`` is the schema."""


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class MessageStatus(StrEnum):
    # The answer is being written: stored before the model is called, its text saved as it
    # streams. A row left in this state by a process that died is read back as partial or
    # failed once it is stale (``orchestrator.answer_liveness``).
    STREAMING = "streaming"
    COMPLETE = "complete"
    # The answer was cut (client went away, upstream failed mid-stream): content is what arrived.
    PARTIAL = "partial"
    # The model produced nothing usable; the user's message is kept.
    FAILED = "failed"


class Conversation(OrchestratorTable, table=True):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_owner_updated", "owner_sub", "updated_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))
    owner_sub: str = Field(max_length=255)
    owner_name: str = Field(default="", max_length=255)
    title: str = Field(default="", max_length=200)
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class Message(OrchestratorTable, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_created", "conversation_id", "created_at"),
        Index("ix_messages_reply_to", "reply_to_id"),
        Index("uq_messages_owner_idempotency_key", "owner_sub", "idempotency_key", unique=True),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))
    conversation_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False)
    )
    # The conversation owner's subject, kept here so idempotency keys are unique per user.
    owner_sub: str = Field(max_length=255)
    role: str = Field(max_length=16)
    content: str = Field(default="", sa_column=Column(Text, nullable=False))
    # The user message an assistant message answers.
    reply_to_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(Uuid, ForeignKey("messages.id", ondelete="CASCADE"), nullable=True),
    )
    agent: str | None = Field(default=None, max_length=64)
    confidence: float | None = None
    classification_method: str | None = Field(default=None, max_length=16)
    status: str = Field(default=MessageStatus.COMPLETE, max_length=16)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    # Tokens of the classifier's routing call; null when no model answered it (explicit agent,
    # or keywords after a failed call).
    classification_prompt_tokens: int | None = None
    classification_completion_tokens: int | None = None
    classification_total_tokens: int | None = None
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    # Last write of the row; a streaming answer not written for too long is stale. Nullable only
    # because SQLite cannot add a NOT NULL column to a table in place; every write sets it.
    updated_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # Which attempt at the answer owns the row: a retry that takes a stale answer over raises it,
    # and every write of the answer is conditional on the writer's own attempt, so a process
    # wrongly judged gone cannot overwrite the retry's answer.
    attempt: int = Field(
        default=1, sa_column=Column(Integer, nullable=False, server_default=text("1"))
    )
