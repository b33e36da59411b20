"""The orchestrator's settings: environment variables prefixed ``MRO_ORCHESTRATOR_``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The key the local Azure OpenAI server accepts; only ever used in development.
DEV_AZURE_API_KEY = "dev-only-azure-key"

# Values that mark a secret as "not really set"; refused in production.
_PLACEHOLDER_MARKERS = ("dev-only", "change-me", "changeme", "placeholder", "example")

# Asymmetric algorithms only: a symmetric (HS*) key would let anyone holding it mint identities.
SUPPORTED_ASSERTION_ALGORITHMS = frozenset({"ES256", "ES384", "RS256", "PS256", "EdDSA", "Ed25519"})


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class OrchestratorSettings(BaseSettings):
    """Every knob of the orchestrator; secrets are ``SecretStr`` and never logged."""

    model_config = SettingsConfigDict(env_prefix="MRO_ORCHESTRATOR_", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = Field(default=8001, ge=0, le=65535)
    log_level: str = "INFO"

    # Storage
    database_url: str = "sqlite+aiosqlite:///./var/orchestrator.db"
    migrate_on_startup: bool = True

    # Identity assertion from the gateway
    gateway_jwks_url: str = "http://127.0.0.1:8000/.well-known/jwks.json"
    # A JWKS file to trust instead of fetching the URL (air-gapped installations).
    gateway_jwks_file: Path | None = None
    jwks_cache_seconds: float = Field(default=600.0, gt=0)
    jwks_refetch_cooldown_seconds: float = Field(default=30.0, ge=0)
    jwks_fetch_timeout_seconds: float = Field(default=5.0, gt=0)
    assertion_issuer: str = "mro-gateway"
    assertion_audience: str = "mro-orchestrator"
    assertion_leeway_seconds: int = Field(default=30, ge=0, le=300)
    assertion_algorithms: list[str] = Field(default_factory=lambda: ["ES256"])

    # Azure OpenAI (the local offline server by default)
    azure_endpoint: str = "http://127.0.0.1:8002"
    azure_deployment: str = "gpt-4o-mini"
    azure_api_version: str = "2024-10-21"
    azure_api_key: SecretStr | None = None
    azure_entra_token: SecretStr | None = None
    azure_timeout_seconds: float = Field(default=60.0, gt=0)
    azure_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    azure_max_retries: int = Field(default=2, ge=0, le=10)
    azure_retry_backoff_seconds: float = Field(default=0.5, ge=0)
    # A Retry-After longer than this is passed on to the client (503) instead of waited for.
    azure_retry_max_wait_seconds: float = Field(default=8.0, ge=0)

    # Conversation behaviour
    classifier_min_confidence: float = Field(default=0.5, ge=0, le=1)
    classifier_timeout_seconds: float = Field(default=10.0, gt=0)
    max_history_messages: int = Field(default=20, ge=0)

    @field_validator("assertion_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        refused = [alg for alg in value if alg not in SUPPORTED_ASSERTION_ALGORITHMS]
        if refused or not value:
            raise ValueError(
                f"assertion algorithms must be a non-empty subset of "
                f"{sorted(SUPPORTED_ASSERTION_ALGORITHMS)}; refused: {refused}"
            )
        return value

    @model_validator(mode="after")
    def _secrets_by_environment(self) -> Self:
        if self.environment is Environment.DEVELOPMENT:
            if self.azure_api_key is None and self.azure_entra_token is None:
                self.azure_api_key = SecretStr(DEV_AZURE_API_KEY)
            return self
        if self.azure_api_key is None and self.azure_entra_token is None:
            raise ValueError(
                "MRO_ORCHESTRATOR_AZURE_API_KEY or MRO_ORCHESTRATOR_AZURE_ENTRA_TOKEN "
                "must be set in production"
            )
        for name, secret in (
            ("AZURE_API_KEY", self.azure_api_key),
            ("AZURE_ENTRA_TOKEN", self.azure_entra_token),
        ):
            if secret is not None and _is_placeholder(secret.get_secret_value()):
                raise ValueError(f"MRO_ORCHESTRATOR_{name} holds a placeholder value")
        return self


def _is_placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    return not lowered or any(marker in lowered for marker in _PLACEHOLDER_MARKERS)
