"""The gateway's request pipeline, one plain ASGI middleware to read top to bottom.

For every HTTP request, in this order:

1. give it a request id; refuse oversize request heads (431), ambiguous paths (400) and bodies
   over the limit (413); answer CORS preflights;
2. find its route rule in the policy: unknown path 404, known path with another method 405;
3. authenticate (not on public routes): 401, or 429 for an address sending bad credentials;
4. authorise: 403 without the rule's permission;
5. rate limit per identity (or per client IP on public routes): 429;
6. proxy it to the orchestrator (LLM routes under the caller's token budgets, 429 when spent:
   ``gateway.budgets.meter``), or hand it to the gateway's own FastAPI routes.

Every answer, including errors (RFC 9457 problem+json from ``gateway.problems``), carries the
request id, the security fields, the CORS fields for allowed origins and the RateLimit fields.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.audit.events import AuditEvent, AuditSink
from gateway.auth.chain import AuthenticationChain
from gateway.browser.csrf import CsrfGuard
from gateway.budgets.meter import UsageMeter
from gateway.edge.ambiguous_paths import check_path
from gateway.edge.body_limit import limit_body
from gateway.edge.client_address import TrustedProxies
from gateway.edge.cors import CorsPolicy
from gateway.edge.header_limits import HeaderLimits
from gateway.edge.request_context import RequestContext
from gateway.edge.request_id import assign_request_id
from gateway.edge.security_headers import SecurityHeaders
from gateway.errors import GatewayError, NotFound, RateLimited
from gateway.metrics import Metrics
from gateway.policy.authorizer import Authorizer
from gateway.policy.policy_file import Policy, RouteRule, Upstream
from gateway.problems import MethodNotAllowed, send_problem
from gateway.proxy.forward import ClientDisconnected, Proxy
from gateway.ratelimit.rules import Decision, ExceededLog, Limiter, RateLimitRules, state_header

__all__ = ["Pipeline", "PipelineParts"]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("gateway.access")

# Logged and counted for requests whose client left before the answer was complete.
CLIENT_CLOSED = 499
_REQUEST_ID = b"x-request-id"


@dataclass(frozen=True, slots=True)
class PipelineParts:
    """The collaborators of the pipeline, built once per app."""

    policy: Policy
    proxies: TrustedProxies
    max_body_bytes: int
    cors: CorsPolicy
    security: SecurityHeaders
    authn: AuthenticationChain
    authz: Authorizer
    rules: RateLimitRules
    limiter: Limiter
    exceeded: ExceededLog
    proxy: Proxy
    metrics: Metrics
    audit: AuditSink
    # Cookie-authenticated unsafe requests need a same-origin Origin and the session's token.
    csrf: CsrfGuard | None = None
    # Token budgets of LLM routes: reserve before forwarding, settle from the answer.
    meter: UsageMeter | None = None
    # Most header fields, and bytes of their names and values, a request may send (else 431).
    header_limits: HeaderLimits = field(default_factory=HeaderLimits)


def _log_access(fields: dict[str, object]) -> None:
    """One access log line: ``access_logger.info("request", extra=fields)`` without looking up
    the caller's source line in the stack (the line's fields never include it)."""
    record = access_logger.makeRecord(
        access_logger.name, logging.INFO, __file__, 0, "request", (), None, None, fields
    )
    access_logger.handle(record)


class _Reply:
    """The downstream ``send``, adding the gateway's fields to the response head."""

    __slots__ = ("extra", "path", "request_id", "security", "send", "started", "status")

    def __init__(self, send: Send, request_id: str, security: SecurityHeaders, path: str) -> None:
        self.send = send
        self.request_id = request_id
        self.security = security
        self.path = path
        self.extra: list[tuple[bytes, bytes]] = []
        self.started = False
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
            headers = list(message.get("headers", ()))
            present = {name.lower() for name, _ in headers}
            for extra in self.extra:
                if extra[0] not in present:
                    headers.append(extra)
                    present.add(extra[0])
            headers.append((_REQUEST_ID, self.request_id.encode()))
            self.security.add(headers, self.path, present)
            message = {**message, "headers": headers}
        await self.send(message)

    async def fail(self, exc: GatewayError) -> None:
        if self.started:
            # The head is gone; ending here makes the server drop the connection.
            logger.warning("error after the response started", extra={"code": exc.code})
            return
        await send_problem(self, exc, self.request_id)


