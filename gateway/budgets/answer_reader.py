"""Reading an orchestrator answer as it passes: the agent and the token usage it reports.

A JSON answer is read once complete (its ``assistant_message``); an event stream is read event by
event (``meta`` names the agent, ``done`` carries the usage). ``classification_usage`` is taken
wherever the orchestrator reports it. Nothing is held back: the reader only watches the chunks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_READ_BYTES", "AnswerReader", "Usage"]

REPLAYED_HEADER = b"idempotent-replayed"
# An answer body larger than this is relayed but not read for usage (it is charged unmetered).
MAX_READ_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts the orchestrator reported."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def parse(cls, value: object) -> Usage | None:
        """The counts of a usage object, or None when it is not one."""
        if not isinstance(value, dict):
            return None
        counts = [value.get(name) for name in ("prompt_tokens", "completion_tokens")]
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            return None
        total = value.get("total_tokens")
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            total = counts[0] + counts[1]  # type: ignore[operator]
        return cls(counts[0], counts[1], total)  # type: ignore[arg-type]

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
        )


class AnswerReader:
    """Reads agent and usage from an answer as its chunks pass (JSON body or SSE events)."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.replayed = False
        self.event_stream = False
        self.agent: str | None = None
        self.usage: Usage | None = None
        self.classification: Usage | None = None
        self._buffer = bytearray()
        self._overflow = False
        self._event = "message"
        self._data: list[bytes] = []

    def start(self, status: int, headers: Sequence[tuple[bytes, bytes]]) -> None:
        self.status = status
        for name, value in headers:
            name = name.lower()
            if name == b"content-type":
                self.event_stream = value.lower().startswith(b"text/event-stream")
            elif name == REPLAYED_HEADER:
                self.replayed = value.strip().lower() == b"true"

    def feed(self, chunk: bytes) -> None:
        if self._overflow or not chunk:
            return
        self._buffer += chunk
        if self.event_stream:
            self._lines()
        if len(self._buffer) > MAX_READ_BYTES:
            self._overflow = True
            self._buffer.clear()

    def finish(self) -> None:
        """The body is complete: read the JSON answer (a stream was read as it went)."""
        if self.event_stream or self._overflow or not self._buffer:
            return
        try:
            body = json.loads(self._buffer)
        except (ValueError, RecursionError):
            return
        answer = body.get("assistant_message") if isinstance(body, dict) else None
        if isinstance(answer, dict):
            self._take(answer)
            self.usage = Usage.parse(answer.get("usage"))

    def _take(self, data: dict[str, Any]) -> None:
        if isinstance(data.get("agent"), str):
            self.agent = data["agent"]
        classification = Usage.parse(data.get("classification_usage"))
        if classification is not None:
            self.classification = classification

    def _lines(self) -> None:
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            if not line:
                self._dispatch()
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("utf-8", "replace")
            elif line.startswith(b"data:"):
                self._data.append(line[5:].strip())

    def _dispatch(self) -> None:
        event, data = self._event, b"\n".join(self._data)
        self._event, self._data = "message", []
        if event not in ("meta", "done"):
            return
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):
            return
        if not isinstance(payload, dict):
            return
        if event == "meta":
            self._take(payload)
        else:
            self._take(payload)
            self.usage = Usage.parse(payload.get("usage"))
