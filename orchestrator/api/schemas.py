"""Request and response bodies of the orchestrator API."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.agents import Agent
from orchestrator.models import Conversation, Message
from orchestrator.repository import Page

MAX_CONTENT_CHARS = 32_000
MAX_TOKENS_LIMIT = 16_384


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConversationCreate(_Body):
    title: str | None = Field(default=None, max_length=200)


class MessageCreate(_Body):
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    agent: str | None = Field(default=None, min_length=1, max_length=64)
    # Strict: the gateway reserves token budgets for exactly this rule (gateway.budgets.question),
    # so "16384", 16384.0 or true must not be coerced into a number it did not reserve for.
    max_tokens: int | None = Field(default=None, strict=True, ge=1, le=MAX_TOKENS_LIMIT)

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content must not be blank")
        return value


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AgentOut(BaseModel):
    name: str
    title: str
    description: str

    @classmethod
    def of(cls, agent: Agent) -> AgentOut:
        return cls(name=agent.name, title=agent.title, description=agent.description)


class AgentList(BaseModel):
    items: list[AgentOut]


class MessageOut(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    role: str
    content: str
    status: str
    reply_to: uuid.UUID | None
    agent: str | None
    confidence: float | None
    method: str | None
    usage: UsageOut | None
    classification_usage: UsageOut | None
    created_at: datetime

    @classmethod
    def of(cls, message: Message, status: str | None = None) -> MessageOut:
        """The message as the API shows it; ``status`` overrides the stored one (a stale answer)."""
        return cls(
            id=message.id,
            conversation_id=message.conversation_id,
            role=message.role,
            content=message.content,
            status=status or message.status,
            reply_to=message.reply_to_id,
            agent=message.agent,
            confidence=message.confidence,
            method=message.classification_method,
            usage=usage_of(message),
            classification_usage=classification_usage_of(message),
            created_at=message.created_at,
        )


def usage_of(message: Message) -> UsageOut | None:
    """The token counts stored with message, if the model reported them."""
    if message.total_tokens is None:
        return None
    return UsageOut(
        prompt_tokens=message.prompt_tokens or 0,
        completion_tokens=message.completion_tokens or 0,
        total_tokens=message.total_tokens,
    )


def classification_usage_of(message: Message) -> UsageOut | None:
    """The token counts of the routing call stored with message, if a model answered it."""
    if message.classification_total_tokens is None:
        return None
    return UsageOut(
        prompt_tokens=message.classification_prompt_tokens or 0,
        completion_tokens=message.classification_completion_tokens or 0,
        total_tokens=message.classification_total_tokens,
    )


class ConversationOut(BaseModel):
    id: uuid.UUID
    title: str
    owner_sub: str
    owner_name: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, conversation: Conversation) -> ConversationOut:
        return cls(
            id=conversation.id,
            title=conversation.title,
            owner_sub=conversation.owner_sub,
            owner_name=conversation.owner_name,
            created_at=conversation.created_at,
            updated_at=conversation.updated_at,
        )


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, page: Page[Conversation]) -> ConversationPage:
        return cls(
            items=[ConversationOut.of(c) for c in page.items],
            total=page.total,
            limit=page.limit,
            offset=page.offset,
        )


class ExchangeOut(BaseModel):
    user_message: MessageOut
    assistant_message: MessageOut