class Pipeline:
    """Authenticates, authorises, rate-limits and routes every HTTP request (see module doc)."""

    def __init__(self, app: ASGIApp, parts: PipelineParts) -> None:
        self.app = app
        self.parts = parts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        parts = self.parts
        context = RequestContext(
            request_id=assign_request_id(scope, parts.proxies),
            client_ip=parts.proxies.client_ip(scope),
        )
        context.attach(scope)
        reply = _Reply(send, context.request_id, parts.security, scope["path"])
        try:
            await self._handle(scope, receive, reply, context)
        except GatewayError as exc:
            await reply.fail(exc)
        except ClientDisconnected:
            reply.status = CLIENT_CLOSED
        except OSError:
            if reply.started:
                # The client went away while the answer was streaming (a closed SSE tab).
                reply.status = CLIENT_CLOSED
            else:
                await self._unexpected(reply, context)
        except Exception:
            await self._unexpected(reply, context)
        finally:
            seconds = time.perf_counter() - started
            route = context.route or "unmatched"
            parts.metrics.observe_request(route, scope["method"], reply.status, seconds)
            if access_logger.isEnabledFor(logging.INFO):
                _log_access(
                    {
                        "request_id": context.request_id,
                        "method": scope["method"],
                        "route": route,
                        "status": reply.status,
                        "ms": round(seconds * 1000, 2),
                        "client_ip": context.client_ip,
                        "sub": context.identity.subject if context.identity else None,
                    }
                )

    async def _handle(
        self, scope: Scope, receive: Receive, reply: _Reply, context: RequestContext
    ) -> None:
        parts = self.parts
        method: str = scope["method"]
        path: str = scope["path"]
        headers = Headers(scope=scope)

        # 1. Refuse oversize heads, what cannot be routed unambiguously, and bodies over the limit.
        parts.header_limits.check(scope)
        check_path(scope)
        receive = limit_body(scope, receive, parts.max_body_bytes)
        if parts.cors:
            reply.extra += parts.cors.response_fields(headers)
            if CorsPolicy.is_preflight(method, headers):
                await parts.cors.preflight(headers, path, parts.policy.allowed_methods, reply)
                return

        # 2. Route: a method and path without a rule do not exist.
        rule = self._route(method, path)
        context.route = rule.path

        # 3. Authenticate and 4. authorise; public routes are limited per client address.
        if rule.public or rule.permission is None:
            key, limits = parts.rules.for_client(context.client_ip)
        else:
            identity = parts.authz.grant(await parts.authn.authenticate(headers, context))
            context.identity = identity
            if parts.csrf is not None:
                await parts.csrf.check(method, headers, identity, context, parts.audit)
            parts.authz.authorise(identity, rule.permission, context)
            key, limits = parts.rules.for_identity(identity, rule.llm)

        # 5. Rate limit (not the web UI's packaged files: see RouteRule.static).
        if rule.static:
            await self.app(scope, receive, reply)
            return
        decision = await parts.limiter.hit(key, limits)
        reply.extra += [
            (b"ratelimit-policy", parts.rules.policy_field(limits).encode()),
            (b"ratelimit", state_header(decision).encode()),
        ]
        if not decision.allowed:
            raise self._exceeded(key, decision, context)

        # 6. Dispatch; LLM routes spend the caller's token budgets.
        if rule.upstream is Upstream.ORCHESTRATOR:
            if rule.llm and parts.meter is not None:
                await parts.meter.forward(scope, receive, reply, context, parts.proxy.forward)
            else:
                await parts.proxy.forward(scope, receive, reply, context)
        else:
            await self.app(scope, receive, reply)

    @staticmethod
    async def _unexpected(reply: _Reply, context: RequestContext) -> None:
        logger.exception("unhandled error", extra={"request_id": context.request_id})
        await reply.fail(GatewayError("The gateway could not answer this request."))

    def _route(self, method: str, path: str) -> RouteRule:
        match = self.parts.policy.match(method, path)
        if match is not None:
            return match.rule
        allowed = self.parts.policy.allowed_methods(path)
        if allowed:
            raise MethodNotAllowed(allowed, f"{method} is not allowed here.")
        raise NotFound("No such resource.")

    def _exceeded(self, key: str, decision: Decision, context: RequestContext) -> RateLimited:
        for name in decision.exhausted:
            self.parts.metrics.rate_limited(name)
        if self.parts.exceeded.first_in_window(key, decision.retry_after):
            self.parts.audit.emit(
                AuditEvent(
                    action="ratelimit.exceeded",
                    outcome="denied",
                    actor=context.identity.subject if context.identity else None,
                    target=context.route,
                    reason=",".join(decision.exhausted),
                    request_id=context.request_id,
                    client_ip=context.client_ip,
                )
            )
        return RateLimited("Too many requests; slow down.", retry_after=decision.retry_after)
