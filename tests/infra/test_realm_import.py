"""infra/k8s/realm_import.py: the operator's realm import is generated from the realm file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from devstack.paths import ROOT

GENERATOR = ROOT / "infra" / "k8s" / "realm_import.py"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("realm_import", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_realm_import_matches_the_realm_file(generator: ModuleType) -> None:
    """base/keycloak/realm-import.yaml is what the generator makes from realm-export.json."""
    expected = generator.render(generator.REALM_FILE.read_text(encoding="utf-8"))
    assert generator.OUTPUT.read_text(encoding="utf-8") == expected, (
        "stale: run `uv run python infra/k8s/realm_import.py`"
    )


def test_the_import_carries_the_realm_unchanged(generator: ModuleType) -> None:
    """The CR's spec.realm equals the realm file, placeholders left for the operator to fill."""
    realm_text = generator.REALM_FILE.read_text(encoding="utf-8")
    resource = yaml.safe_load(generator.render(realm_text))
    assert resource["kind"] == "KeycloakRealmImport"
    assert resource["spec"]["realm"] == json.loads(realm_text)


def test_placeholders_without_default_read_secrets(generator: ModuleType) -> None:
    """${NAME} becomes a Secret reference; ${NAME:default} and lower-case keys are left alone."""
    text = json.dumps(
        {
            "realm": "r",
            "secret": "${MRO_KC_GATEWAY_CLIENT_SECRET}",
            "smtp": "${MRO_KC_SMTP_HOST:localhost}",
            "other": "${MRO_KC_PLANNING_SYNC_CLIENT_SECRET}",
            "message": "${profileScopeConsentText}",
        }
    )
    placeholders = generator.realm_import(text)["spec"]["placeholders"]
    assert placeholders == {
        "MRO_KC_GATEWAY_CLIENT_SECRET": {"secret": {"name": "mro-gateway", "key": "client-secret"}},
        "MRO_KC_PLANNING_SYNC_CLIENT_SECRET": {
            "secret": {"name": "mro-keycloak-realm", "key": "planning-sync-client-secret"}
        },
    }


def test_check_mode_reports_a_stale_copy(
    generator: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--check exits 1 when the generated file differs from what the realm file gives."""
    stale = tmp_path / "realm-import.yaml"
    stale.write_text("outdated\n", encoding="utf-8")
    monkeypatch.setattr(generator, "OUTPUT", stale)
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    assert generator.main(["--check"]) == 1
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0
