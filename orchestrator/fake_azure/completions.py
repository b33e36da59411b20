"""``POST /openai/deployments/{deployment}/chat/completions``: answer, stream, or play a fault."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any, Literal, cast

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.fake_azure import wire
from orchestrator.fake_azure.answers import default_content
from orchestrator.fake_azure.responses import CutBody, ScriptedStream
from orchestrator.fake_azure.scenario import (
    Fault,
    RecordedCall,
    RecordedUsage,
    Scenario,
    Script,
)
from orchestrator.fake_azure.settings import FakeAzureSettings
from orchestrator.fake_azure.tokens import count_tokens, prompt_tokens, split_chunks, truncate

_UNRECORDED_HEADERS = frozenset({"api-key", "authorization", "cookie"})
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
# Index of the first content event in a stream: after the prompt filter and the role events.
_FIRST_CONTENT_EVENT = 2

AuthKind = Literal["api-key", "bearer", "none"]


class ChatCompletions:
    """The chat completions endpoint; every call is recorded in the scenario."""

    def __init__(
        self, settings: FakeAzureSettings, scenario: Scenario, clock: Callable[[], float]
    ) -> None:
        self._settings = settings
        self._scenario = scenario
        self._clock = clock

    async def handle(self, request: Request) -> Response:
        api_version = request.query_params.get("api-version")
        auth = _auth_kind(request.headers)
        body = _parse(await request.body())
        script: Script | None = None
        failure = self._refuse(request.headers, auth, api_version, body)
        if failure is None:
            script = self._scenario.pop()
        fault = script.fault if script is not None else None
        seq = self._scenario.next_seq()
        self._scenario.record(
            RecordedCall(
                seq=seq,
                timestamp=self._clock(),
                deployment=request.path_params["deployment"],
                api_version=api_version,
                auth=auth,
                headers={
                    name: value
                    for name, value in request.headers.items()
                    if name not in _UNRECORDED_HEADERS
                },
                body=body,
                stream=isinstance(body, dict) and body.get("stream") is True,
                status=failure.status_code if failure is not None else _status_of(fault),
                fault=fault.kind if fault is not None else None,
            )
        )
        if failure is not None:
            return failure
        # _refuse let only JSON objects with messages through.
        return await self._answer(cast("dict[str, Any]", body), script, fault, seq)

    def _refuse(
        self, headers: Headers, auth: AuthKind, api_version: str | None, body: Any
    ) -> Response | None:
        """The 401/400 answer for a call Azure would refuse, or None."""
        expected = self._settings.api_key
        key = headers.get("api-key", "")
        if auth == "none" or (
            expected is not None
            and auth == "api-key"
            and not hmac.compare_digest(key.encode(), expected.get_secret_value().encode())
        ):
            message = "Access denied: missing or invalid api-key or bearer token."
            return JSONResponse(wire.error_body(message, code="401"), status_code=401)
        if not api_version:
            message = "The api-version query parameter (?api-version=) is required."
            return _invalid(message, code="MissingApiVersionParameter", param="api-version")
        if not isinstance(body, dict):
            return _invalid("The request body must be a JSON object.", code=None)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _invalid("'messages' must be a non-empty array.", code=None, param="messages")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in _ROLES:
                return _invalid("Each message needs a valid 'role'.", code=None, param="messages")
        return None

    async def _answer(
        self, body: dict[str, Any], script: Script | None, fault: Fault | None, seq: int
    ) -> Response:
        stream = body.get("stream") is True
        if fault is not None and fault.kind == "429":
            headers = (
                {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else {}
            )
            message = "Rate limit of the deployment reached; retry after the given delay."
            return JSONResponse(
                wire.error_body(message, code="429"), status_code=429, headers=headers
            )
        if fault is not None and fault.kind == "500":
            message = "The server had an error while processing the request."
            body_ = wire.error_body(message, code=None, type_="server_error")
            return JSONResponse(body_, status_code=fault.status)
        if fault is not None and fault.kind == "error":
            message = f"The request failed with {fault.code or fault.status}."
            body_ = wire.error_body(message, code=fault.code or str(fault.status))
            return JSONResponse(body_, status_code=fault.status)
        if fault is not None and fault.kind == "slow" and not (stream and fault.after_chunks):
            await asyncio.sleep(fault.delay)

        content, finish_reason = _content(body, script)
        usage = _usage(body, content, script)
        if _reports_usage(body, fault):
            self._scenario.record_usage(RecordedUsage(seq=seq, **usage))
        completion_id = f"chatcmpl-local-{seq:06d}"
        created = int(self._clock())
        model = self._settings.model
        if not stream:
            payload = wire.completion_body(
                completion_id=completion_id,
                created=created,
                model=model,
                content=content,
                finish_reason=finish_reason,
                usage=usage,
            )
            encoded = json.dumps(payload).encode()
            if fault is not None and fault.kind == "malformed":
                return Response(encoded[: len(encoded) // 2], media_type="application/json")
            if fault is not None and fault.kind == "cut":
                return CutBody(encoded)
            return JSONResponse(payload)

        def event(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
            chunk = wire.chunk_body(
                completion_id=completion_id,
                created=created,
                model=model,
                delta=delta,
                finish_reason=finish,
                **extra,
            )
            return wire.sse_event(chunk)

        pieces = split_chunks(content)
        events = [
            wire.sse_event(wire.prompt_filter_chunk()),
            event({"role": "assistant", "content": ""}),
        ]
        events += [event({"content": piece}) for piece in pieces]
        events.append(event({}, finish_reason))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            events.append(event(None, usage=usage))
        events.append(wire.SSE_DONE)
        return _stream(events, fault, len(pieces), self._settings.chunk_delay_seconds)


def _stream(events: list[bytes], fault: Fault | None, pieces: int, delay: float) -> Response:
    at = _FIRST_CONTENT_EVENT + (
        fault.after_chunks if fault is not None and fault.after_chunks is not None else pieces // 2
    )
    at = min(at, len(events) - 1)
    if fault is not None and fault.kind == "cut":
        return ScriptedStream(events, chunk_delay=delay, cut_before=at)
    if fault is not None and fault.kind == "slow" and fault.after_chunks:
        return ScriptedStream(events, chunk_delay=delay, pause_before=at, pause=fault.delay)
    if fault is not None and fault.kind == "malformed":
        events.insert(at, b'data: {"id":"chatcmpl-broken","choices":[{"delta":\n\n')
    return ScriptedStream(events, chunk_delay=delay)


def _content(body: Mapping[str, Any], script: Script | None) -> tuple[str, str]:
    """The answer text and finish reason; only the generated default is cut to max tokens."""
    if script is not None and script.content is not None:
        return script.content, script.finish_reason or "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    content, cut = truncate(default_content(body), limit if isinstance(limit, int) else None)
    default_reason = "length" if cut else "stop"
    return content, (script.finish_reason if script is not None else None) or default_reason


def _usage(body: Mapping[str, Any], content: str, script: Script | None) -> dict[str, int]:
    if script is not None and script.usage is not None:
        scripted = script.usage
        return wire.usage_body(
            scripted.prompt_tokens, scripted.completion_tokens, scripted.total_tokens
        )
    return wire.usage_body(prompt_tokens(body["messages"]), count_tokens(content))


def _reports_usage(body: Mapping[str, Any], fault: Fault | None) -> bool:
    """Whether the answer about to be sent carries its usage whole to the client."""
    if fault is not None and fault.kind in ("cut", "malformed"):
        return False
    if body.get("stream") is not True:
        return True
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _auth_kind(headers: Headers) -> AuthKind:
    if headers.get("api-key"):
        return "api-key"
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "bearer"
    return "none"


def _parse(raw: bytes) -> Any:
    """The JSON body, or its text when it is not JSON (recorded as such, then refused)."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _status_of(fault: Fault | None) -> int:
    if fault is None or fault.kind in ("slow", "cut", "malformed"):
        return 200
    return 429 if fault.kind == "429" else fault.status


def _invalid(message: str, *, code: str | None, param: str | None = None) -> Response:
    body = wire.error_body(message, code=code, type_="invalid_request_error", param=param)
    return JSONResponse(body, status_code=400)
