"""AzureLLMClient through the real openai SDK against the local Azure OpenAI server."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from devstack.procs import free_port
from orchestrator.llm import (
    AzureLLMClient,
    ChatMessage,
    Completion,
    LLMBadResponse,
    LLMError,
    LLMRejected,
    LLMSettings,
    LLMTimeout,
    LLMUnavailable,
    StreamDelta,
    StreamEnd,
    Usage,
)
from tests.fixtures.azure import API_VERSION, DEPLOYMENT, FakeAzure

MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are the Documentation assistant of an MRO."},
    {"role": "user", "content": "Which IPC figure shows the nose wheel axle?"},
]


class RecordingSleep:
    """Stands in for asyncio.sleep: remembers the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def connect(azure: FakeAzure, sleeps: RecordingSleep) -> AsyncIterator[Any]:
    """A factory of clients for the local server; all are closed after the test."""
    clients: list[AzureLLMClient] = []

    def make(**overrides: Any) -> AzureLLMClient:
        token_provider = overrides.pop("token_provider", None)
        settings = azure.llm_settings(**overrides)
        client = AzureLLMClient(settings, token_provider=token_provider, sleep=sleeps)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def llm(connect: Any) -> AzureLLMClient:
    client: AzureLLMClient = connect()
    return client


async def collect(client: AzureLLMClient, sink: list[StreamDelta | StreamEnd]) -> None:
    async for event in client.stream(MESSAGES):
        sink.append(event)


def text_of(events: list[StreamDelta | StreamEnd]) -> str:
    return "".join(e.content for e in events if isinstance(e, StreamDelta))


async def test_complete_returns_content_usage_and_finish_reason(
    llm: AzureLLMClient, azure: FakeAzure
) -> None:
    """A non-streamed answer comes back with its text, usage and finish reason."""
    azure.queue_response("See IPC 32-45-01.", usage={"prompt_tokens": 10, "completion_tokens": 2})
    completion = await llm.complete(MESSAGES)
    assert completion == Completion("See IPC 32-45-01.", Usage(10, 2, 12), "stop")


async def test_request_names_deployment_version_key_and_limits(
    llm: AzureLLMClient, azure: FakeAzure
) -> None:
    """The request goes to the deployment with the api-version, the api-key and max tokens."""
    await llm.complete(MESSAGES, max_tokens=42)
    await llm.complete(MESSAGES)
    first, second = azure.calls()
    assert (first.deployment, first.api_version, first.auth) == (DEPLOYMENT, API_VERSION, "api-key")
    assert first.messages == MESSAGES
    assert first.body["max_completion_tokens"] == 42
    assert "max_completion_tokens" not in second.body


async def test_entra_token_is_sent_as_bearer(connect: Any, azure: FakeAzure) -> None:
    """An Entra token replaces the api key and travels as a bearer token."""
    client = connect(api_key=None, entra_token=SecretStr("entra-token"))
    await client.complete(MESSAGES)
    assert azure.calls()[0].auth == "bearer"


async def test_token_provider_is_asked_per_request(connect: Any, azure: FakeAzure) -> None:
    """A token provider is called for every request, so rotated tokens are picked up."""
    issued: list[str] = []

    async def provider() -> str:
        issued.append(f"token-{len(issued)}")
        return issued[-1]

    client = connect(api_key=None, token_provider=provider)
    await client.complete(MESSAGES)
    await client.complete(MESSAGES)
    assert issued == ["token-0", "token-1"]
    assert [call.auth for call in azure.calls()] == ["bearer", "bearer"]


async def test_json_schema_is_sent_as_response_format(
    llm: AzureLLMClient, azure: FakeAzure
) -> None:
    """json_schema becomes a json_schema response_format, and the answer is JSON."""
    schema = {
        "name": "part",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"pn": {"type": "string"}},
            "required": ["pn"],
            "additionalProperties": False,
        },
    }
    completion = await llm.complete(MESSAGES, json_schema=schema)
    assert completion.content == '{"pn": "example"}'
    response_format = azure.calls()[0].body["response_format"]
    assert response_format == {"type": "json_schema", "json_schema": schema}


