"""The orchestrator's settings: environment prefix, defaults and production safeguards."""

from __future__ import annotations

import os
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from orchestrator.settings import DEV_AZURE_API_KEY, Environment, OrchestratorSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MRO_ORCHESTRATOR_* variable of the machine leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("MRO_ORCHESTRATOR_"):
            monkeypatch.delenv(name)


def test_defaults_match_the_documented_contract() -> None:
    """Defaults: loopback 8001, relative SQLite file, gateway JWKS on 8000, 30 s leeway."""
    settings = OrchestratorSettings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8001)
    assert settings.database_url == "sqlite+aiosqlite:///./var/orchestrator.db"
    assert settings.gateway_jwks_url == "http://127.0.0.1:8000/.well-known/jwks.json"
    assert (settings.assertion_issuer, settings.assertion_audience) == (
        "mro-gateway",
        "mro-orchestrator",
    )
    assert settings.assertion_leeway_seconds == 30
    assert settings.assertion_algorithms == ["ES256"]
    assert (settings.azure_endpoint, settings.azure_deployment, settings.azure_api_version) == (
        "http://127.0.0.1:8002",
        "gpt-4o-mini",
        "2024-10-21",
    )


def test_development_falls_back_to_the_dev_only_key() -> None:
    """In development without a credential the local server's dev-only key is used."""
    settings = OrchestratorSettings()
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.azure_api_key is not None
    assert settings.azure_api_key.get_secret_value() == DEV_AZURE_API_KEY


def test_environment_variables_are_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """MRO_ORCHESTRATOR_* variables set the fields; secrets stay SecretStr."""
    monkeypatch.setenv("MRO_ORCHESTRATOR_PORT", "9101")
    monkeypatch.setenv("MRO_ORCHESTRATOR_AZURE_API_KEY", "real-key-123")
    monkeypatch.setenv("MRO_ORCHESTRATOR_ASSERTION_ALGORITHMS", '["ES256", "EdDSA"]')
    settings = OrchestratorSettings()
    assert settings.port == 9101
    assert isinstance(settings.azure_api_key, SecretStr)
    assert "real-key-123" not in repr(settings)
    assert settings.assertion_algorithms == ["ES256", "EdDSA"]


@pytest.mark.parametrize("algorithms", [["HS256"], ["none"], ["ES256", "HS512"], []])
def test_symmetric_or_no_algorithms_are_refused(algorithms: list[str]) -> None:
    """HS*, none and an empty allow-list are configuration errors."""
    with pytest.raises(ValidationError, match="assertion algorithms"):
        OrchestratorSettings(assertion_algorithms=algorithms)


def test_production_requires_an_azure_credential() -> None:
    """Production refuses to start without an API key or Entra token."""
    with pytest.raises(ValidationError, match="must be set in production"):
        OrchestratorSettings(environment="production")


@pytest.mark.parametrize(
    "field", ["azure_api_key", "azure_entra_token"], ids=["api-key", "entra-token"]
)
@pytest.mark.parametrize("value", [DEV_AZURE_API_KEY, "change-me", "  "])
def test_production_refuses_placeholder_secrets(field: str, value: str) -> None:
    """Production refuses the dev-only key and placeholder values."""
    secrets: dict[str, Any] = {field: SecretStr(value)}
    with pytest.raises(ValidationError, match="placeholder"):
        OrchestratorSettings(environment="production", **secrets)


def test_production_accepts_a_real_credential() -> None:
    """A real Entra token is enough in production and no dev key is filled in."""
    settings = OrchestratorSettings(
        environment="production", azure_entra_token=SecretStr("eyJ0eXAiOi-real-token")
    )
    assert settings.azure_api_key is None
