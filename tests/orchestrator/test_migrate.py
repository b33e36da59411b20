"""Schema migrations: the packaged Alembic revisions create exactly the models' schema."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import create_engine
from orchestrator.migrate import (
    MIGRATIONS_DIR,
    VERSION_TABLE,
    alembic_config,
    current_revision,
    downgrade,
    upgrade,
)
from orchestrator.models import OrchestratorTable
from tests.fixtures.postgres import fresh_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
        yield engine
        await engine.dispose()
        return
    async with fresh_schema(request.getfixturevalue("postgres_url")) as engine:
        yield engine


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
    )
    return list(compare_metadata(context, OrchestratorTable.metadata))


async def test_upgrade_creates_tables_and_downgrade_removes_them(
    empty_engine: AsyncEngine,
) -> None:
    """upgrade head creates both tables at revision 0001; downgrade base leaves none."""
    assert await current_revision(empty_engine) is None
    await upgrade(empty_engine)
    assert await current_revision(empty_engine) == "0001"
    async with empty_engine.connect() as connection:
        assert {"conversations", "messages", VERSION_TABLE} <= await connection.run_sync(_tables)
    await downgrade(empty_engine, "base")
    assert await current_revision(empty_engine) is None
    async with empty_engine.connect() as connection:
        assert not {"conversations", "messages"} & await connection.run_sync(_tables)


async def test_migrated_schema_matches_the_models(empty_engine: AsyncEngine) -> None:
    """Autogenerate finds nothing to change after upgrade head: models and migrations agree."""
    await upgrade(empty_engine)
    async with empty_engine.connect() as connection:
        assert await connection.run_sync(_differences) == []


async def test_upgrade_twice_is_a_no_op(empty_engine: AsyncEngine) -> None:
    """Running the startup migration on an up-to-date database changes nothing."""
    await upgrade(empty_engine)
    await upgrade(empty_engine)
    assert await current_revision(empty_engine) == "0001"


async def test_replicas_starting_together_both_migrate(empty_engine: AsyncEngine) -> None:
    """Two upgrades at once (two replicas starting) both succeed and leave one schema."""
    await asyncio.gather(upgrade(empty_engine), upgrade(empty_engine))
    assert await current_revision(empty_engine) == "0001"


def test_migrations_run_from_a_url_on_their_own_engine(tmp_path: Path) -> None:
    """Alembic's own entry (no shared connection) migrates the database named in the config."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'own.db'}"
    command.upgrade(alembic_config(url), "head")
    command.downgrade(alembic_config(url), "base")
    command.upgrade(alembic_config(url), "head")
    assert (tmp_path / "own.db").stat().st_size > 0


def test_offline_mode_prints_the_sql() -> None:
    """``--sql`` mode renders the DDL without a database."""
    config = alembic_config("postgresql+asyncpg://nobody@localhost/none")
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    sql = config.output_buffer.getvalue()
    assert "CREATE TABLE conversations" in sql
    assert "CREATE UNIQUE INDEX uq_messages_owner_idempotency_key" in sql


def test_missing_url_is_an_error() -> None:
    """Alembic without a URL or connection fails loudly instead of guessing a database."""
    with pytest.raises(RuntimeError, match="no database URL"):
        command.upgrade(alembic_config(), "head")


def test_migrations_ship_inside_the_package() -> None:
    """The script folder lives in the orchestrator package, so wheels carry it."""
    assert MIGRATIONS_DIR.parent.name == "orchestrator"
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
