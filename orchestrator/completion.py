"""Answer a question with an agent: the prompt from its system prompt and the conversation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from orchestrator.agents import Agent
from orchestrator.llm import ChatMessage, Completion, LLMClient, StreamDelta, StreamEnd


def build_messages(
    agent: Agent, history: Sequence[tuple[str, str]], query: str, *, max_history: int = 20
) -> list[ChatMessage]:
    """System prompt, the last ``max_history`` turns of ``history``, then ``query``.

    ``history`` holds earlier (role, content) pairs, oldest first, without ``query`` itself;
    roles other than user and assistant and empty contents are left out.
    """
    messages: list[ChatMessage] = [{"role": "system", "content": agent.system_prompt}]
    turns: list[ChatMessage] = []
    for role, content in history:
        if not content:
            continue
        if role == "user":
            turns.append({"role": "user", "content": content})
        elif role == "assistant":
            turns.append({"role": "assistant", "content": content})
    if max_history > 0:
        messages.extend(turns[-max_history:])
    messages.append({"role": "user", "content": query})
    return messages


async def generate_chat_completion(
    llm: LLMClient,
    agent: Agent,
    history: Sequence[tuple[str, str]],
    query: str,
    *,
    max_tokens: int | None = None,
) -> Completion:
    """The agent's whole answer. Raises the ``LLMError`` subclasses of the client."""
    return await llm.complete(build_messages(agent, history, query), max_tokens=max_tokens)


def stream_chat_completion(
    llm: LLMClient,
    agent: Agent,
    history: Sequence[tuple[str, str]],
    query: str,
    *,
    max_tokens: int | None = None,
) -> AsyncIterator[StreamDelta | StreamEnd]:
    """The agent's answer as deltas then one StreamEnd; errors surface from the iterator."""
    return llm.stream(build_messages(agent, history, query), max_tokens=max_tokens)
