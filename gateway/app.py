"""``create_app(settings)``: the gateway as one ASGI app.

The FastAPI app serves the gateway's own routes and OpenAPI document; the request pipeline
(``gateway.pipeline``) runs in front of it as plain ASGI and proxies orchestrator routes without
entering FastAPI. Nothing here does I/O: clients open in the lifespan and close after it.
Keyword arguments replace parts for tests and benchmarks (clock, upstream client, authenticators,
rate-limit backend, audit sink, policy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import httpx
from fastapi import FastAPI
from limits.aio.storage import MemoryStorage
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import text
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import problems
from gateway.app_state import Services
from gateway.audit.events import AuditEvent, AuditSink, QueuedAuditWriter
from gateway.audit.spool import AuditSpool
from gateway.audit.store import SqlAuditStore
from gateway.auth.api_keys import ApiKeyAuthenticator
from gateway.auth.bearer import BearerAuthenticator
from gateway.auth.chain import AuthenticationChain, InvalidCredentialGuard
from gateway.auth.jwks import JWKSCache
from gateway.auth.revocation import RevocationStore
from gateway.auth.standing import OwnerStandings
from gateway.browser.csrf import CsrfGuard
from gateway.browser.login import BrowserAuth
from gateway.browser.sessions import SessionSettings
from gateway.budgets.config import BudgetConfig
from gateway.budgets.meter import UsageMeter
from gateway.budgets.store import RedisBudgetStore
from gateway.budgets.usage_store import UsageRecorder, UsageStore
from gateway.db import create_engine, create_schema, session_factory
from gateway.edge.client_address import TrustedProxies
from gateway.edge.cors import CorsPolicy
from gateway.edge.header_limits import HeaderLimits
from gateway.edge.security_headers import SecurityHeaders
from gateway.identity import Authenticator
from gateway.idp.admin_client import KeycloakAdminClient
from gateway.idp.admin_events import AdminEventFollower
from gateway.idp.revoker import Revoker
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline, PipelineParts
from gateway.policy.authorizer import Authorizer
from gateway.policy.policy_file import Policy
from gateway.proxy.assertion import AssertionSigner
from gateway.proxy.forward import Proxy
from gateway.proxy.upstream import AiohttpUpstreamClient, Timeouts, UpstreamClient
from gateway.ratelimit.fallback import FailoverLimiter, LimitsLimiter
from gateway.ratelimit.redis_window import STRATEGY, RedisWindowLimiter
from gateway.ratelimit.rules import ExceededLog, Limiter, RateLimitRules, namespace
from gateway.routes import api_keys as api_key_routes
from gateway.routes import audit as audit_routes
from gateway.routes import auth as auth_routes
from gateway.routes import health as health_routes
from gateway.routes import logout as logout_routes
from gateway.routes import me as me_routes
from gateway.routes import usage as usage_routes
from gateway.routes import users as user_routes
from gateway.routes import web as web_routes
from gateway.routes import well_known as well_known_routes
from gateway.settings import Environment, GatewaySettings

__all__ = ["GatewayApp", "create_app"]

logger = logging.getLogger(__name__)

KEY_PREFIX = "mro:rl"
# Redis answers in well under a millisecond; waiting longer only delays the fallback.
REDIS_TIMEOUT_SECONDS = 0.5


class GatewayApp(FastAPI):
    """FastAPI with the request pipeline in front of its whole middleware stack.

    Every HTTP request enters the pipeline first; only those for the gateway's own routes go on
    into FastAPI (proxied ones never pass Starlette's middleware). Lifespan and other scopes go
    straight to FastAPI.
    """

    pipeline: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pipeline = self.pipeline
        if pipeline is not None and scope["type"] == "http":
            await pipeline(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def serve_own(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The gateway's own routes: FastAPI as a plain ASGI app (the pipeline's inner app)."""
        await super().__call__(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        # The pipeline answers an unexpected error itself (problem+json with the request id, and
        # one log line); Starlette's outermost error middleware would answer it first in plain
        # text.
        stack = super().build_middleware_stack()
        return stack.app if isinstance(stack, ServerErrorMiddleware) else stack


def _audit_outage(
    audit: AuditSink, metrics: Metrics
) -> tuple[Callable[[str], None], Callable[[float], None]]:
    def on_outage(reason: str) -> None:
        metrics.ratelimit_degraded.set(1)
        audit.emit(AuditEvent(action="ratelimit.fallback", outcome="failure", reason=reason))

    def on_recovery(seconds: float) -> None:
        metrics.ratelimit_degraded.set(0)
        audit.emit(
            AuditEvent(
                action="ratelimit.recovered",
                outcome="success",
                details={"outage_seconds": round(seconds, 3)},
            )
        )

    return on_outage, on_recovery


def create_app(
    settings: GatewaySettings,
    *,
    policy: Policy | None = None,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    upstream: UpstreamClient | None = None,
    authenticators: Sequence[Authenticator] | None = None,
    rate_limiter: Limiter | None = None,
    audit_sink: AuditSink | None = None,
    keycloak_http: httpx.AsyncClient | None = None,
    key_prefix: str = KEY_PREFIX,
) -> GatewayApp:
    """The gateway app for settings; keyword arguments replace the default parts."""
    development = settings.environment is Environment.DEVELOPMENT
    policy = policy or Policy.load(
        Path(settings.policy_file) if settings.policy_file else None,
        environment=settings.environment.value,
    )
    metrics = Metrics()
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    audit_store = SqlAuditStore(sessions)
    writer = None
    if audit_sink is None:
        spool = AuditSpool(Path(settings.audit_spool_dir))
        audit_sink = writer = QueuedAuditWriter(audit_store, spool, metrics)
    audit = audit_sink
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        # One immediate retry covers a pooled connection that a Redis restart closed; backing
        # off would only hold the request before the fallback limiter takes it.
        retry=Retry(NoBackoff(), 1),
    )

    limits_config = policy.rate_limits
    rules = RateLimitRules(
        limits_config.anonymous,
        limits_config.invalid_credentials,
        dict(limits_config.tiers),
        dict(limits_config.llm),
        policy.tier_for,
    )
    on_outage, on_recovery = _audit_outage(audit, metrics)
    limiter = FailoverLimiter(
        rate_limiter
        or RedisWindowLimiter(redis, namespace(key_prefix, STRATEGY, rules.config), clock),
        LimitsLimiter(MemoryStorage(), namespace(key_prefix, "memory", rules.config)),
        on_outage=on_outage,
        on_recovery=on_recovery,
        on_fallback_hit=metrics.ratelimit_fallback.inc,
        clock=monotonic,
    )

    keycloak = keycloak_http or httpx.AsyncClient(timeout=5.0, trust_env=False)
    keycloak_admin = KeycloakAdminClient.from_settings(settings, keycloak, clock=monotonic)
    jwks = JWKSCache(
        settings.discovery_url,
        keycloak,
        cache_seconds=settings.jwks_cache_seconds,
        refetch_cooldown_seconds=settings.jwks_refetch_cooldown_seconds,
        clock=clock,
    )
    session_settings = SessionSettings()
    revocation = RevocationStore(
        redis,
        ttl_seconds=session_settings.access_token_lifetime_seconds + settings.jwt_leeway_seconds,
        cache_seconds=session_settings.revocation_cache_seconds,
        prefix=session_settings.redis_prefix,
    )
    bearer = BearerAuthenticator(jwks, settings, clock, revoked=revocation.is_revoked)
    browser = BrowserAuth.build(
        settings,
        session_settings,
        redis=redis,
        http=keycloak,
        jwks=jwks,
        verifier=bearer,
        revocation=revocation,
        audit=audit,
        clock=clock,
    )
    standings = OwnerStandings(
        redis,
        keycloak_admin,
        prefix=session_settings.redis_prefix,
        fresh_seconds=settings.api_key_owner_fresh_seconds,
        cache_seconds=session_settings.revocation_cache_seconds,
        clock=clock,
    )
    revoker = Revoker(revocation, browser.manager, standings, audit, keycloak_admin.logout)
    follower = (
        AdminEventFollower(
            keycloak_admin,
            redis,
            revoker,
            prefix=session_settings.redis_prefix,
            interval=settings.admin_events_poll_seconds,
        )
        if settings.admin_events_poll_seconds > 0 and settings.client_secret is not None
        else None
    )
    api_keys: ApiKeyAuthenticator | None = None
    if authenticators is None:
        api_keys = ApiKeyAuthenticator(sessions, settings, clock, audit, standings=standings)
        authenticators = [browser.authenticator, bearer, api_keys]
    guard = InvalidCredentialGuard(limiter, rules.invalid_credentials, monotonic)
    signer = AssertionSigner.from_settings(settings, clock)
    upstream = upstream or AiohttpUpstreamClient(
        Timeouts(
            connect=settings.upstream_connect_timeout_seconds,
            read=settings.upstream_read_timeout_seconds,
            write=settings.upstream_read_timeout_seconds,
            pool=settings.upstream_connect_timeout_seconds,
        ),
        settings.upstream_pool_size,
    )

    budgets = policy.budgets or BudgetConfig()
    usage_store = UsageStore(sessions)
    usage_recorder = UsageRecorder(usage_store)
    budget_store = RedisBudgetStore(
        redis, key_prefix, reservation_seconds=budgets.reservation_seconds, clock=clock
    )
    meter = UsageMeter(
        budgets, budget_store, usage_recorder, policy.tier_for, metrics, audit, clock
    )

    async def redis_ready() -> bool:
        return bool(await redis.ping())

    async def database_ready() -> bool:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True

    services = Services(
        settings=settings,
        policy=policy,
        clock=clock,
        metrics=metrics,
        redis=redis,
        engine=engine,
        sessions=sessions,
        audit=audit,
        audit_store=audit_store,
        upstream=upstream,
        signer=signer,
        readiness={"jwks": jwks.ready, "redis": redis_ready, "database": database_ready},
        revoker=revoker,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await upstream.start()
        try:
            await create_schema(engine)
        except Exception as exc:
            # Audit spools and API keys answer 503 until the database is back.
            logger.warning("database not reachable at start", extra={"error": type(exc).__name__})
        if writer is not None:
            await writer.start()
        flusher = asyncio.create_task(api_keys.run_periodic_flush()) if api_keys else None
        following = asyncio.create_task(follower.run()) if follower else None
        usage_recorder.start()
        try:
            yield
        finally:
            for task in (flusher, following):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if api_keys is not None:
                await api_keys.flush_last_used()
            await usage_recorder.aclose()
            if writer is not None:
                await writer.aclose()
            await upstream.aclose()
            await redis.aclose()
            await keycloak_admin.aclose()
            if keycloak_http is None:
                await keycloak.aclose()
            await engine.dispose()

    app = GatewayApp(
        title="MRO Gateway",
        summary="The gateway's own routes; orchestrator routes are documented there.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if development else None,
        openapi_url="/openapi.json" if development else None,
        redoc_url=None,
    )
    app.state.services = services
    app.state.keycloak_admin = keycloak_admin
    app.state.usage_store, app.state.usage_recorder = usage_store, usage_recorder
    problems.install(app)
    app.include_router(health_routes.router)
    app.include_router(well_known_routes.router)
    app.include_router(auth_routes.create_router(browser))
    app.include_router(logout_routes.create_router(browser))
    app.include_router(audit_routes.router)
    app.include_router(me_routes.create_router())
    app.include_router(user_routes.create_router())
    app.include_router(usage_routes.create_router(clock))
    app.include_router(web_routes.create_router(form_action_origins=[settings.keycloak_url]))
    app.include_router(
        api_key_routes.create_router(
            clock=clock, on_key_changed=api_keys.invalidate if api_keys else None
        )
    )
    app.pipeline = Pipeline(
        app.serve_own,
        PipelineParts(
            policy=policy,
            proxies=TrustedProxies(settings.trusted_proxies),
            max_body_bytes=settings.max_body_bytes,
            header_limits=HeaderLimits(settings.max_header_bytes, settings.max_header_fields),
            cors=CorsPolicy(settings.cors_allowed_origins),
            security=SecurityHeaders(settings.public_url),
            authn=AuthenticationChain(
                authenticators,
                guard,
                metrics,
                audit,
                session_cookie=browser.authenticator.session_cookie,
            ),
            authz=Authorizer(policy, audit),
            rules=rules,
            limiter=limiter,
            exceeded=ExceededLog(monotonic),
            proxy=Proxy(upstream, settings.orchestrator_url, signer, metrics, settings.public_url),
            metrics=metrics,
            audit=audit,
            csrf=CsrfGuard(browser.manager, session_settings.cookie_name, settings.public_url),
            meter=meter,
        ),
    )
    return app
