"""What a conversation turn is made of: the question, the routed turn, the stored exchange."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.agents import Agent
from orchestrator.classifier import Classification
from orchestrator.models import Conversation, Message


@dataclass(frozen=True, slots=True)
class Question:
    """What the caller sent."""

    content: str
    agent: str | None = None
    max_tokens: int | None = None
    idempotency_key: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Exchange:
    """A stored question and its stored answer; ``replayed`` when an earlier request made them."""

    user: Message
    assistant: Message
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Turn:
    """A question stored and routed; ``answer`` is its ``streaming`` row, to be written."""

    conversation: Conversation
    user: Message
    answer: Message
    agent: Agent
    classification: Classification
    history: list[tuple[str, str]]
    question: Question
