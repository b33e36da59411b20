"""docs/configuration.md is generated from the settings classes and stays in step with them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from scripts import gen_config_docs
from scripts.gen_config_docs import DESCRIPTIONS, PAGE, default_text, render, type_text

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_has_a_description() -> None:
    """A new settings field or mro-admin variable without a description fails here."""
    missing = sorted(gen_config_docs.documented_variables() - set(DESCRIPTIONS))
    assert missing == [], f"add these to DESCRIPTIONS in scripts/gen_config_docs.py: {missing}"


def test_no_description_for_a_setting_that_is_gone() -> None:
    """A description whose field was removed or renamed fails here."""
    stale = sorted(set(DESCRIPTIONS) - gen_config_docs.documented_variables())
    assert stale == [], f"remove these from DESCRIPTIONS: {stale}"


def test_the_page_is_what_the_generator_writes() -> None:
    """docs/configuration.md equals the generator's output (run the script after a change)."""
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is stale: uv run python scripts/gen_config_docs.py"
    )


def test_every_variable_of_every_settings_class_is_on_the_page() -> None:
    """Each field appears as PREFIX + NAME, the name pydantic-settings reads."""
    page = PAGE.read_text(encoding="utf-8")
    for section in gen_config_docs.SECTIONS:
        for cls in section.classes:
            prefix = gen_config_docs.prefix_of(cls)
            for name in cls.model_fields:
                assert f"| `{prefix}{name.upper()}` |" in page, (cls.__name__, name)


def test_the_documented_names_are_the_ones_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Setting a documented variable changes the field it documents."""
    monkeypatch.setenv("MRO_GATEWAY_UPSTREAM_POOL_SIZE", "7")
    monkeypatch.setenv("MRO_GATEWAY_REFRESH_MARGIN_SECONDS", "42")
    monkeypatch.setenv("MRO_ORCHESTRATOR_ASSERTION_ALGORITHMS", '["ES384"]')
    assert gen_config_docs.GatewaySettings().upstream_pool_size == 7
    assert gen_config_docs.SessionSettings().refresh_margin_seconds == 42
    assert gen_config_docs.OrchestratorSettings().assertion_algorithms == ["ES384"]


class Example(BaseSettings):
    """A settings class with one field of each shape the page renders."""

    model_config = SettingsConfigDict(env_prefix="EXAMPLE_")

    needed: str
    port: int = Field(default=80, ge=0, le=65535)
    names: list[str] = Field(default_factory=lambda: ["a"])
    key: SecretStr | None = None
    pepper: SecretStr = SecretStr("dev-value")
    flag: bool = False


@pytest.mark.parametrize(
    ("field", "kind", "default"),
    [
        ("needed", "string", "required"),
        ("port", "integer", "`80`"),
        ("names", "JSON list of strings", '`["a"]`'),
        ("key", "secret", "unset *(secret)*"),
        ("pepper", "secret", "development value *(secret)*"),
        ("flag", "boolean", "`false`"),
    ],
)
def test_types_and_defaults_are_written_for_people(field: str, kind: str, default: str) -> None:
    """Secrets never show a value; a field without a default is 'required'."""
    info = Example.model_fields[field]
    assert type_text(info.annotation) == kind
    assert default_text(info) == default


def test_check_mode_fails_on_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--check exits 1 when the page differs and 0 when it matches; it never writes."""
    page = tmp_path / "configuration.md"
    page.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(gen_config_docs, "PAGE", page)
    monkeypatch.setattr(gen_config_docs, "ROOT", tmp_path)
    assert gen_config_docs.main(["--check"]) == 1
    assert page.read_text(encoding="utf-8") == "old\n"
    assert gen_config_docs.main([]) == 0
    assert gen_config_docs.main(["--check"]) == 0


def test_the_script_runs_from_the_command_line() -> None:
    """`python scripts/gen_config_docs.py --check` works as the page's notice says."""
    result = subprocess.run(
        [sys.executable, "scripts/gen_config_docs.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
