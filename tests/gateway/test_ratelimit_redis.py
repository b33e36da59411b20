"""The limiters themselves: one suite over the Redis script, limits' RedisStorage and memory."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter
from redis.asyncio import Redis

from gateway.ratelimit import Limit, Limiter, namespace
from gateway.ratelimit_fallback import LimitsLimiter
from gateway.ratelimit_redis import STRATEGY, RedisWindowLimiter
from tests.gateway.harness import FakeMonotonic

pytestmark = pytest.mark.redis

FIVE = Limit.parse("tier", "5/minute")


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def _script(redis: Redis, redis_url: str) -> Limiter:
    return RedisWindowLimiter(redis, f"t-{uuid.uuid4().hex}")


def _limits_redis(redis: Redis, redis_url: str) -> Limiter:
    storage = RedisStorage(
        "async+" + redis_url,
        implementation="redispy",
        key_prefix=f"t-{uuid.uuid4().hex}",
        connection_pool=redis.connection_pool,
    )
    return LimitsLimiter(storage, "ns")


def _memory(redis: Redis, redis_url: str) -> Limiter:
    return LimitsLimiter(MemoryStorage(), f"t-{uuid.uuid4().hex}")


BACKENDS: dict[str, Callable[[Redis, str], Limiter]] = {
    "redis-script": _script,
    "limits-redis": _limits_redis,
    "memory": _memory,
}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_concurrent_hits_never_exceed_the_limit(
    backend: str, redis: Redis, redis_url: str
) -> None:
    """Twelve concurrent hits against 5/minute allow exactly five."""
    limiter = BACKENDS[backend](redis, redis_url)
    decisions = await asyncio.gather(*(limiter.hit("sub:a", (FIVE,)) for _ in range(12)))
    assert sum(d.allowed for d in decisions) == 5
    assert min(d.usages[0].remaining for d in decisions) == 0
    assert all(0 < d.retry_after <= 60 for d in decisions if not d.allowed)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_remaining_counts_down(backend: str, redis: Redis, redis_url: str) -> None:
    """Each allowed hit leaves one less; separate keys count separately."""
    limiter = BACKENDS[backend](redis, redis_url)
    left = [(await limiter.hit("sub:a", (FIVE,))).usages[0].remaining for _ in range(3)]
    other = await limiter.hit("sub:b", (FIVE,))
    assert left == [4, 3, 2]
    assert other.usages[0].remaining == 4


async def test_script_counts_all_limits_or_none(redis: Redis) -> None:
    """When one limit is used up the others are not charged for the refused request."""
    limiter = RedisWindowLimiter(redis, f"t-{uuid.uuid4().hex}")
    tier, llm = Limit.parse("tier", "3/minute"), Limit.parse("llm", "1/minute")
    first = await limiter.hit("sub:a", (tier, llm))
    refused = await limiter.hit("sub:a", (tier, llm))
    plain = await limiter.hit("sub:a", (tier,))
    assert first.allowed
    assert not refused.allowed
    assert refused.exhausted == ("llm",)
    assert plain.allowed
    assert plain.usages[0].remaining == 1


async def test_script_window_moves_with_the_clock(redis: Redis) -> None:
    """Hits older than the window stop counting (clock moved, no waiting)."""
    clock = FakeMonotonic()
    limiter = RedisWindowLimiter(redis, f"t-{uuid.uuid4().hex}", clock=clock)
    for _ in range(5):
        assert (await limiter.hit("sub:a", (FIVE,))).allowed
    clock.advance(30)
    refused = await limiter.hit("sub:a", (FIVE,))
    assert not refused.allowed
    assert refused.retry_after == 30
    clock.advance(30.5)
    assert (await limiter.hit("sub:a", (FIVE,))).allowed


async def test_strategies_use_separate_key_spaces(redis: Redis, redis_url: str) -> None:
    """Another strategy's counters on the same Redis never collide (no WRONGTYPE)."""
    config = ["5/minute"]
    fixed_storage = RedisStorage(
        "async+" + redis_url,
        implementation="redispy",
        key_prefix=namespace("k", "fixed", config),
        connection_pool=redis.connection_pool,
    )
    fixed = FixedWindowRateLimiter(fixed_storage)
    assert await fixed.hit(FIVE.item, "tier", "sub:a")
    moving = RedisWindowLimiter(redis, namespace("k", STRATEGY, config))
    assert (await moving.hit("sub:a", (FIVE,))).allowed
    assert namespace("k", "fixed", config) != namespace("k", STRATEGY, config)
    assert namespace("k", STRATEGY, config) != namespace("k", STRATEGY, ["6/minute"])
