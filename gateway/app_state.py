"""The shared objects of one gateway app, built by ``create_app`` and opened in its lifespan."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.audit.events import AuditSink
from gateway.audit.store import SqlAuditStore
from gateway.idp.revoker import Revoker
from gateway.metrics import Metrics
from gateway.policy.policy_file import Policy
from gateway.proxy.assertion import AssertionSigner
from gateway.proxy.upstream import UpstreamClient
from gateway.settings import GatewaySettings

__all__ = ["ReadinessCheck", "Services"]

ReadinessCheck = Callable[[], Awaitable[bool]]


@dataclass
class Services:
    """What routes reach through ``gateway.dependencies``."""

    settings: GatewaySettings
    policy: Policy
    clock: Callable[[], float]
    metrics: Metrics
    redis: Redis
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    audit: AuditSink
    audit_store: SqlAuditStore
    upstream: UpstreamClient
    signer: AssertionSigner
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    # Ends a person's credentials when their standing changes (None: no Redis-backed sessions).
    revoker: Revoker | None = None
