"""Token budgets on the wire: reserve before an LLM request goes upstream, settle from its answer.

For a request on an ``llm`` route ``UsageMeter.forward``:

1. reads the (small, size-limited) JSON body for ``content``, ``agent`` and ``max_tokens``; a body
   without ``max_tokens`` gets the policy's ``default_max_tokens`` so that the answer cannot run
   past the estimate;
2. estimates the cost: ``ceil(len(content) / chars_per_token) + prompt_overhead_tokens +
   max_tokens``, times the agent's weight (the named agent's, else the dearest agent the caller
   may use, since the orchestrator's classifier picks the agent later);
3. reserves it in every budget that applies (``gateway.budgets``); over budget: 429
   ``token_budget_exceeded`` naming the budget, with ``Retry-After`` to the window's edge;
4. forwards, watching the answer pass without holding it back: the JSON body's
   ``assistant_message`` (``usage``, ``agent``), or the SSE events ``meta`` (``agent``) and
   ``done`` (``usage``); ``classification_usage`` is added wherever the orchestrator reports it;
5. settles, however the exchange ended: the real tokens times the agent's weight; nothing for
   errors and replayed answers; the whole reservation for an answer without usage (a stream cut
   off midway, a client gone): its real cost is unknown, and it was at most that.

Responses carry the budgets as ``RateLimit-Policy``/``RateLimit`` members with the quota unit
``qu="tokens"``, and ``MRO-Budget-Warning: user:day 82%`` once a budget is 80 % used.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
from starlette.types import Message, Receive, Scope, Send

from gateway.audit import AuditEvent, AuditSink
from gateway.budgets import (
    BudgetConfig,
    BudgetUnavailable,
    LineState,
    RedisBudgetStore,
    Reservation,
    caller_kind,
)
from gateway.context import RequestContext
from gateway.errors import DependencyUnavailable, RateLimited
from gateway.identity import Identity
from gateway.metrics import Metrics
from gateway.problems import problem_headers, render
from gateway.proxy import ClientDisconnected
from gateway.usage_store import UsageRecord, UsageRecorder

__all__ = ["AnswerReader", "TokenBudgetExceeded", "Usage", "UsageMeter"]

logger = logging.getLogger(__name__)

WARNING_HEADER = b"mro-budget-warning"
REPLAYED_HEADER = b"idempotent-replayed"
# An answer body larger than this is relayed but not read for usage (it is charged unmetered).
MAX_READ_BYTES = 4 * 1024 * 1024

Forward = Callable[[Scope, Receive, Send, RequestContext], Awaitable[None]]


class Reply(Protocol):
    """The pipeline's downstream ``send``, with the fields it adds to the response head."""

    extra: list[tuple[bytes, bytes]]

    async def __call__(self, message: Message) -> None: ...


class TokenBudgetExceeded(RateLimited):
    """A budget has no room for the request's estimate; ``budget`` names it (``user:day``)."""

    code = "token_budget_exceeded"
    title = "Token budget exhausted"

    def __init__(self, detail: str, *, retry_after: int, budget: str) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.budget = budget


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts the orchestrator reported."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def parse(cls, value: object) -> Usage | None:
        if not isinstance(value, dict):
            return None
        counts = [value.get(name) for name in ("prompt_tokens", "completion_tokens")]
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            return None
        total = value.get("total_tokens")
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            total = counts[0] + counts[1]  # type: ignore[operator]
        return cls(counts[0], counts[1], total)  # type: ignore[arg-type]

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
        )


