"""What the local server will answer next, and what it was asked: the test's script and log."""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FaultKind = Literal["429", "500", "error", "slow", "cut", "malformed"]


class Fault(BaseModel):
    """A failure to play instead of (or while) answering.

    - ``429``: rate limited, with ``retry-after: <retry_after>`` (no header when null).
    - ``500``: server error with ``status`` (default 500).
    - ``error``: any error ``status`` with Azure error ``code`` (e.g. 400 ``content_filter``).
    - ``slow``: wait ``delay`` seconds before answering, or in a stream after ``after_chunks``.
    - ``cut``: close the connection mid-body (in a stream after ``after_chunks`` content chunks).
    - ``malformed``: a body (or, in a stream, an event) that is not valid JSON.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    retry_after: int | None = Field(default=1, ge=0)
    status: int = Field(default=500, ge=400, le=599)
    code: str | None = None
    delay: float = Field(default=1.0, ge=0.0, le=60.0)
    after_chunks: int | None = Field(default=None, ge=0)


class ScriptedUsage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_tokens: int | None = Field(default=None, ge=0)


class Script(BaseModel):
    """One call's behaviour; unset fields fall back to the default answer and counts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content: str | None = None
    usage: ScriptedUsage | None = None
    finish_reason: str | None = None
    fault: Fault | None = None


class QueueRequest(Script):
    """Body of ``POST /_control/responses``: a script played for the next ``repeat`` calls."""

    repeat: int = Field(default=1, ge=1, le=1000)


class FaultRequest(Fault):
    """Body of ``POST /_control/faults``: a fault played for the next ``count`` calls."""

    count: int = Field(default=1, ge=1, le=1000)


class RecordedCall(BaseModel):
    """A chat completions call as received; credentials are never recorded."""

    seq: int
    timestamp: float
    deployment: str
    api_version: str | None
    auth: Literal["api-key", "bearer", "none"]
    headers: dict[str, str]
    body: Any
    stream: bool
    status: int
    fault: FaultKind | None


class RecordedUsage(BaseModel):
    """The token usage an answer carried to its client (what Azure would bill), by call."""

    seq: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Scenario:
    """A FIFO of scripts, consumed one per call, and the log of the last ``max_calls`` calls
    and of the usage their answers reported."""

    def __init__(self, max_calls: int = 1000) -> None:
        self._scripts: deque[Script] = deque()
        # Bounded: a long-running development server must not grow without limit.
        self._calls: deque[RecordedCall] = deque(maxlen=max_calls)
        self._usage: deque[RecordedUsage] = deque(maxlen=max_calls)
        self._seq = 0

    @property
    def pending(self) -> int:
        return len(self._scripts)

    @property
    def calls(self) -> list[RecordedCall]:
        return list(self._calls)

    @property
    def usage(self) -> list[RecordedUsage]:
        return list(self._usage)

    def push(self, script: Script, times: int = 1) -> None:
        self._scripts.extend([script] * times)

    def pop(self) -> Script | None:
        return self._scripts.popleft() if self._scripts else None

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def record(self, call: RecordedCall) -> None:
        self._calls.append(call)

    def record_usage(self, usage: RecordedUsage) -> None:
        self._usage.append(usage)

    def reset(self) -> None:
        self._scripts.clear()
        self._calls.clear()
        self._usage.clear()
