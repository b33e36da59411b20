"""Shell blocks of README.md and docs/*.md: the fenced blocks, their logical lines, and the
commands in them (words, with where they stand), for tests that check what the docs name."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devstack.paths import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"sh", "bash", "console", "shell"}
RUN_ELSEWHERE = {("docs/api.md", "bash")}  # tests/e2e/test_api_examples.py runs these
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<mark>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)")
HEREDOC = re.compile(r"(?<!<)<<-?(?!<)\s*(['\"]?)(?P<end>\w+)\1")
# A placeholder of a synopsis (`<id>`, `<a manager's token>`): one word, not a redirect.
PLACEHOLDER = re.compile(r"<[A-Za-z][^<>\n]*>")
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
VARIABLE = re.compile(r"\bMRO_[A-Z0-9_]*[A-Z0-9]\b")
ENVIRON_READ = re.compile(r"(?:environ\.get\(|environ\[|getenv\()\s*[\"'](MRO_\w+)[\"']")
KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "time", "exec", "{"}
COMMANDS = ("make", "uv", "mro-admin", "kubectl", "docker", "pytest", "python", "curl", "export")
SEPARATORS = set("();<>|&")


@dataclass(frozen=True)
class Block:
    """A fenced block of a page: its language, first line number and text."""

    page: str
    line: int
    lang: str
    text: str


@dataclass(frozen=True)
class Command:
    """One simple command of a shell block, leading assignments removed."""

    where: str
    words: tuple[str, ...]
    stdin: str = ""  # the here-document it reads, if any


def fenced_blocks(page: Path) -> Iterator[Block]:
    """Every fenced block of a Markdown page, its indentation removed."""
    lines = page.read_text(encoding="utf-8").splitlines()
    relative = page.relative_to(ROOT).as_posix()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        index += 1
        if opening is None:
            continue
        start, width = index, len(opening["indent"])
        while index < len(lines) and not lines[index].strip().startswith(opening["mark"]):
            index += 1
        body = "\n".join(line[width:] for line in lines[start:index])
        yield Block(relative, start, opening["lang"], body)
        index += 1


def shell_blocks() -> list[Block]:
    """The shell blocks this module checks."""
    return [
        block
        for page in DOCS
        for block in fenced_blocks(page)
        if block.lang in SHELL and (block.page, block.lang) not in RUN_ELSEWHERE
    ]


def _code(line: str, quote: str | None) -> tuple[str, str | None]:
    """The line without its comment, and the quote still open at its end."""
    out, index = [], 0
    while index < len(line):
        char = line[index]
        if quote is None and char == "#" and (index == 0 or line[index - 1] in " \t;&|("):
            break
        if char == "\\" and quote != "'" and index + 1 < len(line):
            out.append(line[index : index + 2])
            index += 2
            continue
        if char in "'\"" and quote in (None, char):
            quote = None if quote == char else char
        out.append(char)
        index += 1
    return "".join(out), quote


def logical_lines(block: Block) -> Iterator[tuple[int, str, str]]:
    """(line, command text, here-document) of a block: comments gone, continuations joined."""
    lines = block.text.split("\n")
    if block.lang == "console":
        kept, continued = [], False
        for line in lines:
            prompt = line.startswith("$ ")
            kept.append(line[2:] if prompt else line if continued else "")
            continued = (prompt or continued) and line.endswith("\\")
        lines = kept
    index = 0
    while index < len(lines):
        start, text, quote = index, "", None
        while index < len(lines):
            code, quote = _code(lines[index], quote)
            index += 1
            if quote is None and code.endswith("\\"):
                text += code[:-1] + " "
            elif quote is not None:
                text += code + "\n"
            else:
                text += code
                break
        stdin = []
        if heredoc := HEREDOC.search(text):
            text = text[: heredoc.start()] + text[heredoc.end() :]
            while index < len(lines) and lines[index].strip() != heredoc["end"]:
                stdin.append(lines[index])
                index += 1
            index += 1
        if text.strip():
            yield block.line + start + 1, text, "\n".join(stdin)


def split_commands(where: str, text: str, stdin: str = "") -> Iterator[Command]:
    """The simple commands of one logical line, split at pipes, lists and substitutions."""
    lexer = shlex.shlex(PLACEHOLDER.sub("PLACEHOLDER", text), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    current: list[str] = []
    for token in [*lexer, ";"]:
        if not set(token) <= SEPARATORS:
            current.append(token)
            continue
        words = [word for word in current if word not in KEYWORDS]
        while words and ASSIGNMENT.match(words[0]):
            words.pop(0)
        if words:
            yield Command(where, tuple(words), stdin)
        current = []


def commands(blocks: list[Block]) -> list[Command]:
    """Every simple command of the blocks."""
    return [
        command
        for block in blocks
        for line, text, stdin in logical_lines(block)
        for command in split_commands(f"{block.page}:{line}", text, stdin)
    ]


def program(command: Command) -> tuple[str, list[str]]:
    """The program a command runs and its arguments, looking through `uv run`."""
    name, *args = command.words
    if name == "uv" and args[:1] == ["run"]:
        args = args[1:]
        while args and args[0].startswith("-"):
            args.pop(0)
        name, *args = args or [""]
    return name, args
