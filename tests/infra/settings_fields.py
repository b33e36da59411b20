"""The services' settings classes, keyed by their environment-variable prefix."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import pytest
from pydantic_settings import BaseSettings

from gateway.browser.sessions import SessionSettings
from gateway.settings import GatewaySettings
from orchestrator.fake_azure.settings import FakeAzureSettings
from orchestrator.settings import OrchestratorSettings

SETTINGS: dict[str, type[BaseSettings]] = {
    str(cls.model_config.get("env_prefix")): cls
    for cls in (GatewaySettings, OrchestratorSettings, FakeAzureSettings)
}


# Settings classes that share a service's prefix (browser sessions read MRO_GATEWAY_* too).
FIELDS: dict[str, set[str]] = {prefix: set(cls.model_fields) for prefix, cls in SETTINGS.items()}
FIELDS["MRO_GATEWAY_"] |= set(SessionSettings.model_fields)


def unknown_settings(names: Iterable[str]) -> list[str]:
    """Names with a service's prefix that no field of that service's settings reads."""
    unknown = []
    for name in names:
        for prefix, fields in FIELDS.items():
            if name.startswith(prefix) and name.removeprefix(prefix).lower() not in fields:
                unknown.append(name)
    return unknown


def settings_from_env(
    cls: type[BaseSettings], env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> BaseSettings:
    """An instance of cls built from exactly env (the process's own variables of it removed)."""
    prefix = str(cls.model_config.get("env_prefix"))
    for name in list(os.environ):
        if name.upper().startswith(prefix):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith(prefix):
            monkeypatch.setenv(name, value)
    return cls()
