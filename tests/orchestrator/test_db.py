"""The database engine: SQLite gets its folder, foreign keys and WAL journal."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from orchestrator.db import create_engine


async def test_sqlite_engine_creates_folder_and_sets_pragmas(tmp_path: Path) -> None:
    """A SQLite URL in a missing folder works, with foreign keys on and a WAL journal."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'new' / 'folder' / 'x.db'}")
    try:
        async with engine.connect() as connection:
            foreign_keys = (await connection.execute(text("PRAGMA foreign_keys"))).scalar()
            journal = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
    finally:
        await engine.dispose()
    assert (foreign_keys, journal) == (1, "wal")
    assert (tmp_path / "new" / "folder").is_dir()


def test_postgres_engine_uses_asyncpg_with_pre_ping() -> None:
    """A PostgreSQL URL gets an asyncpg engine that checks connections before use."""
    engine = create_engine("postgresql+asyncpg://user@127.0.0.1:1/db")
    assert engine.dialect.driver == "asyncpg"
    assert engine.pool._pre_ping
