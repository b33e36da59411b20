"""What the lifespan opens and every request shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.answer_liveness import AnswerLiveness
from orchestrator.chat import ChatService
from orchestrator.identity import AssertionVerifier
from orchestrator.jwks import KeySource
from orchestrator.llm import LLMClient
from orchestrator.repository import ConversationRepository
from orchestrator.settings import OrchestratorSettings


@dataclass(frozen=True, slots=True)
class Resources:
    settings: OrchestratorSettings
    engine: AsyncEngine
    repository: ConversationRepository
    keys: KeySource
    verifier: AssertionVerifier
    llm: LLMClient
    liveness: AnswerLiveness
    chat: ChatService


class State(TypedDict):
    """The lifespan state Starlette copies into each request's ``scope["state"]``."""

    resources: Resources
