"""Redis down: the in-process fallback keeps limiting, reports the outage once, and hands back."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis

from tests.fixtures.stack import RedisServer
from tests.gateway.harness import (
    FakeMonotonic,
    ListAuditSink,
    RecordingUpstream,
    in_process_app,
    running,
    settings_for,
)

pytestmark = pytest.mark.redis

TECH = {"Authorization": "Bearer tech-token"}
MESSAGES = "/api/conversations/c1/messages"


async def test_redis_outage_falls_back_and_recovers(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """With Redis stopped requests are still limited (never a 500), the outage is audited once,
    and checks return to Redis once it answers again."""
    clock = FakeMonotonic()
    audit = ListAuditSink()
    settings = settings_for(tmp_path, redis_url=redis_server.url)
    app = in_process_app(
        tmp_path,
        redis_server.url,
        RecordingUpstream(),
        settings=settings,
        audit_sink=audit,
        monotonic=clock,
        key_prefix="fallback",
    )
    async with running(app) as http:
        assert (await http.get("/api/agents", headers=TECH)).status_code == 200
        redis_server.stop()
        during = [
            (await http.post(MESSAGES, headers=TECH, json={"content": "q"})).status_code
            for _ in range(11)
        ]
        metrics = (await http.get("/metrics")).text
        redis_server.start()
        clock.advance(5)
        after = await http.get("/api/agents", headers=TECH)
    assert during == [201] * 10 + [429]
    assert audit.actions().count("ratelimit.fallback") == 1
    assert "mro_gateway_ratelimit_fallback_total 12.0" in metrics  # 11 posts and this scrape
    assert "mro_gateway_ratelimit_degraded 1.0" in metrics
    assert after.status_code == 200
    assert "ratelimit.recovered" in audit.actions()
    keys = Redis.from_url(redis_server.url).keys("fallback:*")
    assert keys, "the check after recovery went to Redis"
