"""Answers that stream, in SQL: progress saved as text arrives, and takeover by a retry.

An answer's row belongs to one attempt at a time (``messages.attempt``): ``claim_answer`` raises
it for a retry, and every write of an answer names the attempt it comes from (``save_progress``
here, ``update_message(..., attempt=...)`` for the final write), so the writes of an attempt
that was taken over change nothing. Each is one conditional UPDATE, atomic across replicas.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, func, or_, update
from sqlmodel import col

from orchestrator.message_repository import MessageRepository
from orchestrator.models import Message, MessageStatus

_USAGE_COLUMNS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "classification_prompt_tokens",
    "classification_completion_tokens",
    "classification_total_tokens",
)


class AnswerRepository(MessageRepository):
    """Save a streaming answer's progress; let a retry take a failed or stale answer over."""

    async def save_progress(self, message_id: uuid.UUID, content: str, *, attempt: int) -> bool:
        """Store the text a ``streaming`` answer has so far; False when the row is no longer
        this attempt's to write (another attempt claimed it, it was finished or deleted).

        One UPDATE by primary key, no read: it runs for every batch of streamed text.
        """
        statement = (
            update(Message)
            .where(
                col(Message.id) == message_id,
                col(Message.attempt) == attempt,
                col(Message.status) == MessageStatus.STREAMING,
            )
            .values(content=content, updated_at=self._clock())
        )
        async with self._transaction() as session:
            result = await session.exec(statement)
        return bool(result.rowcount)

    async def claim_answer(
        self, message_id: uuid.UUID, *, stale_before: datetime
    ) -> Message | None:
        """Take over a ``failed`` answer, or a ``streaming`` one last written before stale_before,
        to answer its question again: it becomes ``streaming`` and empty, and its ``attempt``
        goes up by one; the returned row carries the claimant's attempt.

        Atomic, so of two retries at once only one wins; None when the answer was not
        claimable (it is being written, or another retry took it).
        """
        claimable = or_(
            col(Message.status) == MessageStatus.FAILED,
            and_(
                col(Message.status) == MessageStatus.STREAMING,
                func.coalesce(col(Message.updated_at), col(Message.created_at)) < stale_before,
            ),
        )
        statement = (
            update(Message)
            .where(col(Message.id) == message_id, claimable)
            .values(
                status=MessageStatus.STREAMING,
                content="",
                attempt=col(Message.attempt) + 1,
                updated_at=self._clock(),
                **dict.fromkeys(_USAGE_COLUMNS),
            )
        )
        async with self._transaction() as session:
            result = await session.exec(statement)
            if not result.rowcount:
                return None
            return await session.get(Message, message_id)
