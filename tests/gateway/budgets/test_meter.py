"""Token budgets on the wire: estimate, reserve, read usage from JSON and SSE answers, settle."""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import threading
import tomllib
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.app import create_app
from gateway.policy.policy_file import Policy
from gateway.proxy.upstream import AiohttpUpstreamClient, HttpxUpstreamClient, Timeouts
from tests.gateway.harness import (
    TOKENS,
    ListAuditSink,
    TableAuthenticator,
    running,
    serve,
    settings_for,
)
from tests.max_tokens_cases import REFUSED_MAX_TOKENS, message_body

pytestmark = pytest.mark.redis

TECH = {"Authorization": "Bearer tech-token"}
MANAGER = {"Authorization": "Bearer manager-token"}
SSE = {"Accept": "text/event-stream"}
PATH = "/api/conversations/c1/messages"
# With the budgets below a 40-character question is estimated at 10 + 0 + 100 tokens.
QUESTION = {"content": "Where is the hydraulic accumulator? " + "x" * 4}
ESTIMATE = 110
BUDGETS: dict[str, Any] = {
    "default_max_tokens": 100,
    "prompt_overhead_tokens": 0,
    "chars_per_token": 4,
    "tiers": {
        "technician": {"per_day": 1000},
        "manager": {"per_day": 100_000},
    },
    "agents": {"compliance": {"weight": 2.0}},
}
NOON = datetime(2025, 5, 14, 12, 0, tzinfo=UTC).timestamp()


def policy_with(budgets: dict[str, Any]) -> Policy:
    """The packaged policy with these budgets and request rate limits out of the way."""
    text = importlib.resources.files("gateway.policy").joinpath("policy.toml").read_text("utf-8")
    data = tomllib.loads(text)
    data["budgets"] = budgets
    for table in ("tiers", "llm"):
        # A hundred times the packaged limits: out of the way, and tiers keep their ranking.
        for role, text in data["rate_limits"][table].items():
            amount, _, per = text.partition("/")
            data["rate_limits"][table][role] = f"{int(amount) * 100}/{per}"
    return Policy.from_dict(data, environment="development")


@dataclass
class Answer:
    """What the stand-in orchestrator answers to one message."""

    usage: dict[str, int] | None = field(
        default_factory=lambda: {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}
    )
    agent: str = "documentation"
    status: int = 201
    end: str = "done"  # streams: done, error (cut off upstream), hold (until released)
    replayed: bool = False
    classification_usage: dict[str, int] | None = None


@dataclass
class StandInOrchestrator:
    """Answers messages as the orchestrator does, from a queue of scripted answers."""

    answers: deque[Answer] = field(default_factory=deque)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def queue(self, *answers: Answer) -> None:
        self.answers.extend(answers)

    async def messages(self, request: Request) -> Response:
        self.bodies.append(json.loads(await request.body()))
        answer = self.answers.popleft() if self.answers else Answer()
        headers = {"idempotent-replayed": "true"} if answer.replayed else {}
        if answer.status >= 400:
            problem = {"status": answer.status, "code": "agent_not_allowed"}
            return JSONResponse(problem, status_code=answer.status)
        if "text/event-stream" not in request.headers.get("accept", ""):
            message = {"content": "Check AMM 29-11.", "agent": answer.agent, "usage": answer.usage}
            if answer.classification_usage:
                message["classification_usage"] = answer.classification_usage
            body = {"user_message": {}, "assistant_message": message}
            return JSONResponse(body, status_code=201, headers=headers)
        return StreamingResponse(
            self._events(answer), media_type="text/event-stream", headers=headers
        )

    async def _events(self, answer: Answer) -> AsyncIterator[bytes]:
        meta: dict[str, Any] = {"agent": answer.agent, "confidence": 0.9, "message_id": "m1"}
        if answer.classification_usage:
            meta["classification_usage"] = answer.classification_usage
        yield b"event: meta\r\ndata: " + json.dumps(meta).encode() + b"\r\n\r\n"
        yield b'event: delta\ndata: {"content": "Check "}\n\nevent: delta\ndata: {"con'
        yield b'tent": "AMM 29-11."}\n\n'
        if answer.end == "hold":
            await asyncio.to_thread(self.release.wait, 10)
        if answer.end == "error":
            yield b'event: error\ndata: {"status": 502, "code": "llm_bad_response"}\n\n'
            return
        done = {"message_id": "m1", "usage": answer.usage, "partial": False}
        yield b"event: done\ndata: " + json.dumps(done).encode() + b"\n\n"

    def app(self) -> Starlette:
        route = Route("/api/conversations/{cid}/messages", self.messages, methods=["POST"])
        return Starlette(routes=[route])


