"""Schema migrations: Alembic, driven from code (no ``alembic.ini``).

The app runs ``upgrade head`` at startup (``MRO_ORCHESTRATOR_MIGRATE_ON_STARTUP``) and
``mro-orchestrator migrate`` does the same from the command line.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Named apart from Alembic's default so a database shared with other services stays unambiguous.
VERSION_TABLE = "orchestrator_alembic_version"
# Advisory lock key serialising concurrent upgrades ("MROORCH" in ASCII).
_LOCK_ID = 0x4D524F4F524348


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic configuration pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the database behind engine up to revision.

    The upgrade runs in one transaction that first takes a lock (an advisory lock on
    PostgreSQL, the write lock on SQLite), so processes starting together migrate one after
    the other instead of racing to create the same tables.
    """
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_ID})")
        elif connection.dialect.name == "sqlite":
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
        await connection.run_sync(_on_connection, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Migrate the database behind engine down to revision (``base`` drops everything)."""
    async with engine.begin() as connection:
        await connection.run_sync(_on_connection, "downgrade", revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None before the first migration."""

    def _read(connection: Connection) -> str | None:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(_read)


def _on_connection(connection: Connection, direction: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    if direction == "upgrade":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)
