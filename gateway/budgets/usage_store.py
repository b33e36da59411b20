"""Token usage in SQL: one row per day, caller and agent, added to by upserts; and its queries.

``UsageRecorder`` sums settled requests in memory and writes them in one upsert per row every
``flush_seconds`` (and at shutdown, and before a report is read), so a burst of model calls costs
a handful of statements. When the database fails, the sums stay in memory and are written by the
next flush: nothing is lost unless the process dies while the database is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date
from typing import Any

from sqlalchemy import Insert, func
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import Field, SQLModel, col, select

__all__ = ["GROUPS", "TokenUsage", "UsageRecord", "UsageRecorder", "UsageRow", "UsageStore"]

logger = logging.getLogger(__name__)

# Columns a report may group by; "subject" brings the caller's kind and label along.
GROUPS = ("subject", "agent", "day", "kind", "tier")
_COUNTS = (
    "requests",
    "unmetered",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "charged_tokens",
)


class TokenUsage(SQLModel, table=True):
    """Tokens one caller spent on one agent on one (UTC) day."""

    __tablename__ = "token_usage"

    day: date = Field(primary_key=True)
    kind: str = Field(primary_key=True, max_length=16)  # user, service, api_key
    subject: str = Field(primary_key=True, max_length=255)
    agent: str = Field(primary_key=True, max_length=64)
    label: str = Field(default="", max_length=255)  # username, client id or key id
    tier: str = Field(default="", max_length=64)
    requests: int = 0
    # Requests whose answer reported no usage (cut off): charged their reservation.
    unmetered: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # What budgets counted: tokens times the agent's weight, or the reservation if unmetered.
    charged_tokens: int = 0


@dataclass(slots=True)
class UsageRecord:
    """The usage of one or more settled requests with the same row key."""

    day: date
    kind: str
    subject: str
    agent: str
    label: str = ""
    tier: str = ""
    requests: int = 1
    unmetered: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    charged_tokens: int = 0

    @property
    def key(self) -> tuple[date, str, str, str]:
        return self.day, self.kind, self.subject, self.agent

    def add(self, other: UsageRecord) -> None:
        """Fold other (same key) into this record."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.label = other.label or self.label
        self.tier = other.tier or self.tier


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One line of a report; columns not grouped by are None."""

    subject: str | None
    kind: str | None
    label: str | None
    agent: str | None
    day: date | None
    tier: str | None
    requests: int
    unmetered: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    charged_tokens: int


class UsageStore:
    """The ``token_usage`` table (SQLite or PostgreSQL)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add(self, records: Sequence[UsageRecord]) -> None:
        """Add records to their rows, creating missing rows. Raises SQLAlchemy errors."""
        if not records:
            return
        rows = [{f.name: getattr(r, f.name) for f in fields(UsageRecord)} for r in records]
        async with self._sessions() as session:
            dialect = session.get_bind().dialect.name
            if dialect not in ("postgresql", "sqlite"):
                raise NotImplementedError(f"token usage needs SQLite or PostgreSQL, not {dialect}")
            insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
            table: Any = TokenUsage.__table__  # type: ignore[attr-defined]
            statement = insert(table)
            update = {name: table.c[name] + statement.excluded[name] for name in _COUNTS}
            update |= {"label": statement.excluded.label, "tier": statement.excluded.tier}
            upsert: Insert = statement.on_conflict_do_update(
                index_elements=["day", "kind", "subject", "agent"], set_=update
            )
            await session.execute(upsert, rows)
            await session.commit()

    async def report(
        self,
        *,
        first: date,
        last: date,
        group_by: Sequence[str],
        subject: str | None = None,
        agent: str | None = None,
        kind: str | None = None,
    ) -> list[UsageRow]:
        """Sums from first to last day (both included), grouped, largest total first."""
        selected: list[Any] = []
        grouped: list[Any] = []
        for name in group_by:
            column = col(getattr(TokenUsage, name))
            selected.append(column)
            grouped.append(column)
            if name == "subject":
                selected += [col(TokenUsage.kind), func.max(TokenUsage.label)]
                grouped.append(col(TokenUsage.kind))
        sums = [func.coalesce(func.sum(getattr(TokenUsage, name)), 0) for name in _COUNTS]
        statement = select(*selected, *sums).where(
            col(TokenUsage.day) >= first, col(TokenUsage.day) <= last
        )
        for name, value in (("subject", subject), ("agent", agent), ("kind", kind)):
            if value is not None:
                statement = statement.where(col(getattr(TokenUsage, name)) == value)
        if grouped:
            statement = statement.group_by(*grouped)
        statement = statement.order_by(sums[4].desc(), *grouped)
        async with self._sessions() as session:
            result = (await session.execute(statement)).all()
        return [_row(group_by, tuple(values)) for values in result]


def _row(group_by: Sequence[str], values: tuple[Any, ...]) -> UsageRow:
    found: dict[str, Any] = dict.fromkeys(("subject", "kind", "label", "agent", "day", "tier"))
    position = 0
    for name in group_by:
        found[name] = values[position]
        position += 1
        if name == "subject":
            found["kind"], found["label"] = values[position], values[position + 1]
            position += 2
    for name, value in zip(_COUNTS, values[position:], strict=True):
        found[name] = int(value)
    return UsageRow(**found)


class UsageRecorder:
    """Sums usage in memory and writes it to the store in batches (see module doc)."""

    def __init__(self, store: UsageStore, *, flush_seconds: float = 1.0) -> None:
        self._store = store
        self._flush_seconds = flush_seconds
        self._pending: dict[tuple[date, str, str, str], UsageRecord] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def record(self, record: UsageRecord) -> None:
        """Add one settled request (never blocks)."""
        known = self._pending.get(record.key)
        if known is None:
            self._pending[record.key] = record
        else:
            known.add(record)

    async def flush(self) -> bool:
        """Write what is pending; False (and kept for the next flush) when the store failed."""
        async with self._lock:
            batch, self._pending = self._pending, {}
            if not batch:
                return True
            try:
                await self._store.add(list(batch.values()))
            except Exception as exc:
                for record in batch.values():
                    self.record(record)
                logger.warning("token usage not written", extra={"error": type(exc).__name__})
                return False
            return True

    def start(self) -> None:
        """Flush every flush_seconds in the background until ``aclose``."""
        self._task = asyncio.create_task(self._run())

    async def aclose(self) -> None:
        """Stop the background flush and write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            await self.flush()
