"""Drill: the orchestrator process is killed (SIGKILL) while it streams an answer.

The orchestrator is a process of the drill's own on a SQLite file; the gateway is served over
HTTP from the test process; the local Azure OpenAI server streams three words, then stalls, and
the drill kills the orchestrator during the stall. It then restarts the orchestrator on the same
database and port and asks, through the gateway, what was stored.

Promised (docs/operations.md, "The orchestrator is down"): the client's stream ends at once
(the gateway drops the connection without a closing chunk, or sends ``event: error``), never
hangs and never ends with ``done``; requests while it is down answer 503 problem+json; the first
request after the restart succeeds; the question is stored; the words streamed before the crash
are stored and, once the answer is stale (no process can still be writing it), read as a
``partial`` answer; a retry with the same ``Idempotency-Key`` is then answered.

The orchestrator runs with short model timeouts and no retries, so that its answers turn stale
within seconds (``orchestrator.answer_liveness.stale_after``: 2.5 s of model call, plus 5 s).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from devstack.procs import free_port
from gateway.app import create_app
from gateway.proxy.assertion import generate_signing_key_pem
from orchestrator.fake_azure import FakeAzureSettings
from orchestrator.fake_azure import create_app as fake_azure_app
from tests.faults.evidence import assert_problem, bearer
from tests.faults.gateways import TokenMinter
from tests.faults.processes import ForkServer, orchestrator_process
from tests.fixtures.azure import FakeAzure, ServerThread
from tests.gateway.harness import settings_for
from tests.gateway.login_stack import serve

pytestmark = [pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

WORDS_BEFORE_STALL = 3
END_TIMEOUT_SECONDS = 10.0
# Longer than the stale bound of the drill's settings (7.5 s), with room for a slow restart.
STALE_WITHIN_SECONDS = 30.0


@dataclass
class Crash:
    """What the client saw around the crash and what the restarted orchestrator holds."""

    deltas: list[str] = field(default_factory=list)
    events_after_kill: list[str] = field(default_factory=list)
    ending: str = ""
    seconds_to_end: float = 0.0
    while_down: httpx.Response | None = None
    first_after_restart: int = 0
    answer_after_restart: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    retry: httpx.Response | None = None


def read_stream(response: httpx.Response, on_delta: Callable[[str], None]) -> tuple[list[str], str]:
    """The stream's event names and how it ended; on_delta gets each delta's data."""
    names: list[str] = []
    event = ""
    try:
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
                names.append(event)
            elif line.startswith("data:") and event == "delta":
                on_delta(line.removeprefix("data:").strip())
    except httpx.RemoteProtocolError:
        return names, "connection dropped"
    except httpx.ReadTimeout:
        return names, "hang"
    return names, "closed"


def answer_of(http: httpx.Client, conversation: str) -> dict[str, Any]:
    """The stored answer of the conversation's only question (empty when there is none)."""
    stored = http.get(f"/api/conversations/{conversation}")
    answers = [m for m in stored.json().get("messages", []) if m["role"] == "assistant"]
    return answers[0] if answers else {}


def messages_once_stale(http: httpx.Client, conversation: str) -> list[dict[str, Any]]:
    """The conversation's messages as soon as its answer no longer reads as ``streaming``.

    The restarted process cannot know the dead one's answer is abandoned before the bound
    passes, so the drill asks again until then (a process of its own: no clock to move).
    """
    deadline = time.monotonic() + STALE_WITHIN_SECONDS
    while True:
        stored = http.get(f"/api/conversations/{conversation}")
        messages: list[dict[str, Any]] = stored.json().get("messages", [])
        streaming = any(m["status"] == "streaming" for m in messages)
        if not streaming or time.monotonic() > deadline:
            return messages
        time.sleep(0.25)


