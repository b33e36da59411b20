"""Settings of the local Azure OpenAI server: environment variables prefixed ``MRO_FAKE_AZURE_``."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class FakeAzureSettings(BaseSettings):
    """How the local server listens and behaves; it is a development and test tool only."""

    model_config = SettingsConfigDict(env_prefix="MRO_FAKE_AZURE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8002, ge=0, le=65535)
    log_level: str = "info"
    # None: any non-empty api-key or bearer token is accepted. Set: the api-key must match it.
    api_key: SecretStr | None = None
    # The /_control API scripts answers and exposes recorded calls: loopback binds only.
    control: bool = True
    # The ``model`` field of answers (Azure reports the model behind the deployment).
    model: str = "gpt-4o-mini-2024-07-18"
    # Pause between streamed chunks, so a browser shows the answer arriving.
    chunk_delay_seconds: float = Field(default=0.0, ge=0.0, le=5.0)