class AnswerReader:
    """Reads agent and usage from an answer as its chunks pass (JSON body or SSE events)."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.replayed = False
        self.event_stream = False
        self.agent: str | None = None
        self.usage: Usage | None = None
        self.classification: Usage | None = None
        self._buffer = bytearray()
        self._overflow = False
        self._event = "message"
        self._data: list[bytes] = []

    def start(self, status: int, headers: Sequence[tuple[bytes, bytes]]) -> None:
        self.status = status
        for name, value in headers:
            name = name.lower()
            if name == b"content-type":
                self.event_stream = value.lower().startswith(b"text/event-stream")
            elif name == REPLAYED_HEADER:
                self.replayed = value.strip().lower() == b"true"

    def feed(self, chunk: bytes) -> None:
        if self._overflow or not chunk:
            return
        self._buffer += chunk
        if self.event_stream:
            self._lines()
        if len(self._buffer) > MAX_READ_BYTES:
            self._overflow = True
            self._buffer.clear()

    def finish(self) -> None:
        """The body is complete: read the JSON answer (a stream was read as it went)."""
        if self.event_stream or self._overflow or not self._buffer:
            return
        try:
            body = json.loads(self._buffer)
        except (ValueError, RecursionError):
            return
        answer = body.get("assistant_message") if isinstance(body, dict) else None
        if isinstance(answer, dict):
            self._take(answer)
            self.usage = Usage.parse(answer.get("usage"))

    def _take(self, data: dict[str, Any]) -> None:
        if isinstance(data.get("agent"), str):
            self.agent = data["agent"]
        classification = Usage.parse(data.get("classification_usage"))
        if classification is not None:
            self.classification = classification

    def _lines(self) -> None:
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            if not line:
                self._dispatch()
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("utf-8", "replace")
            elif line.startswith(b"data:"):
                self._data.append(line[5:].strip())

    def _dispatch(self) -> None:
        event, data = self._event, b"\n".join(self._data)
        self._event, self._data = "message", []
        if event not in ("meta", "done"):
            return
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):
            return
        if not isinstance(payload, dict):
            return
        if event == "meta":
            self._take(payload)
        else:
            self._take(payload)
            self.usage = Usage.parse(payload.get("usage"))


def _partition_key(partition: str) -> str:
    digest = hashlib.sha256(partition.encode()).digest()[:9]
    return ":" + base64.b64encode(digest).decode() + ":"


def _member(state: LineState) -> str:
    return f'"tokens-{state.line.scope}-{state.line.window}"'


def _add_members(extra: list[tuple[bytes, bytes]], name: bytes, members: str) -> None:
    """Append list members to the field the rate limiter set, or add the field."""
    for index, (key, value) in enumerate(extra):
        if key == name:
            extra[index] = (key, value + b", " + members.encode())
            return
    extra.append((name, members.encode()))


def budget_fields(states: Sequence[LineState], now: float, warn_ratio: float) -> dict[bytes, str]:
    """The RateLimit-Policy and RateLimit members of states, and the warning when one is due."""
    policy, current, warnings = [], [], []
    for state in states:
        _, start, end = state.line.window.bounds(now)
        pk = _partition_key(state.line.partition)
        policy.append(f'{_member(state)};q={state.line.limit};w={round(end - start)};qu="tokens"')
        policy[-1] += f";pk={pk}"
        current.append(f"{_member(state)};r={state.remaining};t={math.ceil(state.reset)};pk={pk}")
        share = state.used / state.line.limit
        if share >= warn_ratio:
            warnings.append(f"{state.line.name} {min(100, math.floor(share * 100))}%")
    fields = {b"ratelimit-policy": ", ".join(policy), b"ratelimit": ", ".join(current)}
    if warnings:
        fields[WARNING_HEADER] = ", ".join(warnings)
    return fields


@dataclass(frozen=True, slots=True)
class _Question:
    body: bytes
    agent: str | None
    chars: int
    max_tokens: int
    rewritten: bool


def _question(body: bytes, default_max_tokens: int) -> _Question:
    """What the estimate needs from a message body; adds max_tokens when the body has none."""
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):
        # Not JSON, or nested past the parser's depth: the orchestrator refuses it as 422.
        data = None
    if not isinstance(data, dict):
        # The orchestrator will refuse it (422); reserve as for its size.
        return _Question(body, None, len(body), default_max_tokens, False)
    content = data.get("content")
    chars = len(content) if isinstance(content, str) else len(body)
    agent = data.get("agent") if isinstance(data.get("agent"), str) else None
    max_tokens = data.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0:
        return _Question(body, agent, chars, max_tokens, False)
    if max_tokens is not None:
        return _Question(body, agent, chars, default_max_tokens, False)
    data["max_tokens"] = default_max_tokens
    rewritten = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return _Question(rewritten, agent, chars, default_max_tokens, True)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _with_body(scope: Scope, body: bytes) -> Scope:
    headers = [
        (name, value)
        for name, value in scope["headers"]
        if name not in (b"content-length", b"transfer-encoding")
    ]
    headers.append((b"content-length", str(len(body)).encode()))
    return {**scope, "headers": headers}


class UsageMeter:
    """Reserves, forwards, reads the answer and settles (see module doc)."""

    def __init__(
        self,
        config: BudgetConfig,
        store: RedisBudgetStore,
        recorder: UsageRecorder,
        tier_for: Callable[[frozenset[str]], str | None],
        metrics: Metrics,
        audit: AuditSink,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._recorder = recorder
        self._tier_for = tier_for
        self._metrics = metrics
        self._audit = audit
        self._clock = clock

    async def forward(
        self, scope: Scope, receive: Receive, reply: Reply, context: RequestContext, proxy: Forward
    ) -> None:
        """Forward an LLM request under the caller's budgets. Raises what proxy raises, and
        DependencyUnavailable when budgets cannot be checked (``redis_down = "refuse"``)."""
        identity = context.identity
        if identity is None:  # LLM routes are never public; nothing to charge.
            await proxy(scope, receive, reply, context)
            return
        config = self._config
        question = _question(await _read_body(receive), config.default_max_tokens)
        if question.rewritten:
            scope = _with_body(scope, question.body)
        weight = config.reserve_weight(question.agent, identity.permissions)
        cost = math.ceil(config.estimate(question.chars, question.max_tokens) * weight)
        tier = self._tier_for(identity.roles)
        started = self._clock()
        reservation = await self._reserve(identity, tier, cost, context)
        if reservation is not None:
            fields = budget_fields(reservation.states, started, config.warn_ratio)
            for name, value in fields.items():
                _add_members(reply.extra, name, value)
            if not reservation.allowed:
                await self._refuse(reservation, reply, context)
                return
        answer = AnswerReader()
        try:
            await proxy(scope, _replay(question.body, receive), _watch(reply, answer), context)
        finally:
            with anyio.CancelScope(shield=True):
                await self._settle(identity, tier, cost, weight, reservation, answer, started)

    async def _reserve(
        self, identity: Identity, tier: str | None, cost: int, context: RequestContext
    ) -> Reservation | None:
        lines = self._config.lines_for(identity, tier)
        if not lines:
            return None
        try:
            reservation = await self._store.reserve(lines, cost)
        except BudgetUnavailable as exc:
            self._metrics.token_budget_unavailable.inc()
            logger.warning("token budgets unavailable", extra={"error": str(exc)})
            if self._config.fail_open:
                return None
            raise DependencyUnavailable(
                "Token budgets cannot be checked right now; try again shortly.",
                code="budget_unavailable",
            ) from exc
        if reservation.swept:
            self._metrics.token_reservations_expired.inc(reservation.swept)
        return reservation

    async def _refuse(
        self, reservation: Reservation, reply: Reply, context: RequestContext
    ) -> None:
        exhausted = sorted(reservation.exhausted, key=lambda s: s.reset)
        budget = exhausted[-1].line.name
        for state in exhausted:
            self._metrics.token_budget_exceeded(state.line.name)
        self._audit.emit(
            AuditEvent(
                action="budget.exceeded",
                outcome="denied",
                actor=context.identity.subject if context.identity else None,
                target=context.route,
                reason=budget,
                request_id=context.request_id,
                client_ip=context.client_ip,
                details={"estimate": reservation.cost, "budgets": [s.line.name for s in exhausted]},
            )
        )
        error = TokenBudgetExceeded(
            f"The token budget {budget} has no room for this request "
            f"(about {reservation.cost} tokens).",
            retry_after=reservation.retry_after,
            budget=budget,
        )
        document = json.loads(render(error, context.request_id))
        document["budget"] = budget
        body = json.dumps(document, separators=(",", ":")).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            *((name.encode(), value.encode()) for name, value in problem_headers(error)),
        ]
        await reply({"type": "http.response.start", "status": error.status, "headers": headers})
        await reply({"type": "http.response.body", "body": body})

    async def _settle(
        self,
        identity: Identity,
        tier: str | None,
        reserved: int,
        weight: float,
        reservation: Reservation | None,
        answer: AnswerReader,
        started: float,
    ) -> None:
        ok = answer.status is not None and 200 <= answer.status < 300
        if not ok or answer.replayed:
            # No model call was paid for (an error before the model, or a stored answer).
            cost, usage = 0, None
        else:
            usage = answer.usage
            if usage is not None and answer.classification is not None:
                usage = usage + answer.classification
            if usage is None:
                cost = reserved
            else:
                charged_weight = self._config.weight(answer.agent) if answer.agent else weight
                cost = math.ceil(usage.total_tokens * charged_weight)
        if reservation is not None:
            try:
                await self._store.settle(reservation, cost)
            except BudgetUnavailable as exc:
                # The reservation expires and is released; the usage below is still recorded.
                logger.warning("token budget not settled", extra={"error": str(exc)})
        if ok and not answer.replayed:
            self._record(identity, tier, answer, usage, cost, started)

    def _record(
        self,
        identity: Identity,
        tier: str | None,
        answer: AnswerReader,
        usage: Usage | None,
        cost: int,
        started: float,
    ) -> None:
        agent = answer.agent or "unknown"
        kind = caller_kind(identity)
        label = identity.username or identity.client_id or identity.api_key_id or ""
        total = usage.total_tokens if usage else 0
        self._recorder.record(
            UsageRecord(
                day=datetime.fromtimestamp(started, UTC).date(),
                kind=kind,
                subject=identity.subject,
                agent=agent,
                label=label,
                tier=tier or "",
                unmetered=0 if usage else 1,
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                total_tokens=total,
                charged_tokens=cost,
            )
        )
        self._metrics.llm_tokens(agent, tier or "none", total, cost)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands over the body read earlier, then the client's own messages."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _watch(reply: Reply, answer: AnswerReader) -> Send:
    """A send that shows every response message to answer on its way to reply."""

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.start(message["status"], message.get("headers", ()))
        elif message["type"] == "http.response.body":
            answer.feed(message.get("body", b""))
            if not message.get("more_body", False):
                answer.finish()
        await reply(message)

    return send