@pytest.fixture(scope="module")
def crash(
    forks: ForkServer,
    keycloak_url: str,
    redis_url: str,
    mint_service_token: TokenMinter,
    tmp_path_factory: pytest.TempPathFactory,
) -> Crash:
    """Runs the crash once and records what the client saw and what was stored."""
    folder = tmp_path_factory.mktemp("orchestrator-crash")
    seen = Crash()
    azure_server = ServerThread(
        fake_azure_app(FakeAzureSettings(control=True, api_key=None)), free_port()
    )
    azure_server.start()
    azure = FakeAzure(azure_server.url)
    gateway_port, orchestrator_port = free_port(), free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    orchestrator = orchestrator_process(
        forks,
        folder,
        orchestrator_port,
        {
            "MRO_ORCHESTRATOR_GATEWAY_JWKS_URL": f"{gateway_url}/.well-known/jwks.json",
            "MRO_ORCHESTRATOR_AZURE_ENDPOINT": azure.base_url,
            "MRO_ORCHESTRATOR_AZURE_API_KEY": "test-only-azure-key",
            "MRO_ORCHESTRATOR_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'orchestrator.db'}",
            "MRO_ORCHESTRATOR_AZURE_TIMEOUT_SECONDS": "2",
            "MRO_ORCHESTRATOR_AZURE_CONNECT_TIMEOUT_SECONDS": "0.5",
            "MRO_ORCHESTRATOR_AZURE_MAX_RETRIES": "0",
            "MRO_ORCHESTRATOR_CLASSIFIER_TIMEOUT_SECONDS": "1",
        },
    )
    settings = settings_for(
        folder,
        public_url=gateway_url,
        keycloak_url=keycloak_url,
        redis_url=redis_url,
        orchestrator_url=orchestrator.url,
        upstream_read_timeout_seconds=60.0,
        assertion_signing_keys=[generate_signing_key_pem()],
    )
    token = bearer(mint_service_token(keycloak_url))
    try:
        with (
            serve(create_app(settings), gateway_port),
            httpx.Client(base_url=gateway_url, headers=token, timeout=END_TIMEOUT_SECONDS) as http,
        ):
            orchestrator.start()
            created = http.post("/api/conversations", json={"title": "crash drill"})
            assert created.status_code == 201, created.text
            conversation = created.json()["id"]
            azure.inject_fault("slow", delay=30, after_chunks=WORDS_BEFORE_STALL)
            key = uuid.uuid4().hex
            ask = {"content": "Where is the APU starter?", "agent": "documentation"}
            killed_at = 0.0

            def on_delta(data: str) -> None:
                nonlocal killed_at
                if killed_at:
                    return
                seen.deltas.append(str(json.loads(data)["content"]))
                if len(seen.deltas) == WORDS_BEFORE_STALL:
                    orchestrator.kill()
                    killed_at = time.monotonic()

            with http.stream(
                "POST",
                f"/api/conversations/{conversation}/messages",
                json=ask,
                headers={"Accept": "text/event-stream", "Idempotency-Key": key},
            ) as stream:
                names, seen.ending = read_stream(stream, on_delta)
            seen.seconds_to_end = time.monotonic() - killed_at
            seen.events_after_kill = names[1 + len(seen.deltas) :]
            seen.while_down = http.get("/api/agents")
            orchestrator.restart()
            seen.first_after_restart = http.get("/api/agents").status_code
            seen.answer_after_restart = answer_of(http, conversation)
            seen.messages = messages_once_stale(http, conversation)
            seen.retry = http.post(
                f"/api/conversations/{conversation}/messages",
                json=ask,
                headers={"Idempotency-Key": key},
            )
    finally:
        orchestrator.kill()
        azure.close()
        azure_server.stop()
    return seen


def test_the_client_stream_ends_promptly_without_done(crash: Crash) -> None:
    """After the kill the client's stream ends within seconds, with an error event or a dropped
    connection, never a hang and never ``done``."""
    assert len(crash.deltas) == WORDS_BEFORE_STALL
    assert crash.ending in ("connection dropped", "closed"), crash.ending
    assert "done" not in crash.events_after_kill
    if crash.ending == "closed":
        assert crash.events_after_kill[-1:] == ["error"], crash.events_after_kill
    assert crash.seconds_to_end < 5, crash.seconds_to_end


def test_requests_while_the_orchestrator_is_down_answer_503(crash: Crash) -> None:
    """A request that cannot reach the orchestrator is a 503 problem, not a 500."""
    assert crash.while_down is not None
    assert_problem(crash.while_down, 503, "upstream_unavailable")


def test_the_first_request_after_the_restart_succeeds(crash: Crash) -> None:
    """The gateway's pooled connections to the dead process do not fail the next request."""
    assert crash.first_after_restart == 200


def test_the_question_survives_the_crash(crash: Crash) -> None:
    """The question was stored before the model was called."""
    questions = [m for m in crash.messages if m["role"] == "user"]
    assert [m["content"] for m in questions] == ["Where is the APU starter?"]


def test_the_words_streamed_before_the_crash_are_stored(crash: Crash) -> None:
    """Every word the client was sent is in the stored answer, right after the restart."""
    assert crash.answer_after_restart["content"].startswith("".join(crash.deltas))
    assert crash.answer_after_restart["status"] in ("streaming", "partial")


def test_the_words_streamed_before_the_crash_are_stored_as_partial(crash: Crash) -> None:
    """The restarted orchestrator holds the streamed words as a partial answer."""
    answers = [m for m in crash.messages if m["role"] == "assistant"]
    assert [m["status"] for m in answers] == ["partial"]
    assert answers[0]["content"].startswith("".join(crash.deltas))


def test_a_retry_with_the_same_idempotency_key_is_answered(crash: Crash) -> None:
    """Retrying the interrupted request with its Idempotency-Key gets an answer, not a 409:
    a new answer in the same row, to the same stored question."""
    assert crash.retry is not None
    assert crash.retry.status_code in (200, 201), crash.retry.text
    exchange = crash.retry.json()
    answer = next(m for m in crash.messages if m["role"] == "assistant")
    question = next(m for m in crash.messages if m["role"] == "user")
    assert exchange["assistant_message"]["id"] == answer["id"]
    assert exchange["user_message"]["id"] == question["id"]
    assert exchange["assistant_message"]["status"] == "complete"
