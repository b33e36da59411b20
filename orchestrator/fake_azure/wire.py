"""The JSON shapes of Azure OpenAI chat completions: answers, stream chunks, errors, SSE."""

from __future__ import annotations

import json
from typing import Any

SSE_DONE = b"data: [DONE]\n\n"

# Azure reports content filtering on the prompt; the local server never filters anything.
_PROMPT_FILTER_RESULTS = [{"prompt_index": 0, "content_filter_results": {}}]


def error_body(
    message: str, *, code: str | None, type_: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """Azure's error envelope: ``{"error": {"code", "message", "type", "param"}}``."""
    return {"error": {"code": code, "message": message, "type": type_, "param": param}}


def usage_body(
    prompt_tokens: int, completion_tokens: int, total: int | None = None
) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": total if total is not None else prompt_tokens + completion_tokens,
    }


def completion_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    content: str,
    finish_reason: str,
    usage: dict[str, int],
) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` object."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "prompt_filter_results": _PROMPT_FILTER_RESULTS,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": finish_reason,
                "logprobs": None,
                "content_filter_results": {},
            }
        ],
        "usage": usage,
    }


def chunk_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; without ``delta`` its choices are empty (the usage chunk)."""
    choices = (
        [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
        if delta is not None
        else []
    )
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return body


def prompt_filter_chunk() -> dict[str, Any]:
    """The first event of an Azure stream: no choices, only the prompt's filter results."""
    return {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [],
        "prompt_filter_results": _PROMPT_FILTER_RESULTS,
    }


def sse_event(data: object) -> bytes:
    """One server-sent event carrying ``data`` as compact JSON."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"
