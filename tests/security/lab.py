"""The lab gateway: the real gateway app served over HTTP in front of a recording upstream.

``live_stack`` runs the gateway as a separate process, which is what clients meet, but its
orchestrator does not record what reached it and its clock cannot move. The lab is the same
``create_app`` served by uvicorn (configured as ``gateway.__main__`` configures it) against the
real Keycloak and Redis, with four things a test can see or steer:

* ``upstream``: a stand-in orchestrator recording every request it receives (and answering one
  route with fields that try to override the gateway's own);
* ``clock``: the gateway's wall clock (token claims, key caches, windows), pinned or offset;
* ``keycloak``: the transport of the gateway's HTTP client for Keycloak, counting requests (a
  counting relay in front of Keycloak's discovery and JWKS endpoints);
* ``audit``: every audit event the gateway emitted.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.procs import free_port
from gateway.app import create_app
from gateway.policy.policy_file import Policy
from gateway.settings import GatewaySettings
from tests.gateway.harness import RecordingUpstream, serve
from tests.gateway.login_stack import CountingTransport, RecordingAudit
from tests.security.evidence import client_from


class HostileUpstream(RecordingUpstream):
    """The recording upstream, plus ``/api/conversations/hostile``: an answer whose fields try
    to override what the gateway owns (CORS, framing, content policy, request id)."""

    FIELDS: Mapping[str, str] = {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Credentials": "true",
        "X-Frame-Options": "ALLOWALL",
        "Content-Security-Policy": "default-src *",
        "X-Request-ID": "upstream-chosen-id",
        "Strict-Transport-Security": "max-age=0",
    }

    async def hostile(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"hostile": True}, headers=dict(self.FIELDS))

    def app(self) -> Starlette:
        base = super().app()
        base.router.routes.insert(0, Route("/api/conversations/hostile", self.hostile))
        return base


class LabClock:
    """Real time plus an offset, or a pinned instant; callable like ``time.time``."""

    def __init__(self) -> None:
        self.pinned: float | None = None
        self.offset = 0.0

    def __call__(self) -> float:
        return self.pinned if self.pinned is not None else time.time() + self.offset

    def pin(self, instant: float) -> None:
        self.pinned = instant

    def advance(self, seconds: float) -> None:
        if self.pinned is not None:
            self.pinned += seconds
        else:
            self.offset += seconds


@dataclass
class Lab:
    """A running lab gateway and what a test may look at or move."""

    url: str
    settings: GatewaySettings
    clock: LabClock
    keycloak: CountingTransport
    audit: RecordingAudit
    upstream: RecordingUpstream

    def client(self, source: str | None = None, **kwargs: Any) -> httpx.Client:
        """A client of the lab gateway, connecting from the loopback address source."""
        return client_from(self.url, source, **kwargs)

    def jwks_fetches(self) -> int:
        return self.keycloak.count("/protocol/openid-connect/certs")


def _limits_toml(limits: Mapping[str, Any]) -> str:
    lines = ["[rate_limits]"]
    lines += [f'{name} = "{limits[name]}"' for name in ("anonymous", "invalid_credentials")]
    for table in ("tiers", "llm"):
        lines.append(f"[rate_limits.{table}]")
        lines += [f'{role} = "{value}"' for role, value in limits[table].items()]
    return "\n".join(lines) + "\n"


def _without_rate_limits(policy: str) -> str:
    """policy's text without its ``[rate_limits…]`` tables (every other table kept)."""
    kept: list[str] = []
    inside = False
    for line in policy.splitlines():
        header = line.strip()
        if header.startswith("["):
            inside = header.startswith(("[rate_limits]", "[rate_limits."))
        if not inside:
            kept.append(line)
    return "\n".join(kept) + "\n"


def policy_with_limits(folder: Path, **limits: Any) -> Policy:
    """The packaged policy with its rate limits replaced by limits (others as packaged)."""
    return Policy.load(policy_file_with_limits(folder, **limits), environment="development")


def policy_file_with_limits(folder: Path, **limits: Any) -> Path:
    """A file of the packaged policy with its rate limits replaced by limits."""
    packaged = (
        importlib.resources.files("gateway.policy").joinpath("policy.toml").read_text("utf-8")
    )
    merged = {**tomllib.loads(packaged)["rate_limits"], **limits}
    path = folder / f"policy-{uuid.uuid4().hex[:8]}.toml"
    path.write_text(_without_rate_limits(packaged) + _limits_toml(merged), "utf-8")
    return path


@contextlib.contextmanager
def serve_gateway(app: FastAPI, port: int) -> Iterator[None]:
    """Serve app on 127.0.0.1:port as ``gateway.__main__`` does, from a thread."""
    with serve(app, lifespan="on", port=port):
        yield


def _closing(app: FastAPI, http: httpx.AsyncClient) -> None:
    """Close http at the end of app's lifespan, on the server's own event loop."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(instance: Any) -> AsyncIterator[Any]:
        try:
            async with inner(instance) as state:
                yield state
        finally:
            await http.aclose()

    app.router.lifespan_context = lifespan


@contextlib.contextmanager
def lab_gateway(
    folder: Path,
    *,
    keycloak_url: str,
    redis_url: str,
    limits: Mapping[str, Any] | None = None,
    port: int | None = None,
    upstream: RecordingUpstream | None = None,
    **overrides: Any,
) -> Iterator[Lab]:
    """A lab gateway on port (default: a free one); overrides replace GatewaySettings fields."""
    folder.mkdir(parents=True, exist_ok=True)
    upstream = upstream or HostileUpstream()
    with serve(upstream.app()) as upstream_url:
        port = port or free_port()
        values: dict[str, Any] = {
            "environment": "development",
            "public_url": f"http://127.0.0.1:{port}",
            "keycloak_url": keycloak_url,
            "redis_url": redis_url,
            "orchestrator_url": upstream_url,
            "database_url": f"sqlite+aiosqlite:///{folder / 'gateway.db'}",
            "audit_spool_dir": str(folder / "audit-spool"),
            "upstream_read_timeout_seconds": 10.0,
            **overrides,
        }
        settings = GatewaySettings(**values)
        clock = LabClock()
        transport = CountingTransport()
        http = httpx.AsyncClient(transport=transport, timeout=5.0)
        audit = RecordingAudit()
        app = create_app(
            settings,
            policy=policy_with_limits(folder, **(limits or {})),
            clock=clock,
            audit_sink=audit,
            keycloak_http=http,
            key_prefix=f"mro:rl:sec-{uuid.uuid4().hex[:12]}",
        )
        _closing(app, http)
        with serve_gateway(app, port):
            yield Lab(settings.public_url, settings, clock, transport, audit, upstream)


LabFactory = Callable[..., contextlib.AbstractContextManager[Lab]]
