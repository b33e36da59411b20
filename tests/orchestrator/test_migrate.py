"""Schema migrations: the packaged Alembic revisions create exactly the models' schema."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
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
from orchestrator.models import OrchestratorTable, UTCDateTime
from orchestrator.repository import ConversationRepository
from tests.fixtures.postgres import fresh_schema

HEAD = "0002"


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
    """upgrade head creates both tables at the newest revision; downgrade base leaves none."""
    assert await current_revision(empty_engine) is None
    await upgrade(empty_engine)
    assert await current_revision(empty_engine) == HEAD
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
    assert await current_revision(empty_engine) == HEAD


async def test_replicas_starting_together_both_migrate(empty_engine: AsyncEngine) -> None:
    """Two upgrades at once (two replicas starting) both succeed and leave one schema."""
    await asyncio.gather(upgrade(empty_engine), upgrade(empty_engine))
    assert await current_revision(empty_engine) == HEAD


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


CONVERSATION, QUESTION, CUT, EMPTY = (uuid.uuid4() for _ in range(4))
_CONVERSATION_COLUMNS = (
    ("id", sa.Uuid()),
    ("owner_sub", sa.String()),
    ("owner_name", sa.String()),
    ("title", sa.String()),
    ("created_at", UTCDateTime()),
    ("updated_at", UTCDateTime()),
)
_MESSAGE_COLUMNS = (
    ("id", sa.Uuid()),
    ("conversation_id", sa.Uuid()),
    ("owner_sub", sa.String()),
    ("role", sa.String()),
    ("content", sa.Text()),
    ("status", sa.String()),
    ("created_at", UTCDateTime()),
)


def _old_rows(connection: Connection) -> None:
    """A conversation with a question and an unfinished answer, as revision 0001 held them."""
    written = datetime(2030, 1, 1, 12, tzinfo=UTC)
    conversations = sa.table(
        "conversations",
        *(sa.column(name, type_) for name, type_ in _CONVERSATION_COLUMNS),
    )
    messages = sa.table("messages", *(sa.column(name, type_) for name, type_ in _MESSAGE_COLUMNS))
    connection.execute(
        conversations.insert().values(
            id=CONVERSATION,
            owner_sub="u1",
            owner_name="",
            title="",
            created_at=written,
            updated_at=written,
        )
    )
    for message_id, role, status, content in (
        (QUESTION, "user", "complete", "q"),
        (CUT, "assistant", "streaming", "Some words"),
        (EMPTY, "assistant", "streaming", ""),
    ):
        connection.execute(
            messages.insert().values(
                id=message_id,
                conversation_id=CONVERSATION,
                owner_sub="u1",
                role=role,
                content=content,
                status=status,
                created_at=written,
            )
        )


async def test_upgrade_dates_existing_messages_by_their_creation(
    empty_engine: AsyncEngine,
) -> None:
    """0002 dates existing messages by their creation, as first attempts without routing usage."""
    await upgrade(empty_engine, "0001")
    async with empty_engine.begin() as connection:
        await connection.run_sync(_old_rows)
    await upgrade(empty_engine)
    messages = await ConversationRepository(empty_engine).list_messages(CONVERSATION)
    assert len(messages) == 3
    for message in messages:
        assert message.updated_at == message.created_at
        assert message.classification_total_tokens is None
        assert message.attempt == 1


async def test_downgrade_ends_answers_still_streaming(empty_engine: AsyncEngine) -> None:
    """Going back to 0001, unfinished answers become partial (with text) or failed (empty)."""
    await upgrade(empty_engine, "0001")
    async with empty_engine.begin() as connection:
        await connection.run_sync(_old_rows)
    await upgrade(empty_engine)
    await downgrade(empty_engine, "0001")
    assert await current_revision(empty_engine) == "0001"
    async with empty_engine.connect() as connection:
        rows = (await connection.execute(sa.text("SELECT id, status FROM messages"))).all()
        columns = await connection.run_sync(
            lambda sync: {c["name"] for c in inspect(sync).get_columns("messages")}
        )
    statuses = {uuid.UUID(str(row[0])): row[1] for row in rows}
    assert statuses == {QUESTION: "complete", CUT: "partial", EMPTY: "failed"}
    assert not {"updated_at", "classification_total_tokens", "attempt"} & columns
