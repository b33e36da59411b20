"""Pick the agent for a question: the model's structured answer, or keywords when it fails.

Errors, both ``orchestrator.errors.PermissionDenied`` (403)::

    NoAgentAvailable  the caller may use no agent at all
    AgentNotAllowed   the requested agent is unknown or not granted to the caller
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.agents import Agent
from orchestrator.errors import PermissionDenied
from orchestrator.llm import ChatMessage, LLMClient, LLMError, Usage

log = logging.getLogger(__name__)

CLASSIFICATION_SCHEMA_NAME = "agent_classification"
"""The response_format name of a classification request (the local server recognises it)."""

_MAX_REASONING = 500
_DEFAULT_CONFIDENCE = 0.2


@dataclass(frozen=True, slots=True)
class Classification:
    """The chosen agent; ``usage`` is the routing call's, None when no model answered it."""

    agent: str
    confidence: float
    reasoning: str
    method: Literal["model", "keywords", "explicit"]
    usage: Usage | None = None


class NoAgentAvailable(PermissionDenied):
    code = "no_agent_available"
    title = "No agent available"


class AgentNotAllowed(PermissionDenied):
    code = "agent_not_allowed"
    title = "Agent not allowed"


class _ModelAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    agent: str
    confidence: float = Field(ge=0.0, le=1.0)
    reasoning: str = ""


def classification_schema(options: Sequence[Agent]) -> dict[str, Any]:
    """The response_format ``json_schema`` object: the agent enum is restricted to ``options``."""
    return {
        "name": CLASSIFICATION_SCHEMA_NAME,
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "agent": {"type": "string", "enum": [agent.name for agent in options]},
                "confidence": {"type": "number", "description": "From 0 (guess) to 1 (certain)."},
                "reasoning": {"type": "string", "description": "One short sentence."},
            },
            "required": ["agent", "confidence", "reasoning"],
            "additionalProperties": False,
        },
    }


def classification_messages(query: str, options: Sequence[Agent]) -> list[ChatMessage]:
    """The prompt asking the model to route ``query`` to one of ``options``."""
    listing = "\n".join(f"- {agent.name}: {agent.description}" for agent in options)
    system = (
        "You route questions from aircraft maintenance staff to exactly one specialist "
        f"assistant. The assistants are:\n{listing}\n\n"
        "Answer with JSON only: the assistant's name as agent, your confidence from 0 to 1, "
        "and one short sentence of reasoning. Give a low confidence when the question fits "
        "none of them well. Do not answer the question itself."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": query}]


async def classify_request(
    query: str,
    options: Sequence[Agent],
    llm: LLMClient,
    *,
    min_confidence: float = 0.5,
    timeout: float = 10.0,  # noqa: ASYNC109 - bounds the model call, retries included
) -> Classification:
    """The agent for ``query``, always one of ``options``.

    Falls back to ``classify_by_keywords`` when the model fails, is late, answers outside the
    schema or the options, or is less confident than ``min_confidence``. The routing call's
    token usage goes with the result whenever the model answered, also when its answer was not
    used. Raises NoAgentAvailable when ``options`` is empty.
    """
    if not options:
        raise NoAgentAvailable("The caller may not use any agent")
    try:
        async with asyncio.timeout(timeout):
            completion = await llm.complete(
                classification_messages(query, options),
                max_tokens=300,
                json_schema=classification_schema(options),
                timeout=timeout,
            )
    except LLMError as exc:
        return _fallback(query, options, f"model error {exc.code}")
    except TimeoutError:
        return _fallback(query, options, "model timeout")
    usage = completion.usage
    try:
        answer = _ModelAnswer.model_validate_json(completion.content)
    except ValidationError:
        return _fallback(query, options, "unreadable model answer", usage)
    if answer.agent not in {agent.name for agent in options}:
        return _fallback(query, options, "model chose an agent outside the options", usage)
    if answer.confidence < min_confidence:
        reason = f"model confidence {answer.confidence:.2f} too low"
        return _fallback(query, options, reason, usage)
    return Classification(
        agent=answer.agent,
        confidence=answer.confidence,
        reasoning=answer.reasoning.strip()[:_MAX_REASONING],
        method="model",
        usage=usage,
    )


def classify_by_keywords(query: str, options: Sequence[Agent]) -> Classification:
    """Deterministic routing by keyword hits; ties and no hits go to the first option.

    Confidence: 0.2 without hits, else 0.5 + 0.1 per hit ahead of the runner-up, at most 0.9.
    Raises NoAgentAvailable when ``options`` is empty.
    """
    if not options:
        raise NoAgentAvailable("The caller may not use any agent")
    text = query.lower()
    hits = [_hits(agent.keywords, text) for agent in options]
    best = max(range(len(options)), key=lambda index: len(hits[index]))
    if not hits[best]:
        return Classification(
            agent=options[0].name,
            confidence=_DEFAULT_CONFIDENCE,
            reasoning="No keyword matched; routed to the default agent.",
            method="keywords",
        )
    runner_up = max((len(h) for index, h in enumerate(hits) if index != best), default=0)
    confidence = min(0.9, 0.5 + 0.1 * (len(hits[best]) - runner_up))
    return Classification(
        agent=options[best].name,
        confidence=round(confidence, 2),
        reasoning=f"Matched keywords: {', '.join(hits[best])}.",
        method="keywords",
    )


def choose_explicit(name: str, options: Sequence[Agent]) -> Classification:
    """The caller's own choice of agent. Raises AgentNotAllowed when it is not in ``options``."""
    if name not in {agent.name for agent in options}:
        raise AgentNotAllowed(f"Agent {name!r} is not available to the caller")
    return Classification(
        agent=name, confidence=1.0, reasoning="Requested by the caller.", method="explicit"
    )


def _fallback(
    query: str, options: Sequence[Agent], reason: str, usage: Usage | None = None
) -> Classification:
    log.info("Classifier falls back to keywords: %s", reason)
    result = classify_by_keywords(query, options)
    return Classification(
        agent=result.agent,
        confidence=result.confidence,
        reasoning=f"{result.reasoning} (Model not used: {reason}.)",
        method="keywords",
        usage=usage,
    )


def _hits(keywords: Sequence[str], text: str) -> list[str]:
    """The keywords found in ``text`` as whole words."""
    return [
        keyword
        for keyword in keywords
        if re.search(rf"(?<![a-z0-9]){re.escape(keyword)}(?![a-z0-9])", text)
    ]
