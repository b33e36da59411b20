"""The audit writer: batches into SQL, spools while the database is down, replays without loss
or duplicates."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from gateway.audit import AuditEvent, QueuedAuditWriter
from gateway.audit_spool import AuditSpool
from gateway.audit_store import SqlAuditStore
from gateway.db import session_factory
from gateway.metrics import Metrics
from tests.gateway.harness import FakeMonotonic


class CountingStore:
    """The SQL store, remembering the size of every batch it was given."""

    def __init__(self, store: SqlAuditStore) -> None:
        self.store = store
        self.batches: list[int] = []

    async def insert(self, events: Sequence[AuditEvent]) -> None:
        self.batches.append(len(events))
        await self.store.insert(events)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    # A new connection per use, so that moving the file away really takes the database down.
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}", poolclass=NullPool)
    async with engine.begin() as connection:
        await connection.run_sync(SQLModel.metadata.create_all)
    yield engine
    await engine.dispose()


def _event(n: int) -> AuditEvent:
    return AuditEvent(action="auth.token_rejected", outcome="failure", reason=f"r{n}")


async def test_events_are_written_in_batches(engine: AsyncEngine, tmp_path: Path) -> None:
    """Five hundred queued events reach the database in a few inserts."""
    sql = SqlAuditStore(session_factory(engine))
    store = CountingStore(sql)
    writer = QueuedAuditWriter(store, AuditSpool(tmp_path / "spool"), Metrics(), batch_size=200)
    for n in range(500):
        writer.emit(_event(n))
    await writer.start()
    await writer.flush()
    await writer.aclose()
    assert sum(store.batches) == 500
    assert len(store.batches) == 3
    assert len(await sql.query(limit=1000)) == 500


async def test_database_outage_spools_and_replays_without_loss_or_duplicates(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Events keep arriving while the database is gone; all of them are stored exactly once."""
    database = tmp_path / "audit.db"
    sql = SqlAuditStore(session_factory(engine))
    metrics = Metrics()
    clock = FakeMonotonic()
    writer = QueuedAuditWriter(
        sql, AuditSpool(tmp_path / "spool"), metrics, batch_size=10, clock=clock
    )
    await writer.start()
    sent = [_event(n) for n in range(90)]
    for event in sent[:30]:
        writer.emit(event)
    await writer.flush()
    # Take the database away: the file is moved and a folder stands in its place.
    database.rename(tmp_path / "away.db")
    database.mkdir()
    for event in sent[30:60]:
        writer.emit(event)
    await writer.flush()
    assert not writer.store_available
    assert (tmp_path / "spool" / "current.jsonl").exists()
    spooled = metrics.registry.get_sample_value("mro_gateway_audit_spooled_total")
    # Bring it back; once the retry delay passed, the next batch finds it and replays the spool.
    database.rmdir()
    (tmp_path / "away.db").rename(database)
    clock.advance(6)
    for event in sent[60:]:
        writer.emit(event)
    await writer.aclose()
    stored = await sql.query(limit=1000)
    assert spooled == 30
    assert sorted(e.event_id for e in stored) == sorted(e.event_id for e in sent)
    assert list((tmp_path / "spool").glob("*.jsonl")) == []


async def test_replaying_a_spool_twice_stores_each_event_once(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """A spool file replayed again after a crash adds nothing (inserts are idempotent)."""
    sql = SqlAuditStore(session_factory(engine))
    spool = AuditSpool(tmp_path / "spool")
    events = [_event(n) for n in range(5)]
    spool.append([e.to_json() for e in events])
    shutil.copy(tmp_path / "spool" / "current.jsonl", tmp_path / "copy.jsonl")
    for _ in range(2):
        writer = QueuedAuditWriter(sql, spool, Metrics())
        await writer.start()
        await writer.aclose()
        shutil.copy(tmp_path / "copy.jsonl", tmp_path / "spool" / "current.jsonl")
    stored = await sql.query(limit=100)
    assert sorted(e.event_id for e in stored) == sorted(e.event_id for e in events)


async def test_full_queue_spools_instead_of_dropping(engine: AsyncEngine, tmp_path: Path) -> None:
    """Past the queue's capacity events go to the spool synchronously, then to the database."""
    sql = SqlAuditStore(session_factory(engine))
    writer = QueuedAuditWriter(sql, AuditSpool(tmp_path / "spool"), Metrics(), queue_size=5)
    events = [_event(n) for n in range(12)]
    for event in events:
        writer.emit(event)
    assert (tmp_path / "spool" / "current.jsonl").read_text().count("\n") == 7
    await writer.start()
    await writer.aclose()
    stored = await sql.query(limit=100)
    assert sorted(e.event_id for e in stored) == sorted(e.event_id for e in events)


async def test_query_filters_by_actor_action_and_time(engine: AsyncEngine) -> None:
    """The admin query narrows by actor, action family and time window, newest first."""
    sql = SqlAuditStore(session_factory(engine))
    first = AuditEvent(action="api_key.created", outcome="success", actor="mgr-1")
    second = AuditEvent(action="api_key.revoked", outcome="success", actor="mgr-1")
    other = AuditEvent(action="auth.permission_denied", outcome="denied", actor="tech-1")
    await sql.insert([first, second, other])
    family = await sql.query(action="api_key.*")
    assert [e.event_id for e in family] == [second.event_id, first.event_id]
    assert [e.event_id for e in await sql.query(actor="tech-1")] == [other.event_id]
    assert await sql.query(since=other.at.replace(year=other.at.year + 1)) == []
    (exact,) = await sql.query(action="api_key.created", until=second.at)
    assert exact.event_id == first.event_id
    assert exact.at.tzinfo is not None
