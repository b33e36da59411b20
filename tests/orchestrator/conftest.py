"""Fixtures of the orchestrator tests, imported from their modules under tests/fixtures."""

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
from tests.fixtures.postgres import postgres_url

__all__ = [
    "assertion_signer",
    "azure",
    "azure_llm",
    "database_url",
    "fake_azure",
    "orchestrator",
    "postgres_url",
    "repository",
    "scripted_llm",
    "sqlite_template",
]
