"""compose.yaml: valid Compose, health-gated, pinned, and in step with the services' settings."""

from __future__ import annotations

import ast
import json
from typing import Any

import pytest

from devstack.paths import ROOT
from orchestrator.fake_azure.__main__ import parse_settings
from tests.infra.compose_file import (
    MissingVariable,
    interpolate,
    load_compose,
    read_env_file,
    referenced_variables,
)
from tests.infra.dockerfile import parse
from tests.infra.images import MOVING_TAGS, is_pinned, tag_of
from tests.infra.settings_fields import SETTINGS, settings_from_env, unknown_settings

COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA = ROOT / "tests" / "infra" / "schemas" / "compose-spec.json"
SECRET_WORDS = ("PASSWORD", "SECRET", "API_KEY", "PEPPER")


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(env_example: dict[str, str]) -> dict[str, Any]:
    return load_compose(COMPOSE, env_example)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def _local_run_variables(function: str) -> set[str]:
    """The MRO_* names a function of infra/local/devstack/services.py puts in the environment."""
    module = ast.parse((ROOT / "infra" / "local" / "devstack" / "services.py").read_text())
    body = next(
        node for node in module.body if isinstance(node, ast.FunctionDef) and node.name == function
    )
    return {
        node.value
        for node in ast.walk(body)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("MRO_")
        and node.value.isupper()
    }


def test_compose_validates_against_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    """compose.yaml, interpolated with .env.example, is valid against the Compose JSON schema."""
    import jsonschema  # a test dependency: see tests/infra/schemas/README.md

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []


def test_compose_refuses_to_start_without_the_env_file() -> None:
    """Without .env the secrets are unset and interpolation stops with an error."""
    with pytest.raises(MissingVariable, match=r"copy \.env\.example to \.env"):
        interpolate(COMPOSE.read_text(encoding="utf-8"), {})


def test_env_example_and_compose_name_the_same_variables(env_example: dict[str, str]) -> None:
    """Every variable compose needs is in .env.example, and .env.example holds nothing unused."""
    referenced = referenced_variables(COMPOSE.read_text(encoding="utf-8"))
    required = {name for name, has_default in referenced.items() if not has_default}
    assert sorted(required - set(env_example)) == []
    assert sorted(set(env_example) - set(referenced)) == []


def test_env_example_secrets_are_marked_development_only(env_example: dict[str, str]) -> None:
    """Every password, secret, key and pepper in .env.example says it is for development only."""
    secrets = {k: v for k, v in env_example.items() if any(w in k for w in SECRET_WORDS)}
    assert secrets
    assert sorted(k for k, v in secrets.items() if "dev-only" not in v) == []


def test_only_gateway_keycloak_and_mail_publish_ports(compose: dict[str, Any]) -> None:
    """Only the gateway, Keycloak and Mailpit's inbox are published; the orchestrator is not."""
    published = {name for name, svc in compose["services"].items() if svc.get("ports")}
    assert published == {"gateway", "keycloak", "mailpit"}


def test_keycloak_sends_mail_to_the_stacks_mailpit(env_example: dict[str, str]) -> None:
    """.env.example points realm mro's SMTP at the Mailpit container's SMTP port."""
    assert (env_example["MRO_KC_SMTP_HOST"], env_example["MRO_KC_SMTP_PORT"]) == ("mailpit", "1025")


def test_start_order_waits_for_health(compose: dict[str, Any]) -> None:
    """Every dependency is waited for until healthy, and has a health check to wait on."""
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert rule == {"condition": "service_healthy"}, (name, dependency)
            target = services[dependency]
            built = "build" in target
            has_check = "healthcheck" in target or (
                built and parse(ROOT / target["build"]["dockerfile"])[-1].all("HEALTHCHECK") != []
            )
            assert has_check, dependency


def test_compose_images_are_pinned(compose: dict[str, Any]) -> None:
    """Pulled images name a version; images built here carry a fixed, non-moving tag."""
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"{name} has no image name"
        if "build" in service:
            tag = tag_of(image)
            assert tag is not None, image
            assert tag not in MOVING_TAGS, image
        else:
            assert is_pinned(image), image


@pytest.mark.parametrize(
    ("service", "function"),
    [
        ("gateway", "start_gateway"),
        ("orchestrator", "start_orchestrator"),
        ("fake-azure", "start_fake_azure"),
    ],
)
def test_compose_sets_what_the_local_run_sets(
    compose: dict[str, Any], service: str, function: str
) -> None:
    """Each service gets at least the variables the local stack runner gives it."""
    expected = _local_run_variables(function)
    assert expected
    assert sorted(expected - set(_environment(compose["services"][service]))) == []


def test_compose_variables_are_settings_fields(compose: dict[str, Any]) -> None:
    """Every MRO_GATEWAY_/MRO_ORCHESTRATOR_/MRO_FAKE_AZURE_ variable names a settings field."""
    names = {n for svc in compose["services"].values() for n in _environment(svc)}
    assert {n for n in names if n.startswith(tuple(SETTINGS))}
    assert unknown_settings(names) == []


@pytest.mark.parametrize(
    ("service", "prefix"), [("gateway", "MRO_GATEWAY_"), ("orchestrator", "MRO_ORCHESTRATOR_")]
)
def test_compose_environment_is_accepted_by_the_settings(
    compose: dict[str, Any], service: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's settings class parses and validates the environment compose gives it."""
    env = _environment(compose["services"][service])
    settings = settings_from_env(SETTINGS[prefix], env, monkeypatch)
    assert str(settings.host) == "0.0.0.0"


def test_compose_runs_the_offline_model_without_its_control_api(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake Azure server accepts its compose settings: all interfaces, /_control off."""
    for name, value in _environment(compose["services"]["fake-azure"]).items():
        monkeypatch.setenv(name, value)
    settings = parse_settings([])
    assert settings.host == "0.0.0.0"
    assert settings.control is False
