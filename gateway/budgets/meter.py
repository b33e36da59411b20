"""Token budgets on the wire: reserve before an LLM request goes upstream, settle from its answer.

For a request on an ``llm`` route ``UsageMeter.forward``:

1. reads the (small, size-limited) JSON body for ``content``, ``agent`` and ``max_tokens``; a body
   without ``max_tokens`` (or with null) gets the policy's ``default_max_tokens`` so that the
   answer cannot run past the estimate; any other ``max_tokens`` than a JSON integer from 1 to
   16,384 is refused with 422 ``validation_failed`` before anything is reserved
   (``gateway.budgets.question``);
2. estimates the cost: ``ceil(len(content) / chars_per_token) + prompt_overhead_tokens +
   max_tokens``, times the agent's weight (the named agent's, else the dearest agent the caller
   may use, since the orchestrator's classifier picks the agent later);
3. reserves it in every budget that applies (``gateway.budgets.store``); over budget: 429
   ``token_budget_exceeded`` naming the budget, with ``Retry-After`` to the window's edge;
4. forwards, watching the answer pass without holding it back: the JSON body's
   ``assistant_message`` (``usage``, ``agent``), or the SSE events ``meta`` (``agent``) and
   ``done`` (``usage``); ``classification_usage`` is added wherever the orchestrator reports it
   (``gateway.budgets.answer_reader``);
5. settles, however the exchange ended: the real tokens times the agent's weight; nothing for
   errors and replayed answers; the whole reservation for an answer without usage (a stream cut
   off midway, a client gone): its real cost is unknown, and it was at most that.

Responses carry the budgets as ``RateLimit-Policy``/``RateLimit`` members with the quota unit
``qu="tokens"``, and ``MRO-Budget-Warning: user:day 82%`` once a budget is 80 % used
(``gateway.budgets.response_fields``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

import anyio
from starlette.types import Message, Receive, Scope, Send

from gateway.audit.events import AuditEvent, AuditSink
from gateway.budgets.answer_reader import AnswerReader, Usage
from gateway.budgets.config import BudgetConfig, caller_kind
from gateway.budgets.question import parse_question, read_body, replay, with_body
from gateway.budgets.response_fields import add_members, budget_fields
from gateway.budgets.store import BudgetUnavailable, RedisBudgetStore, Reservation
from gateway.budgets.usage_store import UsageRecord, UsageRecorder
from gateway.edge.request_context import RequestContext
from gateway.errors import DependencyUnavailable, RateLimited
from gateway.identity import Identity
from gateway.metrics import Metrics
from gateway.problems import problem_headers, render

__all__ = ["TokenBudgetExceeded", "UsageMeter"]

logger = logging.getLogger(__name__)


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
        question = parse_question(await read_body(receive), config.default_max_tokens)
        if question.rewritten:
            scope = with_body(scope, question.body)
        weight = config.reserve_weight(question.agent, identity.permissions)
        cost = math.ceil(config.estimate(question.chars, question.max_tokens) * weight)
        tier = self._tier_for(identity.roles)
        started = self._clock()
        reservation = await self._reserve(identity, tier, cost, context)
        if reservation is not None:
            fields = budget_fields(reservation.states, started, config.warn_ratio)
            for name, value in fields.items():
                add_members(reply.extra, name, value)
            if not reservation.allowed:
                await self._refuse(reservation, reply, context)
                return
        answer = AnswerReader()
        try:
            await proxy(scope, replay(question.body, receive), _watch(reply, answer), context)
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
