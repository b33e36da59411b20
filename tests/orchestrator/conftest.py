"""Orchestrator test fixtures: those of tests/fixtures, a database of each backend, a clock."""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import create_engine
from orchestrator.migrate import upgrade
from orchestrator.models import Conversation
from orchestrator.repository import ConversationRepository
from tests.fixtures.azure import azure, fake_azure
from tests.fixtures.orchestrator import (
    assertion_signer,
    azure_llm,
    database_url,
    orchestrator,
    repository,
    scripted_llm,
    sqlite_template,
)
from tests.fixtures.postgres import fresh_schema, postgres_url
from tests.orchestrator.fakes import ManualClock

__all__ = [
    "assertion_signer",
    "azure",
    "azure_llm",
    "backend_url",
    "clock",
    "conversation",
    "database_url",
    "engine",
    "fake_azure",
    "orchestrator",
    "postgres_url",
    "repo",
    "repository",
    "scripted_llm",
    "sqlite_template",
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest) -> str:
    """A fresh, migrated SQLite database; or (marked ``postgres``) the throwaway cluster."""
    fixture = "database_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
async def engine(backend_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated database of each backend (a schema of its own on PostgreSQL)."""
    if backend_url.startswith("sqlite"):
        engine = create_engine(backend_url)
        yield engine
        await engine.dispose()
        return
    async with fresh_schema(backend_url) as engine:
        await upgrade(engine)
        yield engine


@pytest.fixture
def clock() -> ManualClock:
    """A UTC clock the test moves by hand (the API tests override it with epoch seconds)."""
    return ManualClock()


@pytest.fixture
def repo(engine: AsyncEngine, clock: ManualClock) -> ConversationRepository:
    """A repository on each backend whose times come from ``clock``."""
    return ConversationRepository(engine, clock=clock)


@pytest.fixture
async def conversation(repo: ConversationRepository) -> Conversation:
    """An empty conversation of user u1 in ``repo``."""
    return await repo.create_conversation(owner_sub="u1")
