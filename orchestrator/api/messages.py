"""``POST /api/conversations/{id}/messages``: ask, answered whole (201) or streamed (SSE)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse
from starlette.responses import Response

from orchestrator.api.dependencies import Chat, require
from orchestrator.api.schemas import (
    ExchangeOut,
    MessageCreate,
    MessageOut,
    classification_usage_of,
    usage_of,
)
from orchestrator.api.sse import EventStreamResponse, encode_event, wants_event_stream
from orchestrator.chat import AnswerStream, Exchange, Question
from orchestrator.errors import AnswerWithdrawn
from orchestrator.identity import Principal
from orchestrator.llm import LLMError, StreamDelta, StreamEnd, Usage
from orchestrator.logs import current_request_id
from orchestrator.models import MessageStatus
from orchestrator.problems import problem_type

router = APIRouter(prefix="/api/conversations", tags=["messages"])

# RFC 9110 token characters are enough for any client-generated key (UUIDs, ULIDs, hashes).
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._~:+/=-]{1,255}$"
REPLAYED_HEADER = "idempotent-replayed"


@router.post(
    "/{conversation_id}/messages",
    status_code=201,
    response_model=ExchangeOut,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Streamed answer"}},
)
async def send_message(
    conversation_id: uuid.UUID,
    body: MessageCreate,
    principal: Annotated[Principal, Depends(require("messages:create"))],
    chat: Chat,
    accept: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN)
    ] = None,
) -> Response:
    question = Question(
        content=body.content,
        agent=body.agent,
        max_tokens=body.max_tokens,
        idempotency_key=idempotency_key,
        request_id=current_request_id(),
    )
    if not wants_event_stream(accept):
        exchange = await chat.ask(principal, conversation_id, question)
        return _exchange_response(exchange)
    started = await chat.ask_streaming(principal, conversation_id, question)
    if isinstance(started, Exchange):
        return EventStreamResponse(_replay(started), headers=_replay_headers(started))
    return EventStreamResponse(_live(started), on_close=started.finish)


def _exchange_response(exchange: Exchange) -> JSONResponse:
    body = ExchangeOut(
        user_message=MessageOut.of(exchange.user),
        assistant_message=MessageOut.of(exchange.assistant),
    )
    return JSONResponse(
        body.model_dump(mode="json"), status_code=201, headers=_replay_headers(exchange)
    )


def _replay_headers(exchange: Exchange) -> dict[str, str]:
    return {REPLAYED_HEADER: "true"} if exchange.replayed else {}


def _usage(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _meta(
    message_id: uuid.UUID,
    user_id: uuid.UUID,
    agent: str | None,
    confidence: Any,
    method: str | None,
    classification_usage: dict[str, int] | None,
) -> bytes:
    return encode_event(
        "meta",
        {
            "agent": agent,
            "confidence": confidence,
            "method": method,
            "message_id": str(message_id),
            "user_message_id": str(user_id),
            "classification_usage": classification_usage,
        },
    )


async def _live(stream: AnswerStream) -> AsyncGenerator[bytes, None]:
    classification = stream.turn.classification
    yield _meta(
        stream.message_id,
        stream.turn.user.id,
        classification.agent,
        classification.confidence,
        classification.method,
        _usage(classification.usage),
    )
    async for event in stream.events():
        if isinstance(event, StreamDelta):
            yield encode_event("delta", {"content": event.content})
        elif isinstance(event, StreamEnd):
            done = {"message_id": str(stream.message_id), "usage": _usage(event.usage)}
            yield encode_event("done", {**done, "partial": False})
        else:
            yield encode_event("error", _error_event(event, stream))


def _error_event(error: LLMError | AnswerWithdrawn, stream: AnswerStream) -> dict[str, Any]:
    # A withdrawn stream stored none of its text: the row holds the retry's answer, or is gone.
    return {
        "type": problem_type(error.code),
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
        "message_id": str(stream.message_id),
        "partial": bool(stream.content) and not stream.superseded,
    }


async def _replay(exchange: Exchange) -> AsyncGenerator[bytes, None]:
    answer = exchange.assistant
    routing = classification_usage_of(answer)
    yield _meta(
        answer.id,
        exchange.user.id,
        answer.agent,
        answer.confidence,
        answer.classification_method,
        routing.model_dump() if routing else None,
    )
    if answer.content:
        yield encode_event("delta", {"content": answer.content})
    usage = usage_of(answer)
    yield encode_event(
        "done",
        {
            "message_id": str(answer.id),
            "usage": usage.model_dump() if usage else None,
            "partial": answer.status == MessageStatus.PARTIAL,
        },
    )
