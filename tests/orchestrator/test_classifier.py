"""classify_request against the local server, and the keyword fallback it relies on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from typing import Any

import pytest

from orchestrator.agents import AGENTS, Agent
from orchestrator.classifier import (
    CLASSIFICATION_SCHEMA_NAME,
    AgentNotAllowed,
    Classification,
    NoAgentAvailable,
    choose_explicit,
    classify_by_keywords,
    classify_request,
)
from orchestrator.llm import AzureLLMClient, ChatMessage, Completion, StreamDelta, StreamEnd
from tests.fixtures.azure import FakeAzure

ALL = list(AGENTS.values())
QUERY = "Hydraulic leak and an ECAM caution after the pump change: how do I troubleshoot it?"


@pytest.fixture
async def llm(azure: FakeAzure) -> AsyncIterator[AzureLLMClient]:
    client = AzureLLMClient(azure.llm_settings(max_retries=0))
    yield client
    await client.aclose()


def answer(agent: str, confidence: float, reasoning: str = "Because.") -> str:
    return json.dumps({"agent": agent, "confidence": confidence, "reasoning": reasoning})


async def test_valid_model_answer_is_used(llm: AzureLLMClient, azure: FakeAzure) -> None:
    """A schema-valid, confident model answer within the options is taken as is."""
    azure.queue_response(answer("planning", 0.83, "It asks for a check slot."))
    result = await classify_request("Anything", ALL, llm)
    assert result == Classification(
        "planning", 0.83, "It asks for a check slot.", "model", usage=result.usage
    )


async def test_the_routing_calls_usage_is_what_the_server_reported(
    llm: AzureLLMClient, azure: FakeAzure
) -> None:
    """The classification carries the routing call's token counts as the server recorded them."""
    result = await classify_request(QUERY, ALL, llm)
    [call] = azure.calls()
    assert result.usage is not None
    assert asdict(result.usage) == azure.usage()[call.seq]


async def test_request_restricts_the_schema_to_the_options(
    llm: AzureLLMClient, azure: FakeAzure
) -> None:
    """The model is offered only the caller's agents, by enum and in the prompt."""
    options = [AGENTS["documentation"], AGENTS["compliance"]]
    await classify_request(QUERY, options, llm)
    [call] = azure.calls()
    json_schema = call.body["response_format"]["json_schema"]
    assert json_schema["name"] == CLASSIFICATION_SCHEMA_NAME
    assert json_schema["schema"]["properties"]["agent"]["enum"] == ["documentation", "compliance"]
    assert call.system_prompt is not None
    assert "- compliance:" in call.system_prompt
    assert "troubleshooting" not in call.system_prompt


async def test_local_default_answer_routes_by_keywords_as_the_model(
    llm: AzureLLMClient,
) -> None:
    """Offline, the local server's own answer is a valid model classification."""
    result = await classify_request(QUERY, ALL, llm)
    assert (result.agent, result.method) == ("troubleshooting", "model")


@pytest.mark.parametrize(
    "content",
    [
        "The troubleshooting agent, obviously.",
        answer("compliance", 0.9),
        answer("planning", 0.3),
        answer("planning", 1.7),
        json.dumps({"agent": "planning"}),
    ],
    ids=["not-json", "outside-options", "unsure", "confidence-out-of-range", "missing-fields"],
)
async def test_unusable_model_answers_fall_back_to_keywords(
    llm: AzureLLMClient, azure: FakeAzure, content: str
) -> None:
    """Invalid JSON, a foreign agent, low or invalid confidence all give the keyword choice."""
    options = [AGENTS["documentation"], AGENTS["troubleshooting"], AGENTS["planning"]]
    azure.queue_response(content)
    result = await classify_request(QUERY, options, llm)
    assert result.method == "keywords"
    assert result.agent == classify_by_keywords(QUERY, options).agent == "troubleshooting"
    assert "Model not used" in result.reasoning
    # The model answered, so its call was paid for and is reported.
    assert result.usage is not None
    assert asdict(result.usage) == azure.usage()[azure.calls()[0].seq]


@pytest.mark.parametrize(
    ("kind", "extra"),
    [("500", {}), ("429", {"retry_after": 1}), ("malformed", {}), ("error", {"status": 400})],
)
async def test_model_errors_fall_back_to_keywords(
    llm: AzureLLMClient, azure: FakeAzure, kind: Any, extra: dict[str, Any]
) -> None:
    """Upstream errors and unreadable answers give the keyword choice instead of an error."""
    azure.inject_fault(kind, **extra)
    result = await classify_request(QUERY, ALL, llm)
    assert (result.agent, result.method, result.usage) == ("troubleshooting", "keywords", None)


