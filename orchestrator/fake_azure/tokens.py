"""Deterministic token counts and stream chunks for the local server.

The count approximates a BPE tokenizer on English text: one token per four characters, rounded
up. A prompt costs 4 tokens per message on top of its text, plus 3 to prime the reply. The same
text always gives the same count, which is what tests and token budgets need.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
REPLY_PRIMING_TOKENS = 3

_PIECE = re.compile(r"\S+\s*|\s+")


def count_tokens(text: str) -> int:
    """Tokens of a text: ceil(characters / 4)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def text_of(content: object) -> str:
    """The text of a message content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Tokens of a prompt: per message 4 plus its text, plus 3 for the reply."""
    total = sum(TOKENS_PER_MESSAGE + count_tokens(text_of(m.get("content"))) for m in messages)
    return total + REPLY_PRIMING_TOKENS


def truncate(text: str, max_tokens: int | None) -> tuple[str, bool]:
    """``text`` cut to ``max_tokens`` and whether it was cut."""
    if max_tokens is None or count_tokens(text) <= max_tokens:
        return text, False
    return text[: max_tokens * CHARS_PER_TOKEN], True


def split_chunks(text: str) -> list[str]:
    """Stream pieces: one word with its trailing whitespace each; they join back to ``text``."""
    return _PIECE.findall(text)
