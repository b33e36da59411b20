"""The gateway's settings: environment variables prefixed ``MRO_GATEWAY_``."""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DEV_PEPPER = "dev-only-api-key-pepper-change-me"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class GatewaySettings(BaseSettings):
    """Every knob of the gateway; secrets are ``SecretStr`` and never logged."""

    model_config = SettingsConfigDict(env_prefix="MRO_GATEWAY_", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    log_level: str = "INFO"

    # Keycloak
    keycloak_url: str = "http://127.0.0.1:8080"
    keycloak_realm: str = "mro"
    client_id: str = "mro-gateway"
    client_secret: SecretStr | None = None
    audience: str = "mro-gateway"
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "PS256"])
    jwt_leeway_seconds: int = 30
    jwks_cache_seconds: int = 600
    jwks_refetch_cooldown_seconds: int = 30

    # Upstream
    orchestrator_url: str = "http://127.0.0.1:8001"
    upstream_connect_timeout_seconds: float = 3.0
    upstream_read_timeout_seconds: float = 120.0
    upstream_pool_size: int = 100

    # Identity assertion sent to the orchestrator
    assertion_issuer: str = "mro-gateway"
    assertion_audience: str = "mro-orchestrator"
    assertion_lifetime_seconds: int = 60
    # How long one signed assertion serves the same identity; unset: a sixth of the lifetime.
    assertion_reuse_seconds: float | None = Field(default=None, ge=0)
    # PEM of the ES256 signing key(s); first one signs, all are published. Empty in development:
    # an ephemeral key is generated at start.
    assertion_signing_keys: list[SecretStr] = Field(default_factory=list)

    # Storage
    database_url: str = "sqlite+aiosqlite:///./var/gateway.db"
    redis_url: str = "redis://127.0.0.1:6379/0"

    # API keys
    api_key_pepper: SecretStr = SecretStr(_DEV_PEPPER)
    api_key_previous_peppers: list[SecretStr] = Field(default_factory=list)
    api_key_cache_seconds: int = 30
    # An API key owner's standing in Keycloak (enabled, roles): re-read after this long, and at
    # once after any change to the owner that the gateway hears of.
    api_key_owner_fresh_seconds: float = Field(default=300.0, gt=0)
    # How often one replica reads Keycloak's admin events (console changes to people); 0: never.
    admin_events_poll_seconds: float = Field(default=1.0, ge=0)

    # Policy and limits
    policy_file: str | None = None  # default: the packaged gateway/policy/policy.toml
    trusted_proxies: list[str] = Field(default_factory=list)
    max_body_bytes: int = 1_048_576
    max_header_bytes: int = Field(default=16_384, gt=0)  # names and values of all fields
    max_header_fields: int = Field(default=100, gt=0)
    cors_allowed_origins: list[str] = Field(default_factory=list)

    # Audit
    audit_spool_dir: str = "./var/audit-spool"

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Self:
        if self.environment is Environment.PRODUCTION:
            if self.api_key_pepper.get_secret_value() == _DEV_PEPPER:
                raise ValueError("MRO_GATEWAY_API_KEY_PEPPER must be set in production")
            if not self.assertion_signing_keys:
                raise ValueError("MRO_GATEWAY_ASSERTION_SIGNING_KEYS must be set in production")
            if self.client_secret is None:
                raise ValueError("MRO_GATEWAY_CLIENT_SECRET must be set in production")
        return self

    @property
    def issuer(self) -> str:
        return f"{self.keycloak_url.rstrip('/')}/realms/{self.keycloak_realm}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"