async def test_stream_yields_deltas_then_end_with_usage(
    llm: AzureLLMClient, azure: FakeAzure
) -> None:
    """A stream yields many deltas, then one StreamEnd with the usage Azure reported."""
    events: list[StreamDelta | StreamEnd] = []
    await collect(llm, events)
    *deltas, end = events
    text = text_of(events)
    assert len(deltas) > 20
    assert all(isinstance(d, StreamDelta) for d in deltas)
    assert isinstance(end, StreamEnd)
    assert end.finish_reason == "stop"
    assert end.usage is not None
    assert end.usage.completion_tokens == math.ceil(len(text) / 4)
    [call] = azure.calls()
    assert call.stream
    assert call.body["stream_options"] == {"include_usage": True}


async def test_429_is_retried_then_raises_unavailable_with_retry_after(
    llm: AzureLLMClient, azure: FakeAzure, sleeps: RecordingSleep
) -> None:
    """Rate limits are retried max_retries times after Retry-After, then LLMUnavailable."""
    azure.inject_fault("429", count=5, retry_after=1)
    with pytest.raises(LLMUnavailable) as caught:
        await llm.complete(MESSAGES)
    assert caught.value.retry_after == 1
    assert len(azure.calls()) == 3
    assert sleeps.waits == [1.0, 1.0]


async def test_retry_after_beyond_the_wait_limit_fails_at_once(
    llm: AzureLLMClient, azure: FakeAzure, sleeps: RecordingSleep
) -> None:
    """A Retry-After longer than retry_max_wait_seconds is passed on instead of waited for."""
    azure.inject_fault("429", retry_after=30)
    with pytest.raises(LLMUnavailable) as caught:
        await llm.complete(MESSAGES)
    assert caught.value.retry_after == 30
    assert (len(azure.calls()), sleeps.waits) == (1, [])


async def test_server_errors_are_retried_with_backoff(
    llm: AzureLLMClient, azure: FakeAzure, sleeps: RecordingSleep
) -> None:
    """Two 500s then success: three calls, waits doubling from retry_backoff_seconds."""
    azure.inject_fault("500", count=2)
    completion = await llm.complete(MESSAGES)
    assert completion.content
    assert len(azure.calls()) == 3
    first, second = sleeps.waits
    assert 0.0075 <= first <= 0.01
    assert 0.015 <= second <= 0.02


@pytest.mark.parametrize("max_retries", [0, 1, 3])
async def test_retries_are_bounded(connect: Any, azure: FakeAzure, max_retries: int) -> None:
    """A failing upstream is called max_retries + 1 times, then LLMUnavailable."""
    azure.inject_fault("500", count=10, status=503)
    client = connect(max_retries=max_retries)
    with pytest.raises(LLMUnavailable) as caught:
        await client.complete(MESSAGES)
    assert caught.value.retry_after is None
    assert len(azure.calls()) == max_retries + 1


async def test_slow_answer_raises_timeout_without_retry(
    llm: AzureLLMClient, azure: FakeAzure
) -> None:
    """An answer later than the call's timeout raises LLMTimeout and is not retried."""
    azure.inject_fault("slow", delay=1.0)
    with pytest.raises(LLMTimeout):
        await llm.complete(MESSAGES, timeout=0.2)
    assert len(azure.calls()) == 1


async def test_stream_stalling_midway_raises_timeout_after_deltas(
    connect: Any, azure: FakeAzure
) -> None:
    """A stream that stalls longer than the read timeout raises LLMTimeout after its deltas."""
    azure.inject_fault("slow", delay=1.0, after_chunks=3)
    client = connect(timeout_seconds=0.2)
    events: list[StreamDelta | StreamEnd] = []
    with pytest.raises(LLMTimeout):
        await collect(client, events)
    assert len(events) == 3
    assert all(isinstance(e, StreamDelta) for e in events)


