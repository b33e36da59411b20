"""Typed dependencies for the gateway's own routes, declared once.

Routes take what they need by annotation (``settings: SettingsDep``); tests replace a provider
with ``app.dependency_overrides[get_settings] = ...``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.app_state import Services
from gateway.audit.events import AuditSink
from gateway.audit.store import SqlAuditStore
from gateway.edge.request_context import current_context
from gateway.errors import AuthenticationError, DependencyUnavailable
from gateway.identity import Identity
from gateway.idp.revoker import Revoker
from gateway.metrics import Metrics
from gateway.policy.policy_file import Policy
from gateway.problems import CREDENTIALS_MISSING
from gateway.proxy.upstream import UpstreamClient
from gateway.settings import GatewaySettings

__all__ = [
    "Audit",
    "AuditStoreDep",
    "CurrentIdentity",
    "DbSessions",
    "HttpClientDep",
    "MetricsDep",
    "PolicyDep",
    "RedisDep",
    "RevokerDep",
    "ServicesDep",
    "SettingsDep",
]


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_settings(request: Request) -> GatewaySettings:
    return get_services(request).settings


def get_identity(request: Request) -> Identity:
    """The caller the pipeline authenticated. Raises AuthenticationError on a public route."""
    context = current_context(request.scope)
    if context is None or context.identity is None:
        raise AuthenticationError("This resource needs a credential.", code=CREDENTIALS_MISSING)
    return context.identity


def get_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    return get_services(request).sessions


def get_audit(request: Request) -> AuditSink:
    return get_services(request).audit


def get_audit_store(request: Request) -> SqlAuditStore:
    return get_services(request).audit_store


def get_redis(request: Request) -> Redis:
    return get_services(request).redis


def get_policy(request: Request) -> Policy:
    return get_services(request).policy


def get_http_client(request: Request) -> UpstreamClient:
    return get_services(request).upstream


def get_metrics(request: Request) -> Metrics:
    return get_services(request).metrics


def get_revoker(request: Request) -> Revoker:
    """The app's revoker. Raises DependencyUnavailable where none was built."""
    revoker = get_services(request).revoker
    if revoker is None:
        raise DependencyUnavailable("Revocation is not configured.")
    return revoker


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
CurrentIdentity = Annotated[Identity, Depends(get_identity)]
DbSessions = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessions)]
Audit = Annotated[AuditSink, Depends(get_audit)]
AuditStoreDep = Annotated[SqlAuditStore, Depends(get_audit_store)]
RedisDep = Annotated[Redis, Depends(get_redis)]
PolicyDep = Annotated[Policy, Depends(get_policy)]
HttpClientDep = Annotated[UpstreamClient, Depends(get_http_client)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
RevokerDep = Annotated[Revoker, Depends(get_revoker)]
