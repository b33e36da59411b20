"""The gateway's SQL database (API keys, audit): async engine and session factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlmodel import SQLModel

from gateway.errors import DependencyUnavailable


def create_engine(url: str) -> AsyncEngine:
    """An async engine for url; creates the folder of a SQLite file."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
    return create_async_engine(url, pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def create_schema(engine: AsyncEngine) -> None:
    """Create the gateway's tables if they do not exist (models register on SQLModel.metadata)."""
    # Imported for their side effect of registering tables.
    from gateway.audit import store as audit_store  # noqa: F401
    from gateway.auth import api_key_store  # noqa: F401
    from gateway.budgets import usage_store  # noqa: F401

    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)


@asynccontextmanager
async def unavailable_as(what: str) -> AsyncIterator[None]:
    """Turn database and connection errors raised inside into DependencyUnavailable naming what.

    Raises DependencyUnavailable.
    """
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        raise DependencyUnavailable(f"{what} is unavailable") from exc