async def test_slow_model_falls_back_within_the_timeout(
    llm: AzureLLMClient, azure: FakeAzure
) -> None:
    """A model slower than the timeout gives the keyword choice."""
    azure.inject_fault("slow", delay=1.0)
    result = await classify_request(QUERY, ALL, llm, timeout=0.2)
    assert (result.agent, result.method) == ("troubleshooting", "keywords")


class HangingLLM:
    """An LLMClient that never answers: the classifier's own deadline must end the wait."""

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        json_schema: dict[str, Any] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the protocol's signature
    ) -> Completion:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> AsyncIterator[StreamDelta | StreamEnd]:
        raise AssertionError("not used")
        yield StreamEnd(None, None)

    async def aclose(self) -> None:
        return None


async def test_timeout_bounds_the_whole_model_call() -> None:
    """Even a client that ignores its timeout cannot hold the classifier past its deadline."""
    result = await classify_request(QUERY, ALL, HangingLLM(), timeout=0.05)
    assert result.method == "keywords"
    assert "timeout" in result.reasoning


async def test_min_confidence_is_the_callers_threshold(
    llm: AzureLLMClient, azure: FakeAzure
) -> None:
    """The same answer is accepted or refused depending on min_confidence."""
    azure.queue_response(answer("planning", 0.6), repeat=2)
    assert (await classify_request(QUERY, ALL, llm, min_confidence=0.5)).method == "model"
    assert (await classify_request(QUERY, ALL, llm, min_confidence=0.7)).method == "keywords"


async def test_no_options_raise_without_calling_the_model(
    llm: AzureLLMClient, azure: FakeAzure
) -> None:
    """A caller without agents gets NoAgentAvailable (403) and no model call is made."""
    with pytest.raises(NoAgentAvailable) as caught:
        await classify_request(QUERY, [], llm)
    assert (caught.value.status, caught.value.code) == (403, "no_agent_available")
    assert azure.calls() == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Where is the AMM task and IPC figure for the brake?", "documentation"),
        ("Intermittent fault code on the bleed valve, ECAM caution", "troubleshooting"),
        ("When is the next C-check due? Plan the work package", "planning"),
        ("Does AD 2024-0123 apply, and can we defer under the MEL?", "compliance"),
    ],
)
def test_keywords_route_typical_questions(query: str, expected: str) -> None:
    """Typical questions of each kind reach their agent by keywords alone."""
    result = classify_by_keywords(query, ALL)
    assert (result.agent, result.method) == (expected, "keywords")
    assert 0.5 <= result.confidence <= 0.9


def test_keywords_match_whole_words_only() -> None:
    """'ad' inside 'load' or 'bad' is not an Airworthiness Directive."""
    result = classify_by_keywords("The load is bad", [AGENTS["planning"], AGENTS["compliance"]])
    assert (result.agent, result.confidence) == ("planning", 0.2)


def test_keywords_without_hits_pick_the_first_option() -> None:
    """No keyword at all routes to the first option with a low confidence."""
    options = [AGENTS["compliance"], AGENTS["documentation"]]
    result = classify_by_keywords("Hello there", options)
    assert (result.agent, result.confidence) == ("compliance", 0.2)


def test_keywords_never_leave_the_options() -> None:
    """A troubleshooting question without the troubleshooting agent goes to an allowed one."""
    options = [AGENTS["documentation"], AGENTS["planning"]]
    assert classify_by_keywords(QUERY, options).agent in {"documentation", "planning"}


def test_keywords_need_options() -> None:
    """The keyword classifier raises NoAgentAvailable without options."""
    with pytest.raises(NoAgentAvailable):
        classify_by_keywords(QUERY, [])


def test_explicit_choice_must_be_allowed() -> None:
    """A requested agent is honoured when allowed, else AgentNotAllowed (403)."""
    options: list[Agent] = [AGENTS["documentation"]]
    assert choose_explicit("documentation", options) == Classification(
        "documentation", 1.0, "Requested by the caller.", "explicit"
    )
    with pytest.raises(AgentNotAllowed) as caught:
        choose_explicit("compliance", options)
    assert (caught.value.status, caught.value.code) == (403, "agent_not_allowed")
