"""Security audit events and the queued writer that never loses one.

``emit`` appends the event to the process's journal on local disk (``gateway.audit.journal``:
one ``os.write``, no fsync: about ten microseconds) and queues it; it never waits. The journal
line is written before the answer the event belongs to is sent, so a process killed at any
moment afterwards (SIGKILL, out of memory) loses no answered request's event: the next start
hands the dead run's journal to the spool, which replays it. Power loss or a kernel crash can
still take the last seconds' lines (the page cache is not fsync'd).

A background task drains the queue in batches into the ``AuditStore`` (SQL). While the store
fails, batches go to an fsync'd spool file instead (``gateway.audit.spool``), and the spool is
replayed once the store answers again; inserts are idempotent by ``event_id``, so a replay after
a crash never duplicates. Once a batch is stored or spooled its journal segments are released.
When the queue is full the event is spooled synchronously rather than dropped. ``aclose`` writes
whatever is left and deletes the journal.

Actions in use: ``auth.token_rejected`` (reason: the error code), ``auth.permission_denied``,
``auth.csrf_failed``, ``ratelimit.exceeded``, ``ratelimit.fallback``, ``ratelimit.recovered``,
``api_key.*``. Events never carry token or key material.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from starlette.requests import Request

from gateway.audit.journal import AuditJournal
from gateway.audit.spool import AuditSpool
from gateway.edge.request_context import current_context
from gateway.identity import Identity
from gateway.metrics import Metrics

__all__ = [
    "AuditEvent",
    "AuditSink",
    "AuditStore",
    "Outcome",
    "QueuedAuditWriter",
    "audit_event",
]

logger = logging.getLogger(__name__)

# The journal's folder inside the spool's (one setting, one file system: adopting is a rename).
JOURNAL_FOLDER = "journal"

Outcome = Literal["success", "failure", "denied"]


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One security-relevant fact: who did what to what, how it ended and why."""

    action: str
    outcome: Outcome
    actor: str | None = None
    target: str | None = None
    reason: str | None = None
    request_id: str | None = None
    client_ip: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=_now)
    event_id: str = field(default_factory=_new_id)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (``at`` as ISO 8601)."""
        # Spelt out: dataclasses.asdict deep-copies and costs ~20 times as much on every emit.
        return {
            "action": self.action,
            "outcome": self.outcome,
            "actor": self.actor,
            "target": self.target,
            "reason": self.reason,
            "request_id": self.request_id,
            "client_ip": self.client_ip,
            "details": dict(self.details),
            "at": self.at.isoformat(),
            "event_id": self.event_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditEvent:
        """The event to_json produced. Raises KeyError or ValueError when data is not one."""
        values = dict(data)
        values["at"] = datetime.fromisoformat(values["at"])
        return cls(**values)


class AuditSink(Protocol):
    """Where code reports audit events; ``emit`` never blocks and never raises."""

    def emit(self, event: AuditEvent) -> None: ...


class AuditStore(Protocol):
    """Durable storage; ``insert`` ignores events whose ``event_id`` is already stored."""

    async def insert(self, events: Sequence[AuditEvent]) -> None: ...


# A queued event and the journal segment holding it (None: the journal refused it).
_Queued = tuple[AuditEvent, int | None]


class QueuedAuditWriter:
    """An AuditSink that journals events, batches them into an AuditStore, and spools them
    while the store is down."""

    def __init__(
        self,
        store: AuditStore,
        spool: AuditSpool,
        metrics: Metrics,
        *,
        journal: AuditJournal | None = None,
        batch_size: int = 200,
        queue_size: int = 10_000,
        retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._spool = spool
        self._journal = journal or AuditJournal(spool.directory / JOURNAL_FOLDER)
        self._metrics = metrics
        self._batch_size = batch_size
        self._queue: asyncio.Queue[_Queued | None] = asyncio.Queue(queue_size)
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._store_down_until = 0.0
        self._task: asyncio.Task[None] | None = None
        metrics.audit_queue_depth.set_function(self._queue.qsize)

    def emit(self, event: AuditEvent) -> None:
        """Journal event and queue it; when the queue is full, spool it right away."""
        record = event.to_json()
        segment = self._journal.append(record)
        try:
            self._queue.put_nowait((event, segment))
        except asyncio.QueueFull:
            self._spool.append([record])
            self._metrics.audit_spooled.inc()

    async def start(self) -> None:
        """Start the background writer, replaying any spool and the journal of any run that
        crashed."""
        if self._task is None:
            try:
                recovered = await asyncio.to_thread(self._journal.recover, self._spool.adopt)
            except OSError as exc:
                logger.error("audit journal not recovered", extra={"error": type(exc).__name__})
            else:
                if recovered:
                    logger.warning(
                        "replaying the audit journal of a stopped run", extra={"files": recovered}
                    )
            self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def flush(self) -> None:
        """Wait until every event queued so far has been stored or spooled."""
        await self._queue.join()

    async def aclose(self) -> None:
        """Write everything still queued, then stop. The journal is deleted unless events are
        left that were not written (emitted after the stop, or the writer failed)."""
        task, self._task = self._task, None
        if task is not None:
            await self._queue.put(None)
            try:
                await task
            except BaseException:
                self._journal.close(remove=False)
                raise
        self._journal.close(remove=task is not None and self._queue.empty())

    @property
    def store_available(self) -> bool:
        """False while the store is considered down (events are being spooled)."""
        return self._clock() >= self._store_down_until

    async def _run(self) -> None:
        await self._replay()
        while True:
            timeout = self._retry_seconds if self._spool.has_pending() else None
            try:
                first = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                await self._replay()
                continue
            batch: list[_Queued] = []
            stop = first is None
            if first is not None:
                batch.append(first)
            while len(batch) < self._batch_size and not stop:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            try:
                if batch:
                    await self._write([event for event, _ in batch])
                    self._release(batch)
            finally:
                for _ in range(len(batch) + (1 if stop else 0)):
                    self._queue.task_done()
            if stop:
                await self._replay()
                return

    def _release(self, batch: list[_Queued]) -> None:
        """The batch is stored or spooled: release the journal segments only it still needed.

        Runs with no await since the write returned, so no emit interleaves: with the queue
        empty every journaled event is written; otherwise the queue is FIFO and every event of
        a segment older than the batch's last one is written.
        """
        if self._queue.empty():
            self._journal.clear()
            return
        segments = [segment for _, segment in batch if segment is not None]
        if segments:
            self._journal.release(before=max(segments))

    async def _write(self, batch: list[AuditEvent]) -> None:
        if self.store_available:
            try:
                await self._store.insert(batch)
            except Exception as exc:
                self._store_failed(exc)
            else:
                self._metrics.audit_written.inc(len(batch))
                if self._spool.has_pending():
                    await self._replay()
                return
        await asyncio.to_thread(self._spool.append, [event.to_json() for event in batch])
        self._metrics.audit_spooled.inc(len(batch))

    async def _replay(self) -> None:
        if not self.store_available or not self._spool.has_pending():
            return
        for path in await asyncio.to_thread(self._spool.take_pending):
            events = _events(await asyncio.to_thread(self._spool.read, path))
            try:
                for start in range(0, len(events), self._batch_size):
                    await self._store.insert(events[start : start + self._batch_size])
            except Exception as exc:
                self._store_failed(exc)
                return
            await asyncio.to_thread(self._spool.remove, path)
            self._metrics.audit_written.inc(len(events))
            logger.info("audit spool replayed", extra={"events": len(events)})

    def _store_failed(self, exc: Exception) -> None:
        if self.store_available:
            cause = exc.__cause__ or exc  # the database's error behind DependencyUnavailable
            logger.warning(
                "audit store unreachable, spooling events", extra={"error": type(cause).__name__}
            )
        self._store_down_until = self._clock() + self._retry_seconds


def _events(records: list[dict[str, Any]]) -> list[AuditEvent]:
    events = []
    for record in records:
        try:
            events.append(AuditEvent.from_json(record))
        except (KeyError, TypeError, ValueError):
            logger.error("spooled audit record has an unexpected shape")
    return events


def audit_event(
    request: Request,
    caller: Identity,
    action: str,
    target: str,
    details: dict[str, Any],
    *,
    outcome: Literal["success", "failure", "denied"] = "success",
    reason: str | None = None,
) -> AuditEvent:
    """An audit event with the request's id and client address."""
    context = current_context(request.scope)
    return AuditEvent(
        action=action,
        outcome=outcome,
        actor=caller.subject,
        target=target,
        reason=reason,
        request_id=context.request_id if context else None,
        client_ip=context.client_ip if context else None,
        details=details,
    )
