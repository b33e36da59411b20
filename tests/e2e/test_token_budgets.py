"""Token budgets through the whole stack: two gateway processes on one Redis, the orchestrator and
the local Azure OpenAI server, with real Keycloak users.

The gateways load a policy with small budgets (and request rate limits out of the way) and share
their assertion signing key and database, as replicas behind one Service do.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from devstack.keycloak import GATEWAY_CLIENT_ID, client_secret
from devstack.procs import Service, free_port
from devstack.services import start_fake_azure, start_gateway, start_orchestrator
from gateway.proxy.assertion import generate_signing_key_pem
from tests.fixtures.azure import FakeAzure

pytestmark = [pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

TokenSource = Callable[[str], dict[str, Any]]

PACKAGED_POLICY = Path(__file__).resolve().parents[2] / "gateway" / "policy" / "policy.toml"
QUESTION = "Where is the AMM task for the hydraulic accumulator precharge check?"
MAX_TOKENS = 50
# prompt_overhead_tokens = 0 below, so this is exactly what each question reserves.
ESTIMATE = math.ceil(len(QUESTION) / 4) + MAX_TOKENS
FITS = 5
BUDGETS = f"""
[budgets]
default_max_tokens = {MAX_TOKENS}
prompt_overhead_tokens = 0
chars_per_token = 4

[budgets.tiers.technician]
per_day = {FITS * ESTIMATE + ESTIMATE - 1}

[budgets.tiers.engineer]
per_day = 1000000