def gateway_app(
    tmp_path: Path,
    redis_url: str,
    orchestrator: StandInOrchestrator,
    *,
    budgets: dict[str, Any] | None = None,
    prefix: str | None = None,
    upstream_url: str | None = None,
    **overrides: Any,
) -> FastAPI:
    """The gateway with the table authenticator, in front of the stand-in orchestrator."""
    settings = settings_for(
        tmp_path,
        redis_url=redis_url,
        **({"orchestrator_url": upstream_url} if upstream_url else {}),
    )
    upstream = (
        AiohttpUpstreamClient(Timeouts(read=10.0), 10)
        if upstream_url
        else HttpxUpstreamClient(Timeouts(), transport=httpx.ASGITransport(app=orchestrator.app()))
    )
    options: dict[str, Any] = {
        "policy": policy_with(BUDGETS if budgets is None else budgets),
        "authenticators": [TableAuthenticator(TOKENS)],
        "upstream": upstream,
        "key_prefix": prefix or f"test-{uuid.uuid4().hex}",
        "clock": lambda: NOON,
    }
    options.update(overrides)
    return create_app(settings, **options)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def spent(redis: Redis, prefix: str, partition: str, window: str = "day") -> int:
    """Tokens counted in partition's (only) window key."""
    keys = [key async for key in redis.scan_iter(f"{prefix}:{{tb}}:{partition}:{window}:*")]
    assert len(keys) <= 1, keys
    return int(await redis.get(keys[0]) or 0) if keys else 0


async def pending(redis: Redis, prefix: str) -> int:
    return int(await redis.zcard(f"{prefix}:{{tb}}:deadlines"))


