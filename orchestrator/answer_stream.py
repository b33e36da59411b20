"""A streamed answer: relays the model's chunks, each saved before the client is sent it.

The answer's row is stored (``streaming``) before the model is called. A reader task takes the
model's chunks as they arrive; the client gets them in batches, each sent once the text so far
is saved. So a crash never loses text a client has seen, and at most one write per stream is in
flight: when the database is slower than the model the batches grow, not the writes. The end
(``StreamEnd``, or the model's error) is passed on only after the answer is stored for good:
``complete``, ``partial`` when cut after some text, ``failed`` when the model gave nothing.

A stream whose row is no longer its own to write is *withdrawn*: a retry took the row over
(``AnswerSuperseded``) or the conversation was deleted with it (``ConversationDeleted``). It
stops reading the model, stores nothing more, and ends with that error instead of the text it
could not save.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Protocol

import anyio

from orchestrator.errors import AnswerSuperseded, AnswerWithdrawn, StorageUnavailable
from orchestrator.llm import LLMError, StreamDelta, StreamEnd, Usage
from orchestrator.models import Message, MessageStatus
from orchestrator.turns import Turn

logger = logging.getLogger(__name__)

# What an upstream stream that simply stops counts as: the end, without usage.
_END = StreamEnd(usage=None, finish_reason=None)

_Received = StreamDelta | StreamEnd | Exception


class AnswerWriter(Protocol):
    """Writes one answer's row (``ChatService`` binds it to the turn's answer)."""

    async def save_progress(self, content: str) -> bool:
        """Save the text so far; False once the row is no longer this writer's to write."""
        ...

    async def store(self, content: str, status: MessageStatus, usage: Usage | None) -> Message:
        """Store the final content, status and usage; raises AnswerWithdrawn when the row is
        no longer this writer's."""
        ...

    async def withdrawal(self) -> AnswerWithdrawn:
        """Why the row is no longer this writer's (after save_progress answered False)."""
        ...


class AnswerStream:
    """A streamed answer: ``start()``, then iterate ``events()``; ``finish()`` stores what arrived.

    ``finish`` is idempotent and runs however the stream ends (also when cancelled).
    """

    def __init__(
        self,
        turn: Turn,
        upstream: AsyncIterator[StreamDelta | StreamEnd],
        writer: AnswerWriter,
    ) -> None:
        self.turn = turn
        self.message_id: uuid.UUID = turn.answer.id
        self._upstream = upstream
        self._writer = writer
        self._inbox: asyncio.Queue[_Received] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._held: list[_Received] = []
        self._parts: list[str] = []
        self._saved_parts = 0
        self._saving = True
        self.superseded = False
        self.withdrawn: AnswerWithdrawn | None = None
        self._usage: Usage | None = None
        self._ended = False
        self._finished = False
        self.stored: Message | None = None

    @property
    def content(self) -> str:
        return "".join(self._parts)

    async def start(self) -> None:
        """Start reading the model and wait for its first event.

        Raises the model's LLMError, after storing the answer as ``failed``, when it fails
        before answering.
        """
        self._reader = asyncio.create_task(self._read(), name=f"answer-{self.message_id}")
        try:
            first = await self._inbox.get()
            if isinstance(first, Exception):
                raise first
        except BaseException:
            await self.finish()
            raise
        self._held.append(first)

    async def events(self) -> AsyncIterator[StreamDelta | StreamEnd | LLMError | AnswerWithdrawn]:
        """Deltas, then the StreamEnd; an LLMError instead when the model fails midway, an
        AnswerWithdrawn when a retry took the row over or the conversation was deleted.

        Other errors of the model client are raised, after the answer is stored.
        """
        try:
            while True:
                batch = self._held or [await self._inbox.get()]
                self._held = []
                batch += self._drain()
                last = batch[-1]
                if isinstance(last, StreamDelta):
                    await self._save_progress()
                if self.superseded or not isinstance(last, StreamDelta):
                    await self.finish()
                if self.superseded:
                    yield self.withdrawn or _superseded()
                    return
                for item in batch:
                    if not isinstance(item, StreamDelta | StreamEnd | LLMError):
                        raise item
                    yield item
                if not isinstance(last, StreamDelta):
                    return
        finally:
            await self.finish()

    async def finish(self) -> None:
        """Stop reading the model and store the answer as it stands; runs even when cancelled."""
        if self._finished:
            return
        self._finished = True
        with anyio.CancelScope(shield=True):
            await self._stop_reader()
            await _aclose(self._upstream)
            if self.superseded:
                return
            if self._ended:
                status = MessageStatus.COMPLETE
            elif self._parts:
                status = MessageStatus.PARTIAL
            else:
                status = MessageStatus.FAILED
            try:
                self.stored = await self._writer.store(self.content, status, self._usage)
            except AnswerWithdrawn as exc:
                self._supersede(exc)

    async def _read(self) -> None:
        """Move the model's events to the inbox, ending with a StreamEnd or the error raised."""
        try:
            async for item in self._upstream:
                self._absorb(item)
                self._inbox.put_nowait(item)
                if isinstance(item, StreamEnd):
                    return
        except Exception as exc:
            # Handed to the consumer, which stores the answer before it reports the error.
            self._inbox.put_nowait(exc)
            return
        self._absorb(_END)
        self._inbox.put_nowait(_END)

    def _absorb(self, item: StreamDelta | StreamEnd) -> None:
        """Count item as received: stored even if the client never sees it."""
        if isinstance(item, StreamEnd):
            self._usage = item.usage
            self._ended = True
        else:
            self._parts.append(item.content)

    def _drain(self) -> list[_Received]:
        """What has arrived and was not taken yet, without waiting."""
        items: list[_Received] = []
        while not self._inbox.empty():
            items.append(self._inbox.get_nowait())
        return items

    async def _save_progress(self) -> None:
        """Save the text received so far (everything in the batch about to be sent)."""
        count = len(self._parts)
        if not self._saving or count == self._saved_parts:
            return
        try:
            saved = await self._writer.save_progress("".join(self._parts[:count]))
        except StorageUnavailable:
            # Streaming goes on; the answer is stored when it ends, if the database is back.
            logger.warning("saving answer %s failed; it is saved when it ends", self.message_id)
            self._saving = False
        else:
            if not saved:
                self._supersede(await self._writer.withdrawal())
        self._saved_parts = count

    def _supersede(self, reason: AnswerWithdrawn) -> None:
        self.superseded = True
        self.withdrawn = reason
        if isinstance(reason, AnswerSuperseded):
            logger.warning(
                "answer %s was taken over by a retry; this attempt stops", self.message_id
            )
        else:
            logger.warning(
                "answer %s stops (%s): %s; nothing more is stored",
                self.message_id,
                reason.code,
                reason.detail,
            )

    async def _stop_reader(self) -> None:
        reader = self._reader
        if reader is None or reader.done():
            return
        reader.cancel()
        await asyncio.wait([reader])


def _superseded() -> AnswerSuperseded:
    return AnswerSuperseded("This answer was taken over by a retry of the same request")


async def _aclose(iterator: AsyncIterator[object]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except Exception:
        # The answer is stored regardless; a failing close only costs a connection.
        logger.warning("closing the model stream failed", exc_info=True)
