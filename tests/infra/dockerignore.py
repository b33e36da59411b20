"""Which paths a ``.dockerignore`` keeps out of the build context (Docker's matching rules).

Patterns are matched against slash-separated paths relative to the context root; a pattern that
matches a directory excludes everything below it; ``!`` re-includes; the last match wins.
"""

from __future__ import annotations

import re
from pathlib import Path


def _compile(pattern: str) -> re.Pattern[str]:
    regex = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                regex += "(?:.*/)?"
                i += 1
            else:
                regex += ".*"
            continue
        if char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            regex += "[" + pattern[i + 1 : end].replace("\\", "\\\\") + "]"
            i = end
        else:
            regex += re.escape(char)
        i += 1
    return re.compile(regex + r"\Z")


class DockerIgnore:
    """The rules of one ``.dockerignore`` file."""

    def __init__(self, text: str) -> None:
        self._rules: list[tuple[bool, re.Pattern[str]]] = []
        for line in text.splitlines():
            pattern = line.strip()
            if not pattern or pattern.startswith("#"):
                continue
            negated = pattern.startswith("!")
            pattern = pattern.removeprefix("!").strip().strip("/")
            self._rules.append((negated, _compile(pattern)))

    @classmethod
    def from_file(cls, path: Path) -> DockerIgnore:
        """The rules of path, or no rules when it does not exist."""
        return cls(path.read_text(encoding="utf-8") if path.is_file() else "")

    def excludes(self, path: str) -> bool:
        """True when path (relative to the context root) is left out of the context."""
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for negated, regex in self._rules:
            if any(regex.match(prefix) for prefix in prefixes):
                excluded = not negated
        return excluded
