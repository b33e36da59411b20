"""The Redis reserve/settle scripts, and exactness under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.budgets.config import BudgetLine, Window
from gateway.budgets.store import BudgetUnavailable, RedisBudgetStore
from tests.gateway.budgets.test_meter import (
    BUDGETS,
    ESTIMATE,
    PATH,
    QUESTION,
    Answer,
    StandInOrchestrator,
    gateway_app,
    spent,
)
from tests.gateway.harness import running

NOON = datetime(2025, 5, 14, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    """A wall clock tests move by hand."""

    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


def _day(limit: int, partition: str = "user:tech-1") -> BudgetLine:
    return BudgetLine(partition.split(":")[0], partition, Window.DAY, limit)


# --- the Redis store --------------------------------------------------------------------------


async def test_reservation_is_all_or_nothing(redis: Redis) -> None:
    """When one budget is short, no budget is charged and the short one is reported."""
    store = RedisBudgetStore(redis, f"t-{uuid.uuid4().hex}", clock=Clock())
    roomy, tight = _day(1000), _day(100, "tier:technician")
    first = await store.reserve([roomy, tight], 60)
    second = await store.reserve([roomy, tight], 60)
    assert first.allowed
    assert not second.allowed
    assert [s.used for s in second.states] == [60, 60]
    assert [s.line for s in second.exhausted] == [tight]
    assert second.retry_after == 43200


async def test_parallel_reservations_across_two_stores_stop_exactly_at_the_limit(
    redis_url: str,
) -> None:
    """Forty concurrent reservations from two clients admit exactly as many as the budget
    holds, and the counter never passes it."""
    prefix = f"t-{uuid.uuid4().hex}"
    clients = [Redis.from_url(redis_url) for _ in range(2)]
    stores = [RedisBudgetStore(client, prefix, clock=Clock()) for client in clients]
    line = _day(7 * 110 + 50)
    results = await asyncio.gather(*(stores[n % 2].reserve([line], 110) for n in range(40)))
    for client in clients:
        await client.aclose()
    assert sum(r.allowed for r in results) == 7
    assert max(s.used for r in results for s in r.states) == 770


async def test_settlement_replaces_the_estimate_with_the_real_cost(redis: Redis) -> None:
    """Settling a pending reservation moves the counter by real minus estimate, once."""
    prefix = f"t-{uuid.uuid4().hex}"
    store = RedisBudgetStore(redis, prefix, clock=Clock())
    reservation = await store.reserve([_day(1000)], 300)
    assert await store.settle(reservation, 120)
    assert await spent(redis, prefix, "user:tech-1") == 120
    assert not await store.settle(reservation, 120)  # already settled: charged afresh
    assert await spent(redis, prefix, "user:tech-1") == 240


async def test_unsettled_reservations_expire_and_are_released(redis: Redis) -> None:
    """A reservation never settled is released by the next reservation after its deadline; a
    late settlement then charges the real cost afresh."""
    prefix = f"t-{uuid.uuid4().hex}"
    clock = Clock()
    store = RedisBudgetStore(redis, prefix, reservation_seconds=60, clock=clock)
    lost = await store.reserve([_day(1000)], 400)
    clock.now += 61
    after = await store.reserve([_day(1000)], 10)
    assert after.swept == 1
    assert [s.used for s in after.states] == [10]
    assert await redis.hlen(f"{prefix}:{{tb}}:reservations") == 1
    assert not await store.settle(lost, 30)
    assert await spent(redis, prefix, "user:tech-1") == 40


async def test_budget_resets_at_the_window_edge(redis: Redis) -> None:
    """A full day budget has room again one second after midnight UTC; Retry-After said so."""
    clock = Clock(datetime(2025, 5, 14, 23, 59, 59, tzinfo=UTC).timestamp())
    store = RedisBudgetStore(redis, f"t-{uuid.uuid4().hex}", clock=clock)
    assert (await store.reserve([_day(100)], 100)).allowed
    refused = await store.reserve([_day(100)], 1)
    clock.now += 1
    fresh = await store.reserve([_day(100)], 100)
    assert (refused.allowed, refused.retry_after) == (False, 1)
    assert fresh.allowed
    assert fresh.states[0].reset == 86400


async def test_redis_down_is_budget_unavailable(redis_server: Any) -> None:
    """Connection failures surface as BudgetUnavailable, never as a Redis exception."""
    client = Redis.from_url(redis_server.url, socket_connect_timeout=0.5)
    store = RedisBudgetStore(client, "t", clock=Clock())
    with redis_server.stopped(), pytest.raises(BudgetUnavailable):
        await store.reserve([_day(10)], 1)
    await client.aclose()


# --- two gateways on one Redis ----------------------------------------------------------------


async def test_budget_holds_exactly_across_two_gateways_under_parallel_requests(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    """Forty parallel requests spread over two gateway apps on one Redis: exactly the seven
    that the budget holds reach the orchestrator, the rest are 429."""
    orchestrator = StandInOrchestrator()
    usage = {"prompt_tokens": 10, "completion_tokens": ESTIMATE - 10}
    orchestrator.queue(*[Answer(usage=usage)] * 40)
    prefix = f"test-{uuid.uuid4().hex}"
    budgets = {**BUDGETS, "tiers": {"technician": {"per_day": 7 * ESTIMATE + ESTIMATE - 1}}}
    apps = [
        gateway_app(tmp_path / name, redis_url, orchestrator, budgets=budgets, prefix=prefix)
        for name in ("a", "b")
    ]
    async with running(apps[0]) as first, running(apps[1]) as second:
        clients = (first, second)
        responses = await asyncio.gather(
            *(
                clients[n % 2].post(
                    PATH, headers={"Authorization": "Bearer tech-token"}, json=QUESTION
                )
                for n in range(40)
            )
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 7 + [429] * 33
    assert len(orchestrator.bodies) == 7
    assert await spent(redis, prefix, "user:tech-1") == 7 * ESTIMATE
