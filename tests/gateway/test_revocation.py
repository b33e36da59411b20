"""The sid revocation set on real Redis, and bearer tokens of a revoked Keycloak session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from devstack.procs import free_port
from gateway.errors import AuthenticationError, DependencyUnavailable
from gateway.identity import AuthMethod, Identity
from gateway.jwks import JWKSCache
from gateway.revocation import RevocationStore
from gateway.settings import GatewaySettings
from gateway.tokens import BearerAuthenticator
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


async def test_identities_without_a_sid_are_never_revoked() -> None:
    """Service tokens and API keys have no sid: no Redis round trip, never revoked."""
    unreachable = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    store = RevocationStore(unreachable, ttl_seconds=TTL)
    try:
        assert await store.is_revoked(identity(None)) is False
    finally:
        await unreachable.aclose()


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