async def report(http: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await http.get("/api/admin/usage", headers=MANAGER, params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


# --- through the gateway ----------------------------------------------------------------------


async def test_plain_answer_is_settled_with_its_real_usage(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    """The estimate is reserved, then replaced by the reported 42 tokens; the answer's agent,
    tokens and the caller are recorded; max_tokens is added to the forwarded body."""
    orchestrator = StandInOrchestrator()
    prefix = f"test-{uuid.uuid4().hex}"
    app = gateway_app(tmp_path, redis_url, orchestrator, prefix=prefix)
    async with running(app) as http:
        response = await http.post(PATH, headers=TECH, json=QUESTION)
        usage = await report(http)
        metrics = (await http.get("/metrics")).text
    assert response.status_code == 201
    assert orchestrator.bodies == [{**QUESTION, "max_tokens": 100}]
    assert await spent(redis, prefix, "user:tech-1") == 42
    assert await pending(redis, prefix) == 0
    assert '"tokens-user-day";q=1000;w=86400;qu="tokens"' in response.headers["ratelimit-policy"]
    assert f'"tokens-user-day";r={1000 - ESTIMATE};t=43200' in response.headers["ratelimit"]
    (item,) = usage["items"]
    assert item == {
        "subject": "tech-1",
        "kind": "user",
        "label": "tech1",
        "agent": "documentation",
        "requests": 1,
        "unmetered": 0,
        "prompt_tokens": 30,
        "completion_tokens": 12,
        "total_tokens": 42,
        "charged_tokens": 42,
    }
    assert 'mro_gateway_llm_tokens_total{agent="documentation",tier="technician"} 42.0' in metrics


async def test_streamed_answer_is_counted_with_the_usage_of_its_done_event(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    """An SSE answer passes through whole and is charged the usage of its done event."""
    orchestrator = StandInOrchestrator()
    orchestrator.queue(Answer(usage={"prompt_tokens": 50, "completion_tokens": 17}))
    prefix = f"test-{uuid.uuid4().hex}"
    app = gateway_app(tmp_path, redis_url, orchestrator, prefix=prefix)
    async with running(app) as http:
        response = await http.post(PATH, headers={**TECH, **SSE}, json=QUESTION)
        usage = await report(http)
    assert response.status_code == 200
    assert response.text.count("event: delta") == 2
    assert await spent(redis, prefix, "user:tech-1") == 67
    assert usage["total_tokens"] == 67


async def test_stream_cut_off_upstream_is_settled_at_its_reservation(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    """A stream that ends without usage keeps its reservation as the charge and leaves
    nothing pending; it is recorded as unmetered."""
    orchestrator = StandInOrchestrator()
    orchestrator.queue(Answer(end="error"))
    prefix = f"test-{uuid.uuid4().hex}"
    app = gateway_app(tmp_path, redis_url, orchestrator, prefix=prefix)
    async with running(app) as http:
        response = await http.post(PATH, headers={**TECH, **SSE}, json=QUESTION)
        usage = await report(http)
    assert "event: error" in response.text
    assert await spent(redis, prefix, "user:tech-1") == ESTIMATE
    assert await pending(redis, prefix) == 0
    assert (usage["items"][0]["unmetered"], usage["charged_tokens"]) == (1, ESTIMATE)


async def test_client_leaving_mid_stream_is_settled_not_leaked(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    """A client that closes the stream early still has its reservation settled at once."""
    orchestrator = StandInOrchestrator()
    orchestrator.queue(Answer(end="hold"))
    prefix = f"test-{uuid.uuid4().hex}"
    with serve(orchestrator.app()) as upstream_url:
        app = gateway_app(
            tmp_path, redis_url, orchestrator, prefix=prefix, upstream_url=upstream_url
        )
        with serve(app, lifespan="on") as url:
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                async with http.stream(
                    "POST", PATH, headers={**TECH, **SSE}, json=QUESTION
                ) as response:
                    assert b"event: meta" in await anext(response.aiter_raw())
                for _ in range(100):  # the gateway notices the disconnect asynchronously
                    if await pending(redis, prefix) == 0:
                        break
                    await asyncio.sleep(0.05)
            orchestrator.release.set()
    assert await pending(redis, prefix) == 0
    assert await spent(redis, prefix, "user:tech-1") == ESTIMATE


async def test_technician_over_budget_is_refused_while_a_manager_is_not(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    """Once a technician's day budget cannot hold the estimate, 429 token_budget_exceeded names
    user:day, with Retry-After to midnight UTC and r=0 for what is left; warnings come from 80 %
    on; a manager asking the same passes."""
    orchestrator = StandInOrchestrator()
    orchestrator.queue(*[Answer(usage={"prompt_tokens": 10, "completion_tokens": 90})] * 9)
    audit = ListAuditSink()
    prefix = f"test-{uuid.uuid4().hex}"
    app = gateway_app(tmp_path, redis_url, orchestrator, prefix=prefix, audit_sink=audit)
    async with running(app) as http:
        passed = [await http.post(PATH, headers=TECH, json=QUESTION) for _ in range(9)]
        refused = await http.post(PATH, headers=TECH, json=QUESTION)
        manager = await http.post(PATH, headers=MANAGER, json=QUESTION)
    assert [r.status_code for r in passed] == [201] * 9
    warnings = [r.headers.get("mro-budget-warning") for r in passed]
    assert warnings == [None] * 7 + ["user:day 81%", "user:day 91%"]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert (problem["code"], problem["budget"], problem["status"]) == (
        "token_budget_exceeded",
        "user:day",
        429,
    )
    assert "user:day" in problem["detail"]
    assert refused.headers["retry-after"] == "43200"
    assert '"tokens-user-day";r=100;t=43200' in refused.headers["ratelimit"]
    assert manager.status_code == 201
    assert len(orchestrator.bodies) == 10
    assert await spent(redis, prefix, "user:tech-1") == 900
    assert "budget.exceeded" in audit.actions()


async def test_budget_resets_at_the_window_edge(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    """Refused at 23:59:59 UTC, the same request passes a second later, in the new day."""
    now = [datetime(2025, 5, 14, 23, 59, 59, tzinfo=UTC).timestamp()]
    orchestrator = StandInOrchestrator()
    orchestrator.queue(Answer(usage={"prompt_tokens": 0, "completion_tokens": 950}))
    app = gateway_app(tmp_path, redis_url, orchestrator, clock=lambda: now[0])
    async with running(app) as http:
        assert (await http.post(PATH, headers=TECH, json=QUESTION)).status_code == 201
        refused = await http.post(PATH, headers=TECH, json=QUESTION)
        now[0] += 1
        again = await http.post(PATH, headers=TECH, json=QUESTION)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert again.status_code == 201


async def test_agent_weights_price_the_reservation_and_the_charge(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    """Without a named agent a manager reserves at the dearest agent allowed (compliance, 2x);
    the charge uses the weight of the agent that answered; a named agent is reserved at its own."""
    orchestrator = StandInOrchestrator()
    orchestrator.queue(Answer(agent="compliance"), Answer(agent="documentation"))
    prefix = f"test-{uuid.uuid4().hex}"
    app = gateway_app(tmp_path, redis_url, orchestrator, prefix=prefix)
    async with running(app) as http:
        compliance = await http.post(PATH, headers=MANAGER, json=QUESTION)
        named = await http.post(PATH, headers=MANAGER, json={**QUESTION, "agent": "documentation"})
        usage = await report(http, group_by="agent")
    assert f'"tokens-user-day";r={100_000 - 2 * ESTIMATE};' in compliance.headers["ratelimit"]
    assert f'"tokens-user-day";r={100_000 - 84 - ESTIMATE};' in named.headers["ratelimit"]
    assert await spent(redis, prefix, "user:mgr-1") == 84 + 42
    charged = {item["agent"]: item["charged_tokens"] for item in usage["items"]}
    assert charged == {"compliance": 84, "documentation": 42}


async def test_classification_tokens_count_when_the_orchestrator_reports_them(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    """classification_usage (meta event or assistant message) is added to the answer's usage."""
    orchestrator = StandInOrchestrator()
    routing = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    orchestrator.queue(Answer(classification_usage=routing), Answer(classification_usage=routing))
    prefix = f"test-{uuid.uuid4().hex}"
    app = gateway_app(tmp_path, redis_url, orchestrator, prefix=prefix)
    async with running(app) as http:
        await http.post(PATH, headers=TECH, json=QUESTION)
        await http.post(PATH, headers={**TECH, **SSE}, json=QUESTION)
        usage = await report(http)
    assert usage["total_tokens"] == 2 * (42 + 25)
    assert await spent(redis, prefix, "user:tech-1") == 2 * (42 + 25)


async def test_errors_and_replays_cost_nothing(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    """An error answer releases the reservation; a replayed answer is not charged again."""
    orchestrator = StandInOrchestrator()
    orchestrator.queue(Answer(status=403), Answer(replayed=True))
    prefix = f"test-{uuid.uuid4().hex}"
    app = gateway_app(tmp_path, redis_url, orchestrator, prefix=prefix)
    async with running(app) as http:
        denied = await http.post(PATH, headers=TECH, json=QUESTION)
        replayed = await http.post(PATH, headers=TECH, json=QUESTION)
        usage = await report(http)
    assert (denied.status_code, replayed.status_code) == (403, 201)
    assert await spent(redis, prefix, "user:tech-1") == 0
    assert await pending(redis, prefix) == 0
    assert usage["items"] == []


@pytest.mark.parametrize("max_tokens", REFUSED_MAX_TOKENS.values(), ids=REFUSED_MAX_TOKENS.keys())
async def test_a_max_tokens_the_orchestrator_refuses_is_422_before_any_reservation(
    tmp_path: Path, redis_url: str, redis: Redis, max_tokens: str
) -> None:
    """A max_tokens other than a JSON integer from 1 to 16,384 is a 422 problem naming the field:
    nothing reserved, charged or forwarded."""
    orchestrator = StandInOrchestrator()
    prefix = f"test-{uuid.uuid4().hex}"
    app = gateway_app(tmp_path, redis_url, orchestrator, prefix=prefix)
    async with running(app) as http:
        response = await http.post(
            PATH,
            headers={**TECH, "Content-Type": "application/json"},
            content=message_body(max_tokens),
        )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert [error["loc"] for error in problem["errors"]] == [["body", "max_tokens"]]
    assert 'qu="tokens"' not in response.headers.get("ratelimit-policy", "")
    assert orchestrator.bodies == []
    assert await spent(redis, prefix, "user:tech-1") == 0
    assert await pending(redis, prefix) == 0


async def test_redis_down_refuses_llm_calls_or_lets_them_through_as_configured(
    tmp_path: Path, redis_server: Any
) -> None:
    """With redis_down = "refuse" an LLM call is a 503 budget_unavailable, never a 500; with
    "allow" it is forwarded and its usage still recorded."""
    orchestrator = StandInOrchestrator()
    refuse = gateway_app(tmp_path, redis_server.url, orchestrator)
    allow = gateway_app(
        tmp_path / "allow",
        redis_server.url,
        orchestrator,
        budgets={**BUDGETS, "redis_down": "allow"},
    )
    with redis_server.stopped():
        async with running(refuse) as http:
            refused = await http.post(PATH, headers=TECH, json=QUESTION)
        async with running(allow) as http:
            allowed = await http.post(PATH, headers=TECH, json=QUESTION)
            usage = await report(http)
    assert refused.status_code == 503
    assert refused.json()["code"] == "budget_unavailable"
    assert allowed.status_code == 201
    assert usage["total_tokens"] == 42
