"""When an answer that is still being written counts as abandoned.

An answer's row is stored as ``streaming`` before the model is called and written again as its
text arrives (``orchestrator.answer_stream``), so a process that dies leaves it ``streaming``
for good. Such a row is *stale* once it has not been written for longer than a live process can
stay silent: the routing call, or the model call with its retries, plus a margin for the clocks
of different replicas. A stale row reads as ``partial`` (``failed`` when it holds no text), and
a retry with its ``Idempotency-Key`` may answer the question again. Until then such a retry is
told how many seconds remain (``seconds_until_stale``, sent as ``Retry-After``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from orchestrator.message_repository import utc_now
from orchestrator.models import Message, MessageStatus
from orchestrator.settings import OrchestratorSettings

# Allowance for clocks of replicas that differ and for a busy event loop.
STALE_MARGIN_SECONDS = 5.0
# The bound when no settings are at hand (the default settings give 3 min 36 s).
DEFAULT_STALE_AFTER = timedelta(minutes=5)


def stale_after(settings: OrchestratorSettings) -> timedelta:
    """How long a live process may leave its ``streaming`` answer unwritten, plus the margin.

    Timeouts are not retried, but an attempt refused after its whole timeout is, so every
    attempt may take connect plus read timeout, and each retry may wait its longest backoff.
    """
    retries = settings.azure_max_retries
    attempt = settings.azure_timeout_seconds + settings.azure_connect_timeout_seconds
    model_call = (retries + 1) * attempt + retries * settings.azure_retry_max_wait_seconds
    silence = max(settings.classifier_timeout_seconds, model_call)
    return timedelta(seconds=silence + STALE_MARGIN_SECONDS)


def last_written(message: Message) -> datetime:
    """The time of message's last write (rows older than ``updated_at`` have only creation)."""
    return message.updated_at or message.created_at


@dataclass(frozen=True, slots=True)
class AnswerLiveness:
    """Tells a ``streaming`` answer some process still writes from one left behind."""

    stale_after: timedelta = DEFAULT_STALE_AFTER
    clock: Callable[[], datetime] = field(default=utc_now)

    @classmethod
    def for_settings(
        cls, settings: OrchestratorSettings, clock: Callable[[], datetime] = utc_now
    ) -> AnswerLiveness:
        return cls(stale_after=stale_after(settings), clock=clock)

    def stale_before(self) -> datetime:
        """Rows last written before this time are stale."""
        return self.clock() - self.stale_after

    def is_stale(self, message: Message) -> bool:
        """True for a ``streaming`` answer not written for longer than ``stale_after``."""
        if message.status != MessageStatus.STREAMING:
            return False
        return last_written(message) < self.stale_before()

    def seconds_until_stale(self, written: datetime) -> int:
        """Whole seconds after which a row last written at written is stale; at least 1."""
        left = (written + self.stale_after - self.clock()).total_seconds()
        # Stale means strictly past the bound: one more second than the time left, rounded down.
        return max(1, math.floor(left) + 1)

    def status_of(self, message: Message) -> MessageStatus:
        """The status to show: a stale ``streaming`` answer is ``partial``, or ``failed`` empty."""
        if not self.is_stale(message):
            return MessageStatus(message.status)
        return MessageStatus.PARTIAL if message.content else MessageStatus.FAILED
