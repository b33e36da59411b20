"""A Dockerfile as stages of instructions, enough to check what each stage copies and runs."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_ARG_REF = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def words(self) -> list[str]:
        """The arguments split like a shell, or the JSON array of the exec form."""
        text = self.arguments.strip()
        if text.startswith("["):
            words: list[str] = json.loads(text)
            return words
        return shlex.split(text)


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """The instructions of this stage with keyword, in order."""
        return [i for i in self.instructions if i.keyword == keyword]


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def parse(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, with ARG defaults declared before the first FROM expanded."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = rest.strip().partition("=")
            args[name] = default
            continue
        if keyword == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--")]
            image = _ARG_REF.sub(lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=image, name=name))
            continue
        if stages:
            stages[-1].instructions.append(Instruction(keyword, rest))
    return stages


def copy_sources(instruction: Instruction) -> tuple[str | None, list[str]]:
    """The --from stage (None for the build context) and the sources of a COPY or ADD."""
    words = instruction.words()
    origin = None
    plain: list[str] = []
    for word in words:
        if word.startswith("--from="):
            origin = word.removeprefix("--from=")
        elif not word.startswith("--"):
            plain.append(word)
    return origin, plain[:-1]
