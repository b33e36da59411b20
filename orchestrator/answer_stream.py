"""A streamed answer: relays the model's chunks and stores whatever arrived, however it ends."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio

from orchestrator.llm import LLMError, StreamDelta, StreamEnd, Usage
from orchestrator.models import Message, MessageStatus
from orchestrator.turns import Turn

logger = logging.getLogger(__name__)

StoreAnswer = Callable[[str, MessageStatus, Usage | None], Awaitable[Message]]
"""Stores the answer's content, status and usage; called exactly once per stream."""

# What an upstream stream that simply stops counts as: the end, without usage.
_END = StreamEnd(usage=None, finish_reason=None)


class AnswerStream:
    """A streamed answer: iterate ``events()``; ``finish()`` stores what arrived (idempotent).

    The id of the answer is known before it is stored, so it can be announced first.
    """

    def __init__(
        self,
        turn: Turn,
        message_id: uuid.UUID,
        upstream: AsyncIterator[StreamDelta | StreamEnd],
        store: StoreAnswer,
    ) -> None:
        self.turn = turn
        self._store = store
        self.message_id = message_id
        self._upstream = upstream
        self._first: StreamDelta | StreamEnd = _END
        self._parts: list[str] = []
        self._usage: Usage | None = None
        self._ended = False
        self._finished = False
        self.stored: Message | None = None

    @property
    def content(self) -> str:
        return "".join(self._parts)

    async def start(self) -> None:
        """Wait for the first upstream event; raises its LLMError after storing the failure."""
        try:
            self._first = await anext(self._upstream, _END)
        except BaseException:
            await self.finish()
            raise
        self._absorb(self._first)

    def _absorb(self, item: StreamDelta | StreamEnd) -> None:
        """Count item as received (stored even if the client never sees it)."""
        if isinstance(item, StreamEnd):
            self._usage = item.usage
            self._ended = True
        else:
            self._parts.append(item.content)

    async def events(self) -> AsyncIterator[StreamDelta | StreamEnd | LLMError]:
        """Deltas, then the StreamEnd; an LLMError instead when the upstream fails midway."""
        item = self._first
        try:
            yield item
            while not isinstance(item, StreamEnd):
                item = await anext(self._upstream, _END)
                self._absorb(item)
                yield item
        except LLMError as exc:
            yield exc
        finally:
            await self.finish()

    async def finish(self) -> None:
        """Close the upstream and store the answer as it stands; runs even when cancelled."""
        if self._finished:
            return
        self._finished = True
        if self._ended:
            status = MessageStatus.COMPLETE
        elif self._parts:
            status = MessageStatus.PARTIAL
        else:
            status = MessageStatus.FAILED
        with anyio.CancelScope(shield=True):
            await _aclose(self._upstream)
            self.stored = await self._store(self.content, status, self._usage)


async def _aclose(iterator: AsyncIterator[object]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except Exception:
        # The answer is stored regardless; a failing close only costs a connection.
        logger.warning("closing the model stream failed", exc_info=True)
