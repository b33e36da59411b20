"""infra/k8s/login_theme.py: Kubernetes gets realm mro's login theme from keycloak/themes/mro."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from devstack.paths import ROOT

GENERATOR = ROOT / "infra" / "k8s" / "login_theme.py"
KEYCLOAK_CR = ROOT / "infra" / "k8s" / "base" / "keycloak" / "keycloak.yaml"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("login_theme", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _theme_volume(cr: dict[str, Any]) -> dict[str, Any]:
    pod = cr["spec"]["unsupported"]["podTemplate"]["spec"]
    volume: dict[str, Any] = next(v for v in pod["volumes"] if "configMap" in v)
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": volume["name"], "mountPath": "/opt/keycloak/themes/mro", "readOnly": True} in (
        mounts
    )
    return volume


def test_committed_config_map_matches_the_theme(generator: ModuleType) -> None:
    """base/keycloak/login-theme.yaml is what the generator makes from keycloak/themes/mro."""
    assert generator.OUTPUT.read_text(encoding="utf-8") == generator.render(), (
        "stale: run `uv run python infra/k8s/login_theme.py`"
    )
    assert yaml.safe_load(generator.render()) == generator.config_map()


def test_keycloak_mounts_every_theme_file_at_its_path(generator: ModuleType) -> None:
    """The Keycloak CR mounts the ConfigMap in themes/mro with one item per theme file."""
    volume = _theme_volume(yaml.safe_load(KEYCLOAK_CR.read_text(encoding="utf-8")))
    assert volume["configMap"]["name"] == generator.NAME
    assert volume["configMap"]["items"] == generator.items()
    assert "login/theme.properties" in generator.theme_files()


def test_compose_mounts_the_theme() -> None:
    """compose.yaml's Keycloak reads the same theme folder, read-only."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    volumes = compose["services"]["keycloak"]["volumes"]
    assert "./keycloak/themes/mro:/opt/keycloak/themes/mro:ro" in volumes


def test_check_mode_reports_a_stale_copy(
    generator: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--check exits 1 when the committed copy differs, 0 when it matches."""
    stale = tmp_path / "login-theme.yaml"
    stale.write_text("stale\n", encoding="utf-8")
    monkeypatch.setattr(generator, "OUTPUT", stale)
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    assert generator.main(["--check"]) == 1
    stale.write_text(generator.render(), encoding="utf-8")
    assert generator.main(["--check"]) == 0
