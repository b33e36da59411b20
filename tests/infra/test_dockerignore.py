"""The .dockerignore matcher the Dockerfile tests rely on, and the repository's own rules."""

from __future__ import annotations

import pytest

from devstack.paths import ROOT
from tests.infra.dockerignore import DockerIgnore


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("tests/test_x.py", True),
        ("gateway/settings.py", False),
        ("gateway/__pycache__/settings.cpython-311.pyc", True),
        ("gateway/sub/x.pyc", True),
        ("uv.lock", False),
    ],
)
def test_allow_list_with_exceptions(path: str, excluded: bool) -> None:
    """`*` then `!dir` keeps dir; later `**/` patterns exclude inside it again."""
    rules = DockerIgnore("*\n!gateway\n!uv.lock\n**/__pycache__\n**/*.py[cod]\n")
    assert rules.excludes(path) is excluded


def test_a_directory_pattern_excludes_its_contents() -> None:
    """Excluding a folder excludes every file below it."""
    assert DockerIgnore("var/\n").excludes("var/a/b.db")
    assert not DockerIgnore("var/\n").excludes("variable.txt")


@pytest.mark.parametrize("path", [".env", "tests/infra/test_compose.py", ".git/config", ".venv/x"])
def test_repository_context_leaves_out_secrets_and_state(path: str) -> None:
    """The repository's .dockerignore keeps env files, tests, git and the venv out of images."""
    assert DockerIgnore.from_file(ROOT / ".dockerignore").excludes(path)
