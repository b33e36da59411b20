"""The api_keys table and its repository functions on a real SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.auth import api_key_store as store
from gateway.db import create_engine, create_schema, session_factory
from gateway.errors import DependencyUnavailable

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    await create_schema(engine)
    yield session_factory(engine)
    await engine.dispose()


def row(key_id: str, owner: str = "mgr-1", created: datetime = T0) -> store.ApiKey:
    return store.ApiKey(
        id=key_id,
        name=f"key {key_id}",
        owner_sub=owner,
        permissions=["agents:read"],
        roles=["service"],
        secret_hash="0" * 64,
        pepper_version="v1",
        created_at=created,
        expires_at=created + timedelta(days=90),
    )


async def test_saved_key_reads_back_with_lists_and_utc_times(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """JSON lists survive the round trip and times come back as the same UTC instant."""
    async with sessions() as session:
        await store.save(session, row("aaaaaaaaaaaaaaaa"))
    async with sessions() as session:
        loaded = await store.get_key(session, "aaaaaaaaaaaaaaaa")
    assert loaded is not None
    assert (loaded.permissions, loaded.roles) == (["agents:read"], ["service"])
    assert store.as_utc(loaded.created_at) == T0
    assert store.timestamp(loaded.expires_at) == (T0 + timedelta(days=90)).timestamp()
    assert loaded.revoked_at is None


async def test_unknown_key_is_none(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Looking up an id that was never stored gives None."""
    async with sessions() as session:
        assert await store.get_key(session, "nope") is None


async def test_list_is_newest_first_and_filters_by_owner(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Keys list newest first; an owner filter keeps only that owner's keys."""
    async with sessions() as session:
        await store.save(
            session,
            row("k1", created=T0),
            row("k2", owner="mgr-2", created=T0 + timedelta(hours=1)),
            row("k3", created=T0 + timedelta(hours=2)),
        )
    async with sessions() as session:
        everyone = [k.id for k in await store.list_keys(session)]
        mine = [k.id for k in await store.list_keys(session, "mgr-1")]
    assert everyone == ["k3", "k2", "k1"]
    assert mine == ["k3", "k1"]


async def test_record_use_updates_many_keys_in_one_batch(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Last-used times and re-hashed secrets are written for every key in the batch."""
    async with sessions() as session:
        await store.save(session, row("k1"), row("k2"), row("k3"))
    used = {"k1": T0 + timedelta(minutes=1), "k2": T0 + timedelta(minutes=2)}
    async with sessions() as session:
        await store.record_use(session, used, {"k2": ("f" * 64, "v2")})
    async with sessions() as session:
        k1, k2, k3 = [await store.get_key(session, k) for k in ("k1", "k2", "k3")]
    assert k1 is not None
    assert k2 is not None
    assert k3 is not None
    assert store.as_utc(k1.last_used_at) == used["k1"]
    assert (store.as_utc(k2.last_used_at), k2.secret_hash, k2.pepper_version) == (
        used["k2"],
        "f" * 64,
        "v2",
    )
    assert (k3.last_used_at, k3.secret_hash) == (None, "0" * 64)


Operation = Callable[[AsyncSession], Awaitable[object]]
OPERATIONS: dict[str, Operation] = {
    "get_key": lambda session: store.get_key(session, "k1"),
    "list_keys": lambda session: store.list_keys(session),
    "save": lambda session: store.save(session, row("k2")),
}


@pytest.mark.parametrize("name", sorted(OPERATIONS))
async def test_an_unreachable_database_is_dependency_unavailable(tmp_path: Path, name: str) -> None:
    """With the database file gone (a folder in its place), reads and writes raise
    DependencyUnavailable caused by the database error, and work again once it is back."""
    database = tmp_path / "keys.db"
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    await create_schema(engine)
    sessions = session_factory(engine)
    async with sessions() as session:
        await store.save(session, row("k1"))
    await engine.dispose()  # no pooled connection keeps the old file open
    database.rename(tmp_path / "away.db")
    database.mkdir()
    try:
        async with sessions() as session:
            with pytest.raises(DependencyUnavailable) as raised:
                await OPERATIONS[name](session)
        assert raised.value.code == "dependency_unavailable"
        assert isinstance(raised.value.__cause__, SQLAlchemyError)
    finally:
        database.rmdir()
        (tmp_path / "away.db").rename(database)
    async with sessions() as session:
        await OPERATIONS[name](session)
    await engine.dispose()


def test_as_utc_normalises_naive_and_foreign_zones() -> None:
    """Naive values are taken as UTC; other zones are converted."""
    naive = datetime(2030, 1, 1, 12, 0)
    paris = datetime(2030, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert store.as_utc(naive) == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert store.as_utc(paris) == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert store.as_utc(paris).tzinfo is UTC  # type: ignore[union-attr]
    assert store.as_utc(None) is None
    assert store.timestamp(None) is None
