"""``python -m devstack up``: the whole stack on its embedded defaults, in the foreground.

Every process it starts is supervised (``devstack.supervise``): one that exits is logged and
restarted with backoff while the others keep serving, one that keeps crashing is given up on.
The data lives under ``devstack.paths.state_dir()`` and survives restarts; ``reset`` removes it.
Ctrl-C (or SIGTERM) stops every process this command started; services that were already
running are reused and left alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from devstack.keycloak import (
    GATEWAY_CLIENT_ID,
    client_secret,
    ensure_keycloak,
    load_dev_credentials,
    provision_dev_users,
)
from devstack.mailpit import ensure_mailpit
from devstack.paths import ROOT, ensure_dirs, state_dir
from devstack.procs import Service, StackError, port_open, stop_started
from devstack.redis import ensure_redis
from devstack.services import start_fake_azure, start_gateway, start_orchestrator
from devstack.supervise import Supervisor


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _banner(
    gateway: Service, keycloak: Service, credentials: dict[str, Any], mail: Service | None = None
) -> str:
    lines = [
        "",
        "MRO Gateway is up (development defaults; dev-only credentials below).",
        f"  gateway   {gateway.url}   (try {gateway.url}/readyz)",
        f"  keycloak  {keycloak.url}   (realm mro: {keycloak.url}/realms/mro/account)",
        *([f"  mail      {mail.url}   (every mail Keycloak sends)"] if mail else []),
        "",
        "  dev users (username / password / roles):",
    ]
    for user in credentials.get("users", []):
        lines.append(
            f"    {user['username']:<10} {user['password']:<28} {', '.join(user['roles'])}"
        )
    lines.append("  dev clients (client id / secret / grant):")
    for client in credentials.get("clients", []):
        lines.append(
            f"    {client['client_id']:<18} {client['client_secret']:<28} {client['grant']}"
        )
    lines += ["", "Press Ctrl-C to stop.", ""]
    return "\n".join(lines)


class _Stop(Exception):
    """Ctrl-C or SIGTERM: stop everything this command started."""


# The dev stack's own data, under state_dir(): removed by `reset`.
_STATE_ENTRIES = ("keycloak", "redis", "orchestrator.db", "gateway.db", "audit-spool")


def reset() -> int:
    """Remove the dev stack's data (Keycloak's database, Redis's file, the service databases)."""
    gateway_port = _port("MRO_GATEWAY_PORT", 8000)
    if port_open("127.0.0.1", gateway_port):
        print(f"error: port {gateway_port} is in use: stop `make dev` first", file=sys.stderr)
        return 1
    state = state_dir()
    for entry in _STATE_ENTRIES:
        # SQLite's companions too; never the test servers' keycloak-data/ or pytest-* folders.
        for path in [state / entry, *(state / f"{entry}-{x}" for x in ("wal", "shm", "journal"))]:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    print(f"removed the dev stack's data under {state.name}/: the next start begins from nothing")
    return 0


def up() -> int:
    """Start Redis, Keycloak, the offline model, the orchestrator and the gateway; supervise
    them until Ctrl-C or SIGTERM."""
    ensure_dirs()
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor()
    stopping = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            raise _Stop

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    credentials = load_dev_credentials()
    gateway_client = next(c for c in credentials["clients"] if c["client_id"] == "mro-gateway")
    gateway_port = _port("MRO_GATEWAY_PORT", 8000)
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    try:
        print("starting redis ...", flush=True)
        redis_port = _port("MRO_REDIS_PORT", 6379)
        redis = supervisor.add("redis", lambda: ensure_redis(redis_port, data_dir=state / "redis"))
        print("starting mailpit (Keycloak's mail) ...", flush=True)
        mail = supervisor.add("mailpit", ensure_mailpit)
        print("starting keycloak (first run downloads it through Maven) ...", flush=True)
        keycloak_port = _port("MRO_KEYCLOAK_PORT", 8080)

        def _keycloak() -> Service:
            service = ensure_keycloak(
                keycloak_port, data_dir=state / "keycloak", gateway_url=gateway_url
            )
            provision_dev_users(service.url)
            return service

        keycloak = supervisor.add("keycloak", _keycloak)
        print("starting the offline model server ...", flush=True)
        azure_port = _port("MRO_FAKE_AZURE_PORT", 8002)
        azure = supervisor.add("fake-azure", lambda: start_fake_azure(azure_port))
        print("starting the orchestrator ...", flush=True)
        orchestrator_port = _port("MRO_ORCHESTRATOR_PORT", 8001)
        orchestrator = supervisor.add(
            "orchestrator",
            lambda: start_orchestrator(
                orchestrator_port, gateway_url=gateway_url, azure_url=azure.url, state_dir=state
            ),
        )
        print("starting the gateway ...", flush=True)
        gateway = supervisor.add(
            "gateway",
            lambda: start_gateway(
                gateway_port,
                keycloak_url=keycloak.url,
                redis_url=redis.url,
                orchestrator_url=orchestrator.url,
                client_secret=gateway_client["client_secret"],
                state_dir=state,
            ),
        )
        print(_banner(gateway, keycloak, credentials, mail), flush=True)
        while True:
            time.sleep(0.5)
            supervisor.check()
    except _Stop:
        return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stopping.set()
        supervisor.stop_all()
        stop_started()
        print("stopped.", flush=True)


def token(username: str) -> int:
    """Print a dev user's access token, obtained by logging in through Keycloak's own form.

    The realm allows no password grant, so this drives the authorization code + PKCE flow over
    HTTP exactly as the tests do (dev users and dev secrets only).
    """
    sys.path.insert(0, str(ROOT))
    from tests.keycloak_flows import FlowError, authorization_code_tokens

    credentials = load_dev_credentials()
    passwords = {user["username"]: user["password"] for user in credentials["users"]}
    if username not in passwords:
        print(f"error: {username!r} is not a dev user ({', '.join(passwords)})", file=sys.stderr)
        return 2
    base_url = os.environ.get(
        "MRO_KEYCLOAK_URL", f"http://127.0.0.1:{_port('MRO_KEYCLOAK_PORT', 8080)}"
    )
    try:
        tokens = authorization_code_tokens(
            base_url,
            username,
            passwords[username],
            client_secret=client_secret(GATEWAY_CLIENT_ID, credentials),
            # The realm allows the running stack's own callback (MRO_GATEWAY_PORT).
            redirect_uri=f"http://127.0.0.1:{_port('MRO_GATEWAY_PORT', 8000)}/auth/callback",
        )
    except FlowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(tokens["access_token"])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    parser.add_argument(
        "command",
        choices=["up", "reset", "token"],
        help="up: run the whole stack; reset: remove its data; token USER: print a dev user's"
        " access token",
    )
    parser.add_argument("username", nargs="?", help="dev user for `token`")
    args = parser.parse_args(argv)
    if args.command == "token":
        if not args.username:
            parser.error("token needs a dev user name")
        return token(args.username)
    if args.command == "reset":
        return reset()
    return up()


if __name__ == "__main__":
    sys.exit(main())
