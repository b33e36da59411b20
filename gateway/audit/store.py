"""The audit log in SQL: the ``audit_events`` table, idempotent batch inserts, and queries.

Database and connection errors (SQLAlchemy's, and the driver's ``OSError``) leave this module as
``DependencyUnavailable``: the admin route answers 503, the audit writer spools and retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import Field, SQLModel, col, select

from gateway.audit.events import AuditEvent
from gateway.db import unavailable_as

__all__ = ["AuditRecord", "SqlAuditStore"]


class AuditRecord(SQLModel, table=True):
    """One stored audit event; ``event_id`` is unique so replays never duplicate."""

    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=64, unique=True)
    at: datetime = Field(sa_type=DateTime(timezone=True), index=True)
    action: str = Field(max_length=64, index=True)
    outcome: str = Field(max_length=16)
    actor: str | None = Field(default=None, max_length=255, index=True)
    target: str | None = Field(default=None, max_length=255)
    reason: str | None = Field(default=None, max_length=255)
    request_id: str | None = Field(default=None, max_length=128)
    client_ip: str | None = Field(default=None, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


def _utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; they were stored in UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _row(event: AuditEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "at": _utc(event.at),
        "action": event.action,
        "outcome": event.outcome,
        "actor": event.actor,
        "target": event.target,
        "reason": event.reason,
        "request_id": event.request_id,
        "client_ip": event.client_ip,
        "details": event.details,
    }


def _event(record: AuditRecord) -> AuditEvent:
    outcome = record.outcome if record.outcome in ("success", "failure", "denied") else "failure"
    return AuditEvent(
        action=record.action,
        outcome=outcome,  # type: ignore[arg-type]  # narrowed by the check above
        actor=record.actor,
        target=record.target,
        reason=record.reason,
        request_id=record.request_id,
        client_ip=record.client_ip,
        details=dict(record.details or {}),
        at=_utc(record.at),
        event_id=record.event_id,
    )


class SqlAuditStore:
    """Audit events in the gateway's database (SQLite or PostgreSQL)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def insert(self, events: Sequence[AuditEvent]) -> None:
        """Store events, skipping those already stored. Raises DependencyUnavailable."""
        if not events:
            return
        async with unavailable_as("The audit store"):
            await self._insert([_row(event) for event in events])

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        async with self._sessions() as session:
            dialect = session.get_bind().dialect.name
            statement: Insert
            if dialect == "postgresql":
                statement = postgresql_insert(AuditRecord).on_conflict_do_nothing(
                    index_elements=["event_id"]
                )
            elif dialect == "sqlite":
                statement = sqlite_insert(AuditRecord).on_conflict_do_nothing(
                    index_elements=["event_id"]
                )
            else:
                ids = [row["event_id"] for row in rows]
                stored = await session.scalars(
                    select(AuditRecord.event_id).where(col(AuditRecord.event_id).in_(ids))
                )
                known = set(stored)
                rows = [row for row in rows if row["event_id"] not in known]
                if not rows:
                    return
                statement = AuditRecord.__table__.insert()  # type: ignore[attr-defined]
            await session.execute(statement, rows)
            await session.commit()

    async def query(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Newest first. ``action`` ending in ``.*`` matches the whole family (``api_key.*``).

        Raises DependencyUnavailable.
        """
        statement = select(AuditRecord)
        if actor is not None:
            statement = statement.where(AuditRecord.actor == actor)
        if action is not None:
            if action.endswith(".*"):
                prefix = action[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                statement = statement.where(col(AuditRecord.action).like(prefix + "%", escape="\\"))
            else:
                statement = statement.where(AuditRecord.action == action)
        if since is not None:
            statement = statement.where(AuditRecord.at >= _utc(since))
        if until is not None:
            statement = statement.where(AuditRecord.at < _utc(until))
        statement = statement.order_by(col(AuditRecord.at).desc(), col(AuditRecord.id).desc())
        async with unavailable_as("The audit store"), self._sessions() as session:
            records = (await session.execute(statement.limit(limit))).scalars().all()
        return [_event(record) for record in records]
