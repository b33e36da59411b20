"""compose.yaml as Compose reads it: ``.env`` values interpolated into the YAML document."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME, and $$.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    """A ``${NAME:?...}`` variable has no value."""


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file; blank lines and ``#`` comments are skipped."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, _, value = stripped.partition("=")
        values[key.strip()] = value.strip()
    return values


def referenced_variables(text: str) -> dict[str, bool]:
    """Every variable the text interpolates, mapped to whether it has a default value."""
    found: dict[str, bool] = {}
    for match in _VARIABLE.finditer(text):
        name = match.group("braced") or match.group("bare")
        if name is None:
            continue
        has_default = (match.group("op") or "").endswith("-")
        found[name] = found.get(name, False) or has_default
    return found


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """The text with Compose's interpolation applied; raises MissingVariable for ``:?``."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op") or "", match.group("arg") or ""
        value = env.get(name)
        unset_or_empty = value is None or (op.startswith(":") and value == "")
        if op.endswith("-") and unset_or_empty:
            return arg
        if op.endswith("?") and unset_or_empty:
            raise MissingVariable(f"{name}: {arg}")
        return value or ""

    return _VARIABLE.sub(replace, text)


def load_compose(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """The compose document after interpolation (YAML merge keys resolved)."""
    document: dict[str, Any] = yaml.safe_load(interpolate(path.read_text(encoding="utf-8"), env))
    return document
