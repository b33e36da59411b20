"""The audit writer: journals every event, batches into SQL, spools while the database is down,
replays without loss or duplicates, also after the process was killed."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from devstack.paths import ROOT
from gateway.audit.events import JOURNAL_FOLDER, AuditEvent, QueuedAuditWriter
from gateway.audit.spool import AuditSpool
from gateway.audit.store import SqlAuditStore
from gateway.db import session_factory
from gateway.errors import DependencyUnavailable
from gateway.metrics import Metrics
from tests.gateway.harness import FakeMonotonic

# A gateway's writer whose database stores the first batch and then hangs (a lock held
# elsewhere): every event was emitted (its request answered) when the process is killed.
KILLED_WHILE_THE_DATABASE_HANGS = """
import asyncio, os, signal, sys
from pathlib import Path
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from gateway.audit.events import AuditEvent, QueuedAuditWriter
from gateway.audit.spool import AuditSpool
from gateway.audit.store import SqlAuditStore
from gateway.db import session_factory
from gateway.metrics import Metrics

class FirstBatchThenHang:
    def __init__(self, store):
        self.store, self.batches, self.hanging = store, 0, asyncio.Event()

    async def insert(self, events):
        self.batches += 1
        if self.batches > 1:
            self.hanging.set()
            await asyncio.Event().wait()
        await self.store.insert(events)

async def main():
    database, spool, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    engine = create_async_engine(f"sqlite+aiosqlite:///{database}", poolclass=NullPool)
    store = FirstBatchThenHang(SqlAuditStore(session_factory(engine)))
    writer = QueuedAuditWriter(store, AuditSpool(spool), Metrics(), batch_size=5)
    await writer.start()
    for n in range(count):
        event = AuditEvent(action="auth.permission_denied", outcome="denied", request_id=f"r{n}")
        writer.emit(event)
    await store.hanging.wait()
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


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


async def test_a_killed_process_loses_no_emitted_event_and_stores_none_twice(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Events emitted before SIGKILL (the database holding the writer) are all stored after the
    next start, each once, including those the dead process had stored already."""
    spool = tmp_path / "spool"
    killed = await asyncio.create_subprocess_exec(
        *[sys.executable, "-c", KILLED_WHILE_THE_DATABASE_HANGS],
        *[str(tmp_path / "audit.db"), str(spool), "20"],
        cwd=ROOT,
    )
    await asyncio.wait_for(killed.wait(), timeout=60)
    assert killed.returncode == -9
    sql = SqlAuditStore(session_factory(engine))
    stored_before = {e.request_id for e in await sql.query(limit=100)}
    assert stored_before == {f"r{n}" for n in range(5)}  # the first batch; the rest was in memory
    writer = QueuedAuditWriter(sql, AuditSpool(spool), Metrics())
    await writer.start()
    await writer.aclose()
    stored = [str(e.request_id) for e in await sql.query(limit=100)]
    assert sorted(stored) == sorted(f"r{n}" for n in range(20))
    assert list(spool.rglob("*.jsonl")) == []


async def test_the_journal_is_released_once_events_are_stored(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Once the queue is written nothing is left in the journal; a clean stop deletes it."""
    sql = SqlAuditStore(session_factory(engine))
    journal = tmp_path / "spool" / JOURNAL_FOLDER
    writer = QueuedAuditWriter(sql, AuditSpool(tmp_path / "spool"), Metrics())
    await writer.start()
    for n in range(30):
        writer.emit(_event(n))
    assert sum(len(p.read_text().splitlines()) for p in journal.glob("*.jsonl")) == 30
    await writer.flush()
    assert [p.read_bytes() for p in journal.glob("*.jsonl")] == [b""]
    await writer.aclose()
    assert list(journal.iterdir()) == []
    assert len(await sql.query(limit=100)) == 30


StoreCall = Callable[[SqlAuditStore], Awaitable[object]]
STORE_CALLS: dict[str, StoreCall] = {
    "insert": lambda store: store.insert([_event(1)]),
    "query": lambda store: store.query(),
}


@pytest.mark.parametrize("name", sorted(STORE_CALLS))
async def test_an_unreachable_database_is_dependency_unavailable(
    engine: AsyncEngine, tmp_path: Path, name: str
) -> None:
    """With the database file gone (a folder in its place) the store raises
    DependencyUnavailable caused by the database error (the admin route answers 503)."""
    sql = SqlAuditStore(session_factory(engine))
    database = tmp_path / "audit.db"
    database.rename(tmp_path / "away.db")
    database.mkdir()
    with pytest.raises(DependencyUnavailable) as raised:
        await STORE_CALLS[name](sql)
    assert raised.value.code == "dependency_unavailable"
    assert isinstance(raised.value.__cause__, SQLAlchemyError)
