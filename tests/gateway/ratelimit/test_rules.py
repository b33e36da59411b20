"""Rate limiting through the pipeline: exact under concurrency, shared across instances, per
address for public routes and invalid credentials."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from limits import parse

from gateway.identity import AuthMethod, Identity
from gateway.policy.policy_file import Policy
from gateway.ratelimit.rules import Limit, RateLimitRules, policy_header
from tests.gateway.harness import (
    TOKENS,
    ListAuditSink,
    RecordingUpstream,
    TableAuthenticator,
    in_process_app,
    running,
    settings_for,
)

TECH = {"Authorization": "Bearer tech-token"}
MESSAGES = "/api/conversations/c1/messages"


def test_tier_and_llm_limits_follow_the_roles() -> None:
    """The caller's tier picks its limit; llm routes add the tier's llm limit."""
    rules = RateLimitRules(
        "5/minute",
        "2/minute",
        {"technician": "120/minute"},
        {"technician": "10/minute"},
        lambda roles: "technician" if "technician" in roles else None,
    )
    tech = Identity("t", AuthMethod.JWT, frozenset({"technician"}))
    nobody = Identity("n", AuthMethod.JWT, frozenset())
    assert rules.for_identity(tech, llm=False) == ("sub:t", (Limit.parse("tier", "120/minute"),))
    _key, limits = rules.for_identity(tech, llm=True)
    assert policy_header(limits) == '"tier";q=120;w=60, "llm";q=10;w=60'
    assert rules.for_identity(nobody, llm=True)[1] == rules.anonymous
    assert rules.for_client("198.51.100.1") == ("ip:198.51.100.1", rules.anonymous)


@pytest.mark.redis
async def test_fifty_concurrent_requests_against_ten_let_exactly_ten_pass(
    tmp_path: Path, redis_url: str
) -> None:
    """Counting is atomic: 50 parallel llm calls against 10/minute make 10 successes, 40 429s,
    and the burst is audited once."""
    audit = ListAuditSink()
    app = in_process_app(tmp_path, redis_url, RecordingUpstream(), audit_sink=audit)
    async with running(app) as http:
        responses = await asyncio.gather(
            *(http.post(MESSAGES, headers=TECH, json={"content": "q"}) for _ in range(50))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 10
    assert statuses.count(429) == 40
    refused = next(r for r in responses if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit"].endswith('"llm";r=0;t=60')
    assert refused.json()["code"] == "rate_limited"
    assert audit.actions() == ["ratelimit.exceeded"]
    assert audit.events[0].reason == "llm"


@pytest.mark.redis
async def test_two_instances_on_one_redis_share_the_limit(tmp_path: Path, redis_url: str) -> None:
    """A burst split across two gateway instances is counted once."""
    prefix = f"shared-{uuid.uuid4().hex}"
    first = in_process_app(tmp_path / "a", redis_url, RecordingUpstream(), key_prefix=prefix)
    second = in_process_app(tmp_path / "b", redis_url, RecordingUpstream(), key_prefix=prefix)
    async with running(first) as one, running(second) as two:
        responses = await asyncio.gather(
            *(
                (one if n % 2 else two).post(MESSAGES, headers=TECH, json={"content": "q"})
                for n in range(30)
            )
        )
    assert sum(r.status_code == 201 for r in responses) == 10


@pytest.mark.redis
async def test_forwarded_for_rotation_does_not_escape_the_address_limit(
    tmp_path: Path, redis_url: str
) -> None:
    """An untrusted peer's X-Forwarded-For is ignored: rotating it still hits one limit."""
    allowed = parse(Policy.load().rate_limits.anonymous).amount
    app = in_process_app(tmp_path, redis_url, RecordingUpstream())
    async with running(app, client=("198.51.100.20", 1234)) as http:
        statuses = [
            (
                await http.get(
                    "/healthz", headers={"X-Forwarded-For": f"10.9.{n // 250}.{n % 250}"}
                )
            ).status_code
            for n in range(allowed + 1)
        ]
    assert statuses[:allowed] == [200] * allowed
    assert statuses[allowed] == 429


@pytest.mark.redis
async def test_trusted_proxy_forwarded_address_is_the_client(
    tmp_path: Path, redis_url: str
) -> None:
    """Behind a trusted proxy the right-most untrusted X-Forwarded-For entry is the client."""
    upstream = RecordingUpstream()
    settings = settings_for(tmp_path, redis_url=redis_url, trusted_proxies=["203.0.113.0/24"])
    app = in_process_app(tmp_path, redis_url, upstream, settings=settings)
    async with running(app, client=("203.0.113.5", 1234)) as http:
        response = await http.get(
            "/api/agents", headers={**TECH, "X-Forwarded-For": "6.6.6.6, 198.51.100.44"}
        )
    assert response.status_code == 200
    assert upstream.received[0].header("x-forwarded-for") == ["198.51.100.44"]


@pytest.mark.redis
async def test_invalid_credential_flood_is_cut_before_verification(
    tmp_path: Path, redis_url: str
) -> None:
    """After 20 bad tokens an address gets 429 for bad tokens, a repeated one not even verified,
    while a valid token from the same address still passes."""
    authenticator = TableAuthenticator(TOKENS)
    audit = ListAuditSink()
    app = in_process_app(
        tmp_path, redis_url, RecordingUpstream(), authenticators=[authenticator], audit_sink=audit
    )
    async with running(app, client=("198.51.100.66", 1)) as attacker:
        statuses = [
            (
                await attacker.get("/api/agents", headers={"Authorization": f"Bearer bad-{n}"})
            ).status_code
            for n in [*range(20), *[19] * 10]
        ]
        verified = authenticator.verifications
        valid_from_attacker = await attacker.get("/api/agents", headers=TECH)
        new_bad = await attacker.get("/api/agents", headers={"Authorization": "Bearer bad-new"})
    assert statuses[:20] == [401] * 20
    assert statuses[20:] == [429] * 10
    assert verified == 20
    assert valid_from_attacker.status_code == 200
    assert new_bad.status_code == 429
    assert new_bad.headers["ratelimit-policy"] == '"invalid-credentials";q=20;w=60'
    assert audit.actions().count("auth.token_rejected") == 20
