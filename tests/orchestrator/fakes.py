"""Test doubles and data of the orchestrator tests: a UTC clock moved by hand, answer rows, a
model stream the test feeds item by item."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

from orchestrator.llm import ChatMessage, StreamDelta, StreamEnd
from orchestrator.models import Message, MessageStatus, Role
from tests.fixtures.orchestrator import ScriptedLLM

NOW = datetime(2030, 1, 1, tzinfo=UTC)

Item = StreamDelta | StreamEnd | Exception


class ManualClock:
    """A UTC clock the test moves; every reading without a move gives the same time."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def answer_row(
    status: MessageStatus = MessageStatus.STREAMING,
    *,
    content: str = "",
    written: datetime | None = NOW,
    created: datetime = NOW,
) -> Message:
    """An assistant message (not stored) with the given status, text and times of writing."""
    return Message(
        id=uuid.uuid4(),
        conversation_id=uuid.uuid4(),
        owner_sub="u1",
        role=Role.ASSISTANT,
        content=content,
        status=status,
        created_at=created,
        updated_at=written,
    )


class Upstream:
    """A model stream the test feeds item by item; it records whether it was closed."""

    def __init__(self) -> None:
        self._items: asyncio.Queue[Item | None] = asyncio.Queue()
        self.closed = False
        # Set whenever the reader has taken everything sent so far.
        self.drained = asyncio.Event()

    def send(self, *items: Item | None) -> None:
        """Queue items; None ends the stream without a StreamEnd; an exception is raised."""
        self.drained.clear()
        for item in items:
            self._items.put_nowait(item)

    def __aiter__(self) -> Upstream:
        return self

    async def __anext__(self) -> StreamDelta | StreamEnd:
        item = await self._items.get()
        if self._items.empty():
            self.drained.set()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, Exception):
            raise item
        return item

    async def aclose(self) -> None:
        self.closed = True


class FedLLM(ScriptedLLM):
    """A model whose stream is an ``Upstream`` the test feeds."""

    def __init__(self, upstream: Upstream) -> None:
        super().__init__()
        self.upstream = upstream

    def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> AsyncIterator[StreamDelta | StreamEnd]:
        return self.upstream
