"""The local Azure OpenAI server: wire format, default answers, control API and faults."""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from orchestrator.classifier import CLASSIFICATION_SCHEMA_NAME
from orchestrator.fake_azure import FakeAzureSettings, create_app
from orchestrator.fake_azure.__main__ import parse_settings
from orchestrator.fake_azure.scenario import RecordedCall, Scenario
from orchestrator.fake_azure.tokens import count_tokens, prompt_tokens, split_chunks
from tests.fixtures.azure import API_VERSION, TEST_API_KEY, FakeAzure

PATH = f"/openai/deployments/gpt-4o-mini/chat/completions?api-version={API_VERSION}"
KEY = {"api-key": TEST_API_KEY}
QUESTION = "Where do I find the AMM task for the main wheel change?"


@pytest.fixture
async def http(azure: FakeAzure) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=azure.base_url, timeout=5.0) as client:
        yield client


def chat(content: str = QUESTION, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], **extra}


async def sse_payloads(client: httpx.AsyncClient, body: dict[str, Any]) -> list[Any]:
    """The data of every event of a streamed answer ([DONE] kept as a string)."""
    payloads: list[Any] = []
    async with client.stream("POST", PATH, headers=KEY, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                payloads.append(data if data == "[DONE]" else json.loads(data))
    return payloads


async def read_lines(client: httpx.AsyncClient, body: dict[str, Any], sink: list[str]) -> None:
    async with client.stream("POST", PATH, headers=KEY, json=body) as response:
        async for line in response.aiter_lines():
            sink.append(line)


async def test_missing_credentials_answer_401_in_azure_shape(
    http: httpx.AsyncClient, azure: FakeAzure
) -> None:
    """A call without api-key or bearer token is refused with Azure's error JSON and recorded."""
    response = await http.post(PATH, json=chat())
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "401"
    [call] = azure.calls()
    assert (call.auth, call.status) == ("none", 401)


async def test_configured_key_must_match() -> None:
    """With an api key configured the server refuses any other key."""
    app = create_app(FakeAzureSettings(api_key="right-key", control=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://azure") as client:
        wrong = await client.post(PATH, headers={"api-key": "wrong-key"}, json=chat())
        right = await client.post(PATH, headers={"api-key": "right-key"}, json=chat())
    assert (wrong.status_code, right.status_code) == (401, 200)


async def test_bearer_token_is_accepted_and_not_recorded(
    http: httpx.AsyncClient, azure: FakeAzure
) -> None:
    """An Entra bearer token authenticates; neither it nor an api-key shows in the call log."""
    response = await http.post(PATH, headers={"Authorization": "Bearer entra-token"}, json=chat())
    assert response.status_code == 200
    [call] = azure.calls()
    assert call.auth == "bearer"
    assert "authorization" not in call.headers
    assert "entra-token" not in json.dumps(call.headers)


async def test_missing_api_version_is_refused(http: httpx.AsyncClient) -> None:
    """The api-version query parameter is required, as on Azure."""
    response = await http.post(PATH.split("?")[0], headers=KEY, json=chat())
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingApiVersionParameter"


@pytest.mark.parametrize(
    "body", [{"messages": []}, {"messages": [{"role": "robot", "content": "x"}]}, ["not", "obj"]]
)
async def test_invalid_requests_are_refused(http: httpx.AsyncClient, body: Any) -> None:
    """Empty messages, unknown roles and non-object bodies get 400 invalid_request_error."""
    response = await http.post(PATH, headers=KEY, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_answer_is_a_chat_completion_with_deterministic_usage(
    http: httpx.AsyncClient,
) -> None:
    """A non-streamed answer is a chat.completion whose usage follows the documented counts."""
    body = chat("a" * 40)
    response = await http.post(PATH, headers=KEY, json=body)
    answer = response.json()
    content = answer["choices"][0]["message"]["content"]
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"] == {
        "prompt_tokens": 4 + 10 + 3,
        "completion_tokens": math.ceil(len(content) / 4),
        "total_tokens": 17 + math.ceil(len(content) / 4),
    }


async def test_stream_sends_chunks_usage_and_done(http: httpx.AsyncClient) -> None:
    """A stream opens with the prompt filter event and ends with a usage chunk and [DONE]."""
    whole = (await http.post(PATH, headers=KEY, json=chat())).json()
    payloads = await sse_payloads(http, chat(stream=True, stream_options={"include_usage": True}))
    chunks = payloads[:-1]
    deltas = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
    assert payloads[-1] == "[DONE]"
    assert chunks[0]["choices"] == []
    assert "prompt_filter_results" in chunks[0]
    assert sum(1 for d in deltas if d) > 20
    assert "".join(deltas) == whole["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == whole["usage"]


async def test_stream_without_include_usage_has_no_usage(http: httpx.AsyncClient) -> None:
    """Without stream_options.include_usage no chunk carries usage."""
    payloads = await sse_payloads(http, chat(stream=True))
    assert not any("usage" in p for p in payloads if isinstance(p, dict))


async def test_max_tokens_cuts_the_default_answer(http: httpx.AsyncClient) -> None:
    """The default answer is cut to max_completion_tokens and finishes with 'length'."""
    response = await http.post(PATH, headers=KEY, json=chat(max_completion_tokens=5))
    answer = response.json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 5


def classification_body(question: str, names: list[str]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "agent": {"type": "string", "enum": names},
            "confidence": {"type": "number"},
            "reasoning": {"type": "string"},
        },
    }
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": CLASSIFICATION_SCHEMA_NAME, "schema": schema},
    }
    return chat(question, response_format=response_format)


@pytest.mark.parametrize(
    ("question", "names", "expected"),
    [
        (QUESTION, ["documentation", "troubleshooting"], "documentation"),
        (
            "Is this AD applicable before the MEL deferral?",
            ["planning", "compliance"],
            "compliance",
        ),
        (QUESTION, ["planning", "compliance"], "planning"),
    ],
)
async def test_classification_request_gets_a_choice_within_the_enum(
    http: httpx.AsyncClient, question: str, names: list[str], expected: str
) -> None:
    """A classification request is answered with JSON naming an agent of the schema's enum."""
    response = await http.post(PATH, headers=KEY, json=classification_body(question, names))
    answer = json.loads(response.json()["choices"][0]["message"]["content"])
    assert answer["agent"] == expected
    assert 0 <= answer["confidence"] <= 1
    assert answer["reasoning"]


async def test_other_json_schema_gets_a_sample_instance(http: httpx.AsyncClient) -> None:
    """Another json_schema request gets JSON with the schema's required properties."""
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "hours": {"type": "integer", "minimum": 1},
            "tags": {"type": "array"},
            "level": {"enum": ["low", "high"]},
        },
        "required": ["title", "hours", "tags", "level"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "work_package", "schema": schema}}
    response = await http.post(PATH, headers=KEY, json=chat(response_format=fmt))
    answer = json.loads(response.json()["choices"][0]["message"]["content"])
    assert answer == {"title": "example", "hours": 1, "tags": [], "level": "low"}


