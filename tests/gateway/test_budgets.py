"""Budget configuration, the Redis reserve/settle scripts, and exactness under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.budgets import (
    BudgetConfig,
    BudgetLine,
    BudgetUnavailable,
    RedisBudgetStore,
    Window,
)
from gateway.identity import AuthMethod, Identity
from gateway.policy import Policy, PolicyError
from tests.gateway.harness import running
from tests.gateway.test_usage_meter import (
    BUDGETS,
    ESTIMATE,
    PATH,
    QUESTION,
    Answer,
    StandInOrchestrator,
    gateway_app,
    policy_with,
    spent,
)

ROLES = ("technician", "engineer", "manager", "admin", "service")
NOON = datetime(2025, 5, 14, 12, 0, tzinfo=UTC).timestamp()
TECH = Identity("tech-1", AuthMethod.JWT, frozenset({"technician"}), username="tech1")
KEY = Identity(
    "apikey:k1", AuthMethod.API_KEY, frozenset({"service"}), api_key_id="k1", username=""
)
SERVICE = Identity(
    "sa-1", AuthMethod.CLIENT_CREDENTIALS, frozenset({"service"}), client_id="erp-sync"
)


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


# --- configuration ----------------------------------------------------------------------------


def test_windows_are_utc_calendar_windows() -> None:
    """Minute, day and month windows start and end on UTC edges (December rolls the year)."""
    moment = datetime(2025, 12, 31, 23, 59, 30, tzinfo=UTC).timestamp()
    label, start, end = Window.MINUTE.bounds(moment)
    assert (start, end) == (moment - 30, moment + 30)
    assert Window.DAY.bounds(moment)[0] == "20251231"
    assert Window.DAY.bounds(moment)[2] == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    label, start, end = Window.MONTH.bounds(moment)
    assert label == "202512"
    assert start == datetime(2025, 12, 1, tzinfo=UTC).timestamp()
    assert end == datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def test_lines_cover_own_budget_overrides_and_tier_pool() -> None:
    """A caller spends its tier's budgets under its own partition, overridden window by window
    for named callers, plus its tier's shared pool."""
    config = BudgetConfig.from_dict(
        {
            "tiers": {"technician": {"per_day": 100, "per_month": 1000}, "service": {"per_day": 5}},
            "pools": {"technician": {"per_minute": 50}},
            "callers": {"user:tech1": {"per_day": 200}, "api_key:k1": {"per_minute": 7}},
        },
        ROLES,
    )
    assert config.lines_for(TECH, "technician") == (
        BudgetLine("user", "user:tech-1", Window.DAY, 200),
        BudgetLine("user", "user:tech-1", Window.MONTH, 1000),
        BudgetLine("tier", "tier:technician", Window.MINUTE, 50),
    )
    assert config.lines_for(KEY, "service") == (
        BudgetLine("api_key", "api_key:apikey:k1", Window.DAY, 5),
        BudgetLine("api_key", "api_key:apikey:k1", Window.MINUTE, 7),
    )
    assert config.lines_for(SERVICE, "service") == (
        BudgetLine("service", "service:sa-1", Window.DAY, 5),
    )
    # Without a tier only a named caller's own override applies.
    assert config.lines_for(SERVICE, None) == ()
    assert config.lines_for(TECH, None) == (BudgetLine("user", "user:tech-1", Window.DAY, 200),)


def test_reservation_weight_is_the_named_agent_or_the_dearest_allowed() -> None:
    """Weights default to 1; without a named agent the dearest agent the caller may use counts."""
    config = BudgetConfig.from_dict({"agents": {"compliance": {"weight": 3}}}, ROLES)
    engineer = ["agents:use:documentation", "agents:use:compliance", "messages:create"]
    assert config.reserve_weight(None, engineer) == 3.0
    assert config.reserve_weight("documentation", engineer) == 1.0
    assert config.reserve_weight(None, ["agents:use:documentation"]) == 1.0
    assert config.estimate(content_chars=41, max_tokens=100) == 11 + 2000 + 100


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"tiers": {"pilot": {"per_day": 1}}}, "budgets.tiers: unknown ['pilot']"),
        ({"tiers": {"technician": {"per_week": 1}}}, "unknown ['per_week']"),
        ({"tiers": {"technician": {"per_day": 0}}}, "per_day must be an integer >= 1"),
        ({"callers": {"bob": {"per_day": 1}}}, "name callers as user:<username>"),
        ({"agents": {"compliance": {"weight": 0}}}, "weight must be a number > 0"),
        ({"redis_down": "ignore"}, "redis_down must be 'refuse' or 'allow'"),
        ({"default_max_tokens": 20_000}, "default_max_tokens must be at most 16384"),
        ({"surprise": 1}, "budgets: unknown ['surprise']"),
    ],
)
def test_invalid_budget_tables_stop_the_policy(table: dict[str, Any], message: str) -> None:
    """Each mistake in [budgets] is a PolicyError saying where."""
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        policy_with(table)


def test_packaged_policy_has_budgets_for_every_tier() -> None:
    """The shipped policy gives every rate-limit tier a budget for each window."""
    packaged = Policy.load()
    assert packaged.budgets is not None
    assert set(packaged.budgets.tiers) == set(packaged.rate_limits.tiers)
    assert all(len(windows) == 3 for windows in packaged.budgets.tiers.values())


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
