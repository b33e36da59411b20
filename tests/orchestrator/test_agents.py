"""The agent catalogue: names, permissions, prompts and permission filtering."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.agents import AGENTS, Agent, allowed_agents


def test_catalogue_has_the_four_agents_in_preference_order() -> None:
    """Documentation, troubleshooting, planning and compliance, each behind its own permission."""
    assert list(AGENTS) == ["documentation", "troubleshooting", "planning", "compliance"]
    assert all(agent.permission == f"agents:use:{name}" for name, agent in AGENTS.items())


def test_allowed_agents_keeps_only_granted_ones_in_order() -> None:
    """Only agents whose permission is held are returned, in catalogue order."""
    permissions = ["agents:use:compliance", "agents:read", "agents:use:documentation"]
    assert [a.name for a in allowed_agents(permissions)] == ["documentation", "compliance"]


def test_no_agent_permission_means_no_agents() -> None:
    """Permissions that grant no agent give an empty list."""
    assert allowed_agents(["agents:read", "messages:create", "agents:use"]) == []


@pytest.mark.parametrize("agent", list(AGENTS.values()), ids=list(AGENTS))
def test_prompts_put_safety_and_approved_data_first(agent: Agent) -> None:
    """Every prompt introduces its assistant, cites the manuals and forbids invented values."""
    prompt = agent.system_prompt
    assert prompt.startswith(f"You are the {agent.title} assistant")
    for phrase in ("Safety first", "AMM", "IPC", "TSM", "MEL", "current revision", "torque"):
        assert phrase in prompt
    assert "Never invent" in prompt


@pytest.mark.parametrize("agent", list(AGENTS.values()), ids=list(AGENTS))
def test_keywords_are_lower_case_and_present(agent: Agent) -> None:
    """Keywords are non-empty lower-case phrases, as the keyword classifier expects."""
    assert agent.keywords
    assert all(k and k == k.lower() and k == k.strip() for k in agent.keywords)


def test_agents_are_immutable() -> None:
    """An agent cannot be changed at run time."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        AGENTS["planning"].permission = "agents:read"  # type: ignore[misc]
