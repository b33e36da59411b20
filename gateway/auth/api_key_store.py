"""API keys in the gateway's database: the ``api_key`` table and its repository functions.

Only the HMAC of a key's secret is stored (see ``gateway.auth.api_keys``). Times are timezone-aware
UTC datetimes; SQLite hands them back naive, so readers go through ``as_utc``.

The functions the admin routes and the authenticator call raise ``DependencyUnavailable`` when
the database cannot be reached or refuses the statement: SQLAlchemy's errors and the driver's
connection errors (``OSError``) never leave this module, except from ``record_use``, whose
caller keeps its batch on a database error and tries again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel, col, select

from gateway.db import unavailable_as

__all__ = [
    "ApiKey",
    "as_utc",
    "get_key",
    "list_keys",
    "record_use",
    "save",
    "timestamp",
]


class ApiKey(SQLModel, table=True):
    """One API key; the secret itself is never stored."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    owner_sub: str = Field(max_length=255, index=True)
    owner_name: str = Field(default="", max_length=255)
    permissions: list[str] = Field(default_factory=list, sa_type=JSON)
    roles: list[str] = Field(default_factory=list, sa_type=JSON)
    secret_hash: str = Field(max_length=128)
    # Fingerprint of the pepper that made secret_hash (never the pepper itself).
    pepper_version: str = Field(max_length=32)
    created_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)
    expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # Rotation: the old key points to its replacement and stops working at grace_until.
    rotated_from: str | None = Field(default=None, max_length=64)
    replaced_by: str | None = Field(default=None, max_length=64)
    grace_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


def as_utc(value: datetime | None) -> datetime | None:
    """value as an aware UTC datetime (naive values are taken to be UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def timestamp(value: datetime | None) -> float | None:
    """value in seconds since the epoch."""
    aware = as_utc(value)
    return aware.timestamp() if aware is not None else None


async def get_key(session: AsyncSession, key_id: str) -> ApiKey | None:
    """The key with key_id, or None. Raises DependencyUnavailable."""
    async with unavailable_as("The API key store"):
        return await session.get(ApiKey, key_id)


async def list_keys(session: AsyncSession, owner_sub: str | None = None) -> Sequence[ApiKey]:
    """All keys (or one owner's), newest first. Raises DependencyUnavailable."""
    query = select(ApiKey).order_by(col(ApiKey.created_at).desc(), col(ApiKey.id))
    if owner_sub is not None:
        query = query.where(col(ApiKey.owner_sub) == owner_sub)
    async with unavailable_as("The API key store"):
        result = await session.execute(query)
        return result.scalars().all()


async def save(session: AsyncSession, *keys: ApiKey) -> None:
    """Insert or update keys and commit. Raises DependencyUnavailable."""
    async with unavailable_as("The API key store"):
        for key in keys:
            session.add(key)
        await session.commit()


async def record_use(
    session: AsyncSession,
    last_used: Mapping[str, datetime],
    rehashed: Mapping[str, tuple[str, str]],
) -> None:
    """Write a batch of last-used times and re-hashed secrets (hash, pepper version); commit.

    Raises SQLAlchemy errors or OSError (the periodic flush keeps the batch for its next round).
    """
    if last_used:
        rows = [{"id": key_id, "last_used_at": when} for key_id, when in last_used.items()]
        await session.execute(update(ApiKey), rows)
    if rehashed:
        rows = [
            {"id": key_id, "secret_hash": digest, "pepper_version": version}
            for key_id, (digest, version) in rehashed.items()
        ]
        await session.execute(update(ApiKey), rows)
    await session.commit()