async def test_json_object_gets_json(http: httpx.AsyncClient) -> None:
    """A json_object request gets a JSON object with an answer."""
    response = await http.post(
        PATH, headers=KEY, json=chat(response_format={"type": "json_object"})
    )
    answer = json.loads(response.json()["choices"][0]["message"]["content"])
    assert QUESTION in answer["answer"]


async def test_chat_answer_quotes_the_question_and_names_the_agent(
    http: httpx.AsyncClient,
) -> None:
    """The default chat answer quotes the question and speaks as the system prompt's assistant."""
    body = {
        "messages": [
            {"role": "system", "content": "You are the Troubleshooting assistant of an MRO."},
            {"role": "user", "content": "The pack 2 fault light stays on."},
        ]
    }
    response = await http.post(PATH, headers=KEY, json=body)
    content = response.json()["choices"][0]["message"]["content"]
    assert content.startswith("Troubleshooting assistant")
    assert '"The pack 2 fault light stays on."' in content
    assert "TSM" in content


async def test_queued_response_is_played_then_the_default(
    http: httpx.AsyncClient, azure: FakeAzure
) -> None:
    """A queued answer (with scripted usage) is used once; the next call gets the default."""
    azure.queue_response("Scripted.", usage={"prompt_tokens": 7, "completion_tokens": 3})
    first = (await http.post(PATH, headers=KEY, json=chat())).json()
    second = (await http.post(PATH, headers=KEY, json=chat())).json()
    assert first["choices"][0]["message"]["content"] == "Scripted."
    assert first["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert second["choices"][0]["message"]["content"] != "Scripted."


async def test_faults_are_played_count_times(http: httpx.AsyncClient, azure: FakeAzure) -> None:
    """A fault injected for two calls fails exactly two calls, then the server recovers."""
    azure.inject_fault("500", count=2, status=503)
    assert azure.pending() == 2
    statuses = [(await http.post(PATH, headers=KEY, json=chat())).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert azure.pending() == 0
    assert [call.fault for call in azure.calls()] == ["500", "500", None]


async def test_429_fault_sends_retry_after(http: httpx.AsyncClient, azure: FakeAzure) -> None:
    """A 429 fault answers with Azure's error shape and a Retry-After header."""
    azure.inject_fault("429", retry_after=7)
    response = await http.post(PATH, headers=KEY, json=chat())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "429"


async def test_error_fault_uses_status_and_code(http: httpx.AsyncClient, azure: FakeAzure) -> None:
    """An 'error' fault answers with the given status and Azure error code."""
    azure.inject_fault("error", status=400, code="content_filter")
    response = await http.post(PATH, headers=KEY, json=chat())
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_filter"


async def test_malformed_fault_sends_invalid_json(
    http: httpx.AsyncClient, azure: FakeAzure
) -> None:
    """A malformed answer claims JSON but cannot be parsed."""
    azure.inject_fault("malformed")
    response = await http.post(PATH, headers=KEY, json=chat())
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


async def test_cut_fault_drops_the_stream_midway(http: httpx.AsyncClient, azure: FakeAzure) -> None:
    """A cut stream delivers the first chunks, then the connection closes without [DONE]."""
    azure.inject_fault("cut", after_chunks=3)
    lines: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        await read_lines(http, chat(stream=True), lines)
    data = [line for line in lines if line.startswith("data: ")]
    assert len(data) == 2 + 3
    assert "data: [DONE]" not in lines


async def test_slow_fault_delays_the_answer(http: httpx.AsyncClient, azure: FakeAzure) -> None:
    """A slow fault holds the answer back for its delay."""
    azure.inject_fault("slow", delay=0.3)
    started = time.monotonic()
    response = await http.post(PATH, headers=KEY, json=chat())
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


async def test_control_rejects_invalid_requests(http: httpx.AsyncClient) -> None:
    """An unknown fault kind is refused with 422 naming the field."""
    response = await http.post("/_control/faults", json={"kind": "explode"})
    assert response.status_code == 422
    assert "kind" in response.json()["error"]["message"]


async def test_recorded_call_keeps_body_deployment_and_version(
    http: httpx.AsyncClient, azure: FakeAzure
) -> None:
    """The call log holds the body, deployment and api-version but never the api-key."""
    await http.post(PATH, headers=KEY, json=chat(max_tokens=9))
    [call] = azure.calls()
    assert (call.deployment, call.api_version, call.auth) == ("gpt-4o-mini", API_VERSION, "api-key")
    assert call.body["max_tokens"] == 9
    assert TEST_API_KEY not in json.dumps(call.headers)


async def test_reset_forgets_calls_and_scripts(http: httpx.AsyncClient, azure: FakeAzure) -> None:
    """Reset empties both the call log and the script queue."""
    await http.post(PATH, headers=KEY, json=chat())
    azure.inject_fault("500", count=3)
    azure.reset()
    assert (azure.calls(), azure.pending()) == ([], 0)


async def test_control_api_can_be_disabled() -> None:
    """With control off, /_control answers 404 in Azure's error shape."""
    app = create_app(FakeAzureSettings(control=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://azure") as client:
        response = await client.get("/_control/calls")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Resource not found"


async def test_timestamps_come_from_the_injected_clock() -> None:
    """Answers and recorded calls take their time from the clock given to create_app."""
    app = create_app(FakeAzureSettings(), clock=lambda: 1_700_000_000.5)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://azure") as client:
        answer = (await client.post(PATH, headers=KEY, json=chat())).json()
        calls = (await client.get("/_control/calls")).json()["calls"]
    assert answer["created"] == 1_700_000_000
    assert calls[0]["timestamp"] == 1_700_000_000.5


def test_token_counts_are_a_character_approximation() -> None:
    """Tokens are ceil(chars / 4); a prompt adds 4 per message and 3 for the reply."""
    assert [count_tokens(t) for t in ("", "abc", "abcd", "abcde")] == [0, 1, 1, 2]
    messages = [{"role": "system", "content": "x" * 8}, {"role": "user", "content": "y"}]
    assert prompt_tokens(messages) == (4 + 2) + (4 + 1) + 3


def test_stream_pieces_join_back_to_the_text() -> None:
    """Stream pieces are words with their whitespace and rebuild the text exactly."""
    text = "  Check the AMM.\n\n2. Torque  per the task. "
    pieces = split_chunks(text)
    assert "".join(pieces) == text
    assert len(pieces) == 9


def test_command_line_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Host and port come from MRO_FAKE_AZURE_* unless given on the command line."""
    monkeypatch.setenv("MRO_FAKE_AZURE_PORT", "9100")
    assert parse_settings([]).port == 9100
    settings = parse_settings(["--port", "9200", "--chunk-delay", "0.05"])
    assert (settings.host, settings.port, settings.chunk_delay_seconds) == ("127.0.0.1", 9200, 0.05)


def test_control_api_stays_on_loopback() -> None:
    """Binding beyond loopback requires --no-control."""
    with pytest.raises(SystemExit):
        parse_settings(["--host", "0.0.0.0"])
    settings = parse_settings(["--host", "0.0.0.0", "--no-control"])
    assert settings.control is False


def test_call_log_is_bounded() -> None:
    """The call log keeps only the most recent calls, so a long-running server stays small."""
    scenario = Scenario(max_calls=2)
    for seq in range(1, 4):
        scenario.record(
            RecordedCall(
                seq=seq,
                timestamp=0.0,
                deployment="d",
                api_version="v",
                auth="api-key",
                headers={},
                body={},
                stream=False,
                status=200,
                fault=None,
            )
        )
    assert [call.seq for call in scenario.calls] == [2, 3]


async def test_usage_log_holds_what_each_answer_carried(
    http: httpx.AsyncClient, azure: FakeAzure
) -> None:
    """Answers and streams with include_usage are logged with their usage; the others are not."""
    whole = (await http.post(PATH, headers=KEY, json=chat())).json()
    streamed = await sse_payloads(http, chat(stream=True, stream_options={"include_usage": True}))
    await sse_payloads(http, chat(stream=True))
    azure.inject_fault("cut", after_chunks=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await read_lines(http, chat(stream=True, stream_options={"include_usage": True}), [])
    await http.post(PATH, json=chat())  # refused: no credential
    usage = (await http.get("/_control/usage")).json()["usage"]
    answered = [call.seq for call in azure.calls()[:2]]
    assert [item.pop("seq") for item in usage] == answered
    assert usage == [whole["usage"], streamed[-2]["usage"]]


async def test_reset_forgets_the_usage_log(http: httpx.AsyncClient, azure: FakeAzure) -> None:
    """Reset empties the usage log too."""
    await http.post(PATH, headers=KEY, json=chat())
    azure.reset()
    assert (await http.get("/_control/usage")).json() == {"usage": []}
