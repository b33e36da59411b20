"""Typed route dependencies: settings, repository and chat come from the app's lifespan."""

from __future__ import annotations

from fastapi import APIRouter

from orchestrator.api.dependencies import Chat, Repository, Settings, get_settings
from orchestrator.settings import OrchestratorSettings
from tests.fixtures.orchestrator import Orchestrator


async def test_dependencies_resolve_and_settings_can_be_overridden(
    orchestrator: Orchestrator,
) -> None:
    """Routes receive the lifespan's objects; tests may swap the settings dependency."""
    router = APIRouter()

    @router.get("/api/probe")
    async def probe(settings: Settings, repository: Repository, chat: Chat) -> dict[str, object]:
        return {
            "port": settings.port,
            "repository": repository is orchestrator.resources.repository,
            "chat": chat is orchestrator.resources.chat,
        }

    orchestrator.app.include_router(router)
    headers = orchestrator.as_user()
    assert (await orchestrator.http.get("/api/probe", headers=headers)).json() == {
        "port": 8001,
        "repository": True,
        "chat": True,
    }
    orchestrator.app.dependency_overrides[get_settings] = lambda: OrchestratorSettings(port=9999)
    assert (await orchestrator.http.get("/api/probe", headers=headers)).json()["port"] == 9999
