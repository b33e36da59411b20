"""Gateways the drills run in process: the real app, its default authenticators, a stand-in
orchestrator behind it, and rate-limit keys of its own."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI

from gateway.app import create_app
from gateway.proxy.upstream import HttpxUpstreamClient, Timeouts
from gateway.settings import GatewaySettings
from tests.gateway.harness import RecordingUpstream

TokenMinter = Callable[[str], str]
"""Keycloak base URL -> a new service-account access token issued through that URL."""


def in_process_gateway(
    settings: GatewaySettings, upstream: RecordingUpstream, **options: Any
) -> FastAPI:
    """``create_app(settings, **options)`` proxying to upstream in process."""
    parts: dict[str, Any] = {
        "upstream": HttpxUpstreamClient(
            Timeouts(), transport=httpx.ASGITransport(app=upstream.app())
        ),
        "key_prefix": f"mro:rl:faults-{uuid.uuid4().hex[:12]}",
    }
    parts.update(options)
    return create_app(settings, **parts)