async def test_cut_stream_raises_unavailable_after_partial_deltas(
    llm: AzureLLMClient, azure: FakeAzure
) -> None:
    """A connection dropped mid-stream raises LLMUnavailable after the deltas already sent."""
    azure.inject_fault("cut", after_chunks=4)
    events: list[StreamDelta | StreamEnd] = []
    with pytest.raises(LLMUnavailable):
        await collect(llm, events)
    assert len(events) == 4
    assert not any(isinstance(e, StreamEnd) for e in events)
    assert len(azure.calls()) == 1


async def test_cut_answer_is_retried(llm: AzureLLMClient, azure: FakeAzure) -> None:
    """A non-streamed answer cut by a dropped connection is retried and then succeeds."""
    azure.inject_fault("cut")
    completion = await llm.complete(MESSAGES)
    assert completion.content
    assert len(azure.calls()) == 2


async def test_stream_refused_before_the_first_delta_is_retried(
    llm: AzureLLMClient, azure: FakeAzure, sleeps: RecordingSleep
) -> None:
    """A 429 on opening a stream is retried; the caller just sees the stream."""
    azure.inject_fault("429", retry_after=1)
    events: list[StreamDelta | StreamEnd] = []
    await collect(llm, events)
    assert isinstance(events[-1], StreamEnd)
    assert (len(azure.calls()), sleeps.waits) == (2, [1.0])


async def test_malformed_answer_raises_bad_response(llm: AzureLLMClient, azure: FakeAzure) -> None:
    """An answer that is not valid JSON raises LLMBadResponse and is not retried."""
    azure.inject_fault("malformed")
    with pytest.raises(LLMBadResponse):
        await llm.complete(MESSAGES)
    assert len(azure.calls()) == 1


async def test_malformed_stream_event_raises_bad_response(
    llm: AzureLLMClient, azure: FakeAzure
) -> None:
    """An unparseable event in a stream raises LLMBadResponse after the earlier deltas."""
    azure.inject_fault("malformed", after_chunks=2)
    events: list[StreamDelta | StreamEnd] = []
    with pytest.raises(LLMBadResponse):
        await collect(llm, events)
    assert len(events) == 2


async def test_upstream_refusal_raises_rejected(llm: AzureLLMClient, azure: FakeAzure) -> None:
    """A 400 from upstream (e.g. content filter) raises LLMRejected, a 502, without retry."""
    azure.inject_fault("error", status=400, code="content_filter")
    with pytest.raises(LLMRejected) as caught:
        await llm.complete(MESSAGES)
    assert (caught.value.status, caught.value.code) == (502, "llm_rejected")
    assert len(azure.calls()) == 1


async def test_unreachable_endpoint_raises_unavailable(
    connect: Any, sleeps: RecordingSleep
) -> None:
    """Nothing listening at the endpoint gives LLMUnavailable after the bounded retries."""
    client = connect(endpoint=f"http://127.0.0.1:{free_port()}", max_retries=1)
    with pytest.raises(LLMUnavailable):
        await client.complete(MESSAGES)
    assert len(sleeps.waits) == 1


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (LLMUnavailable(), 503, "llm_unavailable"),
        (LLMTimeout(), 504, "llm_timeout"),
        (LLMBadResponse(), 502, "llm_bad_response"),
    ],
)
def test_errors_carry_status_and_stable_code(error: LLMError, status: int, code: str) -> None:
    """Each domain error names the HTTP status and stable code the API answers with."""
    assert (error.status, error.code) == (status, code)
    assert error.detail


def test_settings_refuse_two_credentials() -> None:
    """An api key and an Entra token together are a configuration error."""
    with pytest.raises(ValidationError):
        LLMSettings(api_key=SecretStr("k"), entra_token=SecretStr("t"))


def test_settings_refuse_non_http_endpoints() -> None:
    """The endpoint must be an http(s) URL."""
    with pytest.raises(ValidationError):
        LLMSettings(endpoint="ftp://azure.example", api_key=SecretStr("k"))


def test_client_needs_a_credential() -> None:
    """A client without api key, Entra token or token provider is refused at construction."""
    with pytest.raises(ValueError, match="credential"):
        AzureLLMClient(LLMSettings())
