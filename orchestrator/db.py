"""The orchestrator's SQL database: the async engine.

``sqlite+aiosqlite`` is the default (one file, WAL journal, foreign keys on, writers wait for
each other instead of failing); ``postgresql+asyncpg`` is the production backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

# How long a SQLite writer waits for the file lock before giving up.
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for url; on SQLite, creates the file's folder and sets pragmas."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, **kwargs)
    if parsed.database not in (None, "", ":memory:"):
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}, **kwargs
    )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # Cascading deletes need foreign keys, which SQLite leaves off per connection.
        cursor.execute("PRAGMA foreign_keys=ON")
        # Readers do not block the writer and the writer does not block readers.
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()