[budgets.tiers.manager]
per_day = 1000000
"""
BUDGET_PREFIX = "mro:rl:{tb}"


@dataclass
class BudgetStack:
    gateways: tuple[str, str]
    azure: FakeAzure
    redis: redis.Redis


def _policy_file(folder: Path) -> Path:
    """The packaged policy, its budgets replaced, its rate limits a hundred times higher."""
    text = PACKAGED_POLICY.read_text("utf-8")
    text = text[: text.index("# --- Token budgets")]
    text = re.sub(r'"(\d+)/minute"', lambda m: f'"{int(m.group(1)) * 100}/minute"', text)
    path = folder / "policy.toml"
    path.write_text(text + BUDGETS, "utf-8")
    return path


@pytest.fixture(scope="module")
def budget_stack(
    keycloak: Service, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BudgetStack]:
    """Local Azure server, orchestrator and two gateways sharing key, database and Redis."""
    state = tmp_path_factory.mktemp("budget-stack")
    ports = (free_port(), free_port())
    urls = (f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}")
    shared = {
        "MRO_GATEWAY_POLICY_FILE": str(_policy_file(state)),
        "MRO_GATEWAY_ASSERTION_SIGNING_KEYS": json.dumps([generate_signing_key_pem()]),
        "MRO_GATEWAY_SESSION_COOKIE_SECURE": "false",
    }
    azure_url = f"http://127.0.0.1:{free_port()}"
    orchestrator_url = f"http://127.0.0.1:{free_port()}"

    def gateway(port: int) -> Service:
        return start_gateway(
            port,
            keycloak_url=keycloak.url,
            redis_url=redis_url,
            orchestrator_url=orchestrator_url,
            client_secret=client_secret(GATEWAY_CLIENT_ID),
            state_dir=state,
            extra=shared,
        )

    # Nothing waits for another at start (each only needs its address), so start them together.
    starts: list[Callable[[], Service]] = [
        lambda: start_fake_azure(int(azure_url.rsplit(":", 1)[1])),
        lambda: start_orchestrator(
            int(orchestrator_url.rsplit(":", 1)[1]),
            gateway_url=urls[0],
            azure_url=azure_url,
            state_dir=state,
        ),
        lambda: gateway(ports[0]),
        lambda: gateway(ports[1]),
    ]
    started: list[Service] = []
    try:
        with ThreadPoolExecutor(max_workers=len(starts)) as pool:
            futures = [pool.submit(start) for start in starts]
            for future in futures:
                with contextlib.suppress(Exception):
                    started.append(future.result())
            for future in futures:
                future.result()  # re-raise the first failure, after keeping what started
        control = FakeAzure(azure_url)
        client = redis.Redis.from_url(redis_url)
        try:
            yield BudgetStack(urls, control, client)
        finally:
            control.close()
            client.close()
    finally:
        for service in reversed(started):
            service.stop()


def _auth(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _subject(tokens: dict[str, Any]) -> str:
    payload = tokens["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    subject: str = claims["sub"]
    return subject


def _fresh(stack: BudgetStack, subject: str) -> None:
    """Forget the budget counters of subject (earlier runs on a reused Redis count today too)."""
    for key in stack.redis.scan_iter(f"{BUDGET_PREFIX}:user:{subject}:*"):
        stack.redis.delete(key)
    stack.azure.reset()


def _spent(stack: BudgetStack, subject: str) -> int:
    (key,) = list(stack.redis.scan_iter(f"{BUDGET_PREFIX}:user:{subject}:day:*"))
    return int(stack.redis.get(key) or 0)


def _conversation(client: httpx.Client) -> str:
    created = client.post("/api/conversations", json={"title": "Budget"})
    assert created.status_code == 201, created.text
    conversation_id: str = created.json()["id"]
    return conversation_id


def _ask(client: httpx.Client, conversation_id: str, *, stream: bool = False) -> httpx.Response:
    return client.post(
        f"/api/conversations/{conversation_id}/messages",
        json={"content": QUESTION, "agent": "documentation"},
        headers={"Accept": "text/event-stream"} if stream else {},
    )


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines.get("data", "{}"))))
    return events


def test_parallel_requests_on_two_gateways_stop_exactly_at_the_budget(
    budget_stack: BudgetStack, user_tokens: TokenSource
) -> None:
    """Twenty parallel questions from one technician over two gateway processes: exactly the
    five its day budget holds reach the model, the rest are 429; a manager still passes."""
    tech, manager = user_tokens("tech1"), user_tokens("mgr1")
    _fresh(budget_stack, _subject(tech))
    usage = {"prompt_tokens": ESTIMATE - MAX_TOKENS, "completion_tokens": MAX_TOKENS}
    budget_stack.azure.queue_response(usage=usage, repeat=21)
    clients = [
        httpx.Client(base_url=url, headers=_auth(tech), timeout=30) for url in budget_stack.gateways
    ]
    try:
        conversations = [_conversation(clients[n % 2]) for n in range(20)]
        with ThreadPoolExecutor(max_workers=20) as pool:
            responses = list(pool.map(lambda n: _ask(clients[n % 2], conversations[n]), range(20)))
    finally:
        for client in clients:
            client.close()
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * FITS + [429] * (20 - FITS), [r.text for r in responses]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["budget"] == "user:day"
    assert int(refused.headers["retry-after"]) > 0
    assert len(budget_stack.azure.calls()) == FITS
    assert _spent(budget_stack, _subject(tech)) == FITS * ESTIMATE

    with httpx.Client(
        base_url=budget_stack.gateways[1], headers=_auth(manager), timeout=30
    ) as http:
        assert _ask(http, _conversation(http)).status_code == 201


def test_usage_report_matches_what_the_model_server_billed(
    budget_stack: BudgetStack, user_tokens: TokenSource
) -> None:
    """Plain and streamed answers through both gateways are recorded to the token as the local
    Azure server reported them, and a manager reads them back per person and agent."""
    engineer = user_tokens("eng1")
    subject = _subject(engineer)
    _fresh(budget_stack, subject)
    scripted = [(310, 41), (128, 7), (77, 30)]
    for prompt, completion in scripted:
        budget_stack.azure.queue_response(
            usage={"prompt_tokens": prompt, "completion_tokens": completion}
        )
    reported = []
    for n, url in enumerate((*budget_stack.gateways, budget_stack.gateways[0])):
        with httpx.Client(base_url=url, headers=_auth(engineer), timeout=30) as http:
            response = _ask(http, _conversation(http), stream=n == 2)
        assert response.status_code in (200, 201), response.text
        if n == 2:
            events = _events(response.text)
            assert events[-1][0] == "done"
            reported.append(events[-1][1]["usage"]["total_tokens"])
        else:
            reported.append(response.json()["assistant_message"]["usage"]["total_tokens"])
    calls = budget_stack.azure.calls()
    assert [call.status for call in calls] == [200, 200, 200]
    billed = sum(prompt + completion for prompt, completion in scripted)
    assert sum(reported) == billed

    manager = _auth(user_tokens("mgr1"))
    report: dict[str, Any] = {}
    with httpx.Client(base_url=budget_stack.gateways[0], headers=manager, timeout=30) as http:
        deadline = time.monotonic() + 10
        # The other gateway process writes its usage within about a second.
        while time.monotonic() < deadline:
            report = http.get("/api/admin/usage", params={"subject": subject}).json()
            if report.get("total_tokens") == billed:
                break
            time.sleep(0.1)
    (item,) = report["items"]
    assert (item["label"], item["agent"], item["requests"]) == ("eng1", "documentation", 3)
    assert item["prompt_tokens"] == sum(p for p, _ in scripted)
    assert item["completion_tokens"] == sum(c for _, c in scripted)
    assert item["total_tokens"] == billed
    assert _spent(budget_stack, subject) == billed


def test_stream_cut_off_upstream_is_settled_not_leaked(
    budget_stack: BudgetStack, user_tokens: TokenSource
) -> None:
    """A streamed answer the model server cuts midway is charged its reservation at once, and
    no reservation is left pending."""
    engineer = user_tokens("eng1")
    subject = _subject(engineer)
    _fresh(budget_stack, subject)
    budget_stack.azure.inject_fault("cut", after_chunks=2)
    with httpx.Client(
        base_url=budget_stack.gateways[1], headers=_auth(engineer), timeout=30
    ) as http:
        response = _ask(http, _conversation(http), stream=True)
    kinds = [kind for kind, _ in _events(response.text)]
    assert "done" not in kinds, kinds
    deadline = time.monotonic() + 5
    # The gateway settles right after the last byte is sent, in its own process.
    while budget_stack.redis.zcard(f"{BUDGET_PREFIX}:deadlines") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert budget_stack.redis.zcard(f"{BUDGET_PREFIX}:deadlines") == 0
    assert _spent(budget_stack, subject) == ESTIMATE
