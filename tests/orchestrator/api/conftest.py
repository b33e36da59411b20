"""Fixtures of the API tests: the app with a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orchestrator.llm import AzureLLMClient
from tests.fixtures.azure import FakeAzure
from tests.fixtures.orchestrator import (
    AssertionSigner,
    FakeClock,
    Orchestrator,
    orchestrator_for,
    settings_for_tests,
)


@pytest.fixture
def clock() -> FakeClock:
    """Epoch seconds the test moves by hand."""
    return FakeClock()


@pytest.fixture
async def timed_orchestrator(
    database_url: str, azure: FakeAzure, azure_llm: AzureLLMClient, clock: FakeClock
) -> AsyncIterator[Orchestrator]:
    """The app on a fresh database whose stored times and assertions follow ``clock``."""
    settings = settings_for_tests(database_url, azure)
    signer = AssertionSigner(clock=clock)
    async with orchestrator_for(settings, signer, llm=azure_llm, clock=clock) as app:
        yield app
