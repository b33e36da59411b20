"""``GET /api/agents``: the agents the caller may route questions to."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from orchestrator.agents import allowed_agents
from orchestrator.api.dependencies import require
from orchestrator.api.schemas import AgentList, AgentOut
from orchestrator.identity import Principal

router = APIRouter(prefix="/api/agents", tags=["agents"])


@router.get("")
async def list_agents(
    principal: Annotated[Principal, Depends(require("agents:read"))],
) -> AgentList:
    return AgentList(items=[AgentOut.of(agent) for agent in allowed_agents(principal.permissions)])
