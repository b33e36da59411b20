"""Revoked sessions and people on real Redis, and bearer tokens of a revoked Keycloak session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from devstack.procs import free_port
from gateway.auth.bearer import BearerAuthenticator
from gateway.auth.jwks import JWKSCache
from gateway.auth.revocation import RevocationStore
from gateway.errors import AuthenticationError, DependencyUnavailable
from gateway.identity import AuthMethod, Identity
from gateway.settings import GatewaySettings
from tests.gateway.keys import FakeClock

pytestmark = pytest.mark.redis

TTL = 330


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def identity(sid: str | None) -> Identity:
    return Identity(subject="user-1", method=AuthMethod.JWT, roles=frozenset(), session_id=sid)


def issued(subject: str, sid: str | None, iat: float | None) -> Identity:
    return Identity(
        subject=subject, method=AuthMethod.JWT, roles=frozenset(), session_id=sid, issued_at=iat
    )


def new_sid() -> str:
    return f"test-{uuid.uuid4().hex}"


async def test_a_revoked_sid_is_reported_until_its_ttl(redis: Redis) -> None:
    """revoke(sid) makes is_revoked true, and the entry expires after the token lifetime."""
    store = RevocationStore(redis, ttl_seconds=TTL)
    sid = new_sid()
    assert await store.is_revoked(identity(sid)) is False
    await store.revoke(sid)
    assert await store.is_revoked(identity(sid)) is True
    assert TTL - 2 <= await redis.ttl(f"mro:revoked-sid:{sid}") <= TTL


async def test_a_subject_revocation_refuses_every_earlier_token_of_that_person(
    redis: Redis,
) -> None:
    """revoke_subject(sub, at) refuses tokens issued at or before at, with or without a sid,
    accepts later ones, and leaves other people alone."""
    store = RevocationStore(redis, ttl_seconds=TTL, cache_seconds=0)
    subject = f"user-{uuid.uuid4().hex}"
    await store.revoke_subject(subject, at=1_000.5)
    assert await store.is_revoked(issued(subject, None, 999.0)) is True
    assert await store.is_revoked(issued(subject, new_sid(), 1_000.0)) is True  # same second
    assert await store.is_revoked(issued(subject, None, 1_001.0)) is False
    assert await store.is_revoked(issued(subject, None, None)) is True  # no iat: cannot tell
    assert await store.is_revoked(issued(f"other-{subject}", None, 999.0)) is False
    assert TTL - 2 <= await redis.ttl(f"mro:revoked-sub:{subject}") <= TTL


async def test_a_subject_revocation_keeps_the_latest_time(redis: Redis) -> None:
    """An older revocation replayed after a newer one does not lower the person's not-before."""
    store = RevocationStore(redis, ttl_seconds=TTL, cache_seconds=0)
    subject = f"user-{uuid.uuid4().hex}"
    await store.revoke_subject(subject, at=2_000.0)
    await store.revoke_subject(subject, at=1_000.0)
    assert await store.is_revoked(issued(subject, None, 1_500.0)) is True
    assert float(await redis.get(f"mro:revoked-sub:{subject}")) == 2_000.0


async def test_another_replica_sees_a_subject_revocation_within_the_cache_time(
    redis: Redis,
) -> None:
    """A replica that looked before the revocation sees it once its cache entry ends."""
    monotonic = FakeClock(100.0)
    replica_a = RevocationStore(redis, ttl_seconds=TTL, cache_seconds=0.5, monotonic=monotonic)
    replica_b = RevocationStore(redis, ttl_seconds=TTL, cache_seconds=0.5, monotonic=monotonic)
    subject = f"user-{uuid.uuid4().hex}"
    token = issued(subject, new_sid(), 1_000.0)
    assert await replica_b.is_revoked(token) is False
    await replica_a.revoke_subject(subject, at=1_000.0)
    assert await replica_a.is_revoked(token) is True
    assert await replica_b.is_revoked(token) is False  # still cached
    monotonic.advance(0.5)
    assert await replica_b.is_revoked(token) is True


async def test_another_replica_sees_a_revocation_within_the_cache_time(redis: Redis) -> None:
    """A negative answer is cached for cache_seconds; the revoking replica forgets it at once."""
    monotonic = FakeClock(100.0)
    replica_a = RevocationStore(redis, ttl_seconds=TTL, cache_seconds=1.0, monotonic=monotonic)
    replica_b = RevocationStore(redis, ttl_seconds=TTL, cache_seconds=1.0, monotonic=monotonic)
    sid = new_sid()
    assert await replica_a.is_revoked(identity(sid)) is False
    assert await replica_b.is_revoked(identity(sid)) is False
    await replica_a.revoke(sid)
    assert await replica_a.is_revoked(identity(sid)) is True
    assert await replica_b.is_revoked(identity(sid)) is False  # still cached
    monotonic.advance(1.0)
    assert await replica_b.is_revoked(identity(sid)) is True


async def test_without_a_cache_every_check_asks_redis(redis: Redis) -> None:
    """cache_seconds=0 makes a revocation visible to every replica immediately."""
    replica_a = RevocationStore(redis, ttl_seconds=TTL, cache_seconds=0)
    replica_b = RevocationStore(redis, ttl_seconds=TTL, cache_seconds=0)
    sid = new_sid()
    assert await replica_b.is_revoked(identity(sid)) is False
    await replica_a.revoke(sid)
    assert await replica_b.is_revoked(identity(sid)) is True


async def test_an_unreachable_redis_fails_closed() -> None:
    """When the set cannot be read or written the check raises DependencyUnavailable (503)."""
    unreachable = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    store = RevocationStore(unreachable, ttl_seconds=TTL)
    try:
        with pytest.raises(DependencyUnavailable):
            await store.is_revoked(identity(new_sid()))
        with pytest.raises(DependencyUnavailable):
            await store.revoke(new_sid())
    finally:
        await unreachable.aclose()


@pytest.mark.keycloak
async def test_a_bearer_token_of_a_revoked_session_is_refused(
    redis: Redis, keycloak_url: str, user_tokens: Callable[[str], dict[str, Any]]
) -> None:
    """BearerAuthenticator with revoked=is_revoked refuses a real token once its sid is revoked."""
    settings = GatewaySettings(keycloak_url=keycloak_url, keycloak_realm="mro")
    store = RevocationStore(redis, ttl_seconds=TTL, cache_seconds=1.0)
    async with httpx.AsyncClient(timeout=10.0) as http:
        bearer = BearerAuthenticator(
            JWKSCache(settings.discovery_url, http), settings, revoked=store.is_revoked
        )
        header = {"authorization": f"Bearer {user_tokens('tech1')['access_token']}"}
        accepted = await bearer.authenticate(header)
        assert accepted is not None
        assert accepted.session_id
        await store.revoke(accepted.session_id)
        with pytest.raises(AuthenticationError) as refused:
            await bearer.authenticate(header)
        assert refused.value.code == "token_revoked"
        await redis.delete(f"mro:revoked-sid:{accepted.session_id}")
