"""The limiters themselves: one suite over the Redis script, limits' RedisStorage and memory;
the script's shared round trips."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter
from redis.asyncio import Redis

from devstack.procs import free_port
from gateway.ratelimit.fallback import LimitsLimiter
from gateway.ratelimit.redis_window import _SCRIPT, STRATEGY, RedisWindowLimiter
from gateway.ratelimit.rules import Limit, Limiter, LimiterUnavailable, namespace
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


class CountingRedis(Redis):
    """A real client that counts how the limiter's calls reach Redis."""

    pipelines = 0
    evalshas = 0

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        self.pipelines += 1
        return super().pipeline(transaction, shard_hint)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if args and args[0] == "EVALSHA":
            self.evalshas += 1
        return await super().execute_command(*args, **options)


@pytest.fixture
async def counting(redis_url: str) -> AsyncIterator[CountingRedis]:
    client = CountingRedis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_concurrent_checks_share_one_round_trip(counting: CountingRedis) -> None:
    """Checks of one event-loop turn go to Redis as one pipeline, each still counted."""
    limiter = RedisWindowLimiter(counting, f"t-{uuid.uuid4().hex}")
    decisions = await asyncio.gather(*(limiter.hit("sub:a", (FIVE,)) for _ in range(12)))
    assert (counting.pipelines, counting.evalshas) == (1, 0)
    assert sum(d.allowed for d in decisions) == 5
    assert sorted(d.usages[0].remaining for d in decisions if d.allowed) == [0, 1, 2, 3, 4]


async def test_a_lone_check_is_one_plain_call(counting: CountingRedis) -> None:
    """A check alone in its loop turn is a single EVALSHA, no pipeline."""
    limiter = RedisWindowLimiter(counting, f"t-{uuid.uuid4().hex}")
    assert (await limiter.hit("sub:a", (FIVE,))).allowed
    assert (counting.pipelines, counting.evalshas) == (0, 1)


async def test_script_is_loaded_again_after_a_flush(redis: Redis) -> None:
    """After Redis lost its scripts (restart, SCRIPT FLUSH) checks still work and count once."""
    limiter = RedisWindowLimiter(redis, f"t-{uuid.uuid4().hex}")
    assert (await limiter.hit("sub:a", (FIVE,))).usages[0].remaining == 4
    await redis.script_flush()
    lone = await limiter.hit("sub:a", (FIVE,))
    await redis.script_flush()
    together = await asyncio.gather(*(limiter.hit("sub:a", (FIVE,)) for _ in range(2)))
    assert lone.usages[0].remaining == 3
    assert sorted(d.usages[0].remaining for d in together) == [1, 2]


async def test_unreachable_redis_fails_every_waiting_check() -> None:
    """Without Redis each concurrent check raises LimiterUnavailable (the failover's signal)."""
    client = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    limiter = RedisWindowLimiter(client, "t-down")
    try:
        results = await asyncio.gather(
            *(limiter.hit("sub:a", (FIVE,)) for _ in range(3)), return_exceptions=True
        )
    finally:
        await client.aclose()
    assert [type(r) for r in results] == [LimiterUnavailable] * 3


async def test_a_caller_that_goes_away_leaves_the_others_their_answer(redis: Redis) -> None:
    """Cancelling one waiting check does not cancel the shared round trip."""
    limiter = RedisWindowLimiter(redis, f"t-{uuid.uuid4().hex}")
    tasks = [asyncio.create_task(limiter.hit("sub:a", (FIVE,))) for _ in range(3)]
    await asyncio.sleep(0)  # let all three join the batch
    tasks[0].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[0], asyncio.CancelledError)
    assert all(d.allowed for d in done[1:])  # type: ignore[union-attr]


async def test_the_script_answers_one_string(redis: Redis) -> None:
    """One bulk reply (cheaper to read than an array): allowed, then count and reset per key."""
    sha = await redis.script_load(_SCRIPT)
    key = f"t-{uuid.uuid4().hex}"
    args = [b"100.5", b"1", b"5", b"60", b"10", b"1"]
    assert await redis.evalsha(sha, 2, f"{key}:a", f"{key}:b", *args) == b"1 1 60 1 1"
    assert await redis.evalsha(sha, 1, f"{key}:a", b"130.5", b"1", b"5", b"60") == b"1 2 30"


async def test_checks_of_several_limits_report_each(redis: Redis) -> None:
    """Each limit of a check gets its own remaining count; one full limit refuses the hit."""
    limiter = RedisWindowLimiter(redis, f"t-{uuid.uuid4().hex}")
    two = Limit.parse("burst", "2/second")
    first = await limiter.hit("sub:a", (FIVE, two))
    second = await limiter.hit("sub:a", [FIVE, two])
    third = await limiter.hit("sub:a", (FIVE, two))
    assert [u.remaining for u in first.usages] == [4, 1]
    assert [u.remaining for u in second.usages] == [3, 0]
    assert (third.allowed, [u.remaining for u in third.usages]) == (False, [3, 0])
