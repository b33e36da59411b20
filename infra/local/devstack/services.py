"""The project's own processes: local Azure OpenAI server, orchestrator, gateway."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from devstack.paths import VAR
from devstack.procs import Service, StackError, http_ok, port_open, start, wait_until

HOST = "127.0.0.1"
# Dev-only key the local Azure OpenAI server accepts; real deployments set their own.
DEV_AZURE_KEY = "dev-only-azure-key"


def _python_module(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def _start_http(
    name: str, module: str, port: int, env: Mapping[str, str], ready_path: str, timeout: float
) -> Service:
    url = f"http://{HOST}:{port}"
    if port_open(HOST, port):
        raise StackError(f"port {port} for {name} is already in use")
    service = start(name, _python_module(module), url=url, env=dict(env))
    wait_until(service, lambda: http_ok(url + ready_path), timeout=timeout)
    return service


def start_fake_azure(port: int) -> Service:
    """The local server speaking the Azure OpenAI REST format (offline model)."""
    env = {"MRO_FAKE_AZURE_HOST": HOST, "MRO_FAKE_AZURE_PORT": str(port)}
    return _start_http("fake-azure", "orchestrator.fake_azure", port, env, "/healthz", 30)


def start_orchestrator(
    port: int,
    *,
    gateway_url: str,
    azure_url: str,
    state_dir: Path = VAR,
    extra: Mapping[str, str] | None = None,
) -> Service:
    """The orchestrator, trusting the gateway's JWKS and talking to azure_url."""
    env = {
        "MRO_ORCHESTRATOR_HOST": HOST,
        "MRO_ORCHESTRATOR_PORT": str(port),
        "MRO_ORCHESTRATOR_GATEWAY_JWKS_URL": f"{gateway_url}/.well-known/jwks.json",
        "MRO_ORCHESTRATOR_AZURE_ENDPOINT": azure_url,
        "MRO_ORCHESTRATOR_AZURE_API_KEY": DEV_AZURE_KEY,
        "MRO_ORCHESTRATOR_DATABASE_URL": f"sqlite+aiosqlite:///{state_dir / 'orchestrator.db'}",
        **(extra or {}),
    }
    return _start_http("orchestrator", "orchestrator", port, env, "/healthz", 60)


def start_gateway(
    port: int,
    *,
    keycloak_url: str,
    redis_url: str,
    orchestrator_url: str,
    client_secret: str,
    state_dir: Path = VAR,
    extra: Mapping[str, str] | None = None,
) -> Service:
    """The gateway in front of the orchestrator, ready once /readyz answers 200."""
    env = {
        "MRO_GATEWAY_HOST": HOST,
        "MRO_GATEWAY_PORT": str(port),
        "MRO_GATEWAY_PUBLIC_URL": f"http://{HOST}:{port}",
        "MRO_GATEWAY_KEYCLOAK_URL": keycloak_url,
        "MRO_GATEWAY_CLIENT_SECRET": client_secret,
        "MRO_GATEWAY_REDIS_URL": redis_url,
        "MRO_GATEWAY_ORCHESTRATOR_URL": orchestrator_url,
        "MRO_GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{state_dir / 'gateway.db'}",
        "MRO_GATEWAY_AUDIT_SPOOL_DIR": str(state_dir / "audit-spool"),
        # The local stack serves plain http on loopback: no Secure cookies (refused in production).
        "MRO_GATEWAY_SESSION_COOKIE_SECURE": "false",
        **(extra or {}),
    }
    return _start_http("gateway", "gateway", port, env, "/readyz", 60)
