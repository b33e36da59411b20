"""``python -m devstack up``: the whole stack on its embedded defaults, in the foreground.

Ctrl-C (or SIGTERM) stops every process this command started; services that were already
running are reused and left alone.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
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
from devstack.paths import ROOT, ensure_dirs
from devstack.procs import Service, StackError
from devstack.redis import ensure_redis
from devstack.services import start_fake_azure, start_gateway, start_orchestrator


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


def up() -> int:
    """Start Redis, Keycloak, the offline model, the orchestrator and the gateway; wait."""
    ensure_dirs()
    started: list[Service] = []
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    credentials = load_dev_credentials()
    gateway_client = next(c for c in credentials["clients"] if c["client_id"] == "mro-gateway")
    gateway_port = _port("MRO_GATEWAY_PORT", 8000)
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    try:
        print("starting redis ...", flush=True)
        redis = ensure_redis(_port("MRO_REDIS_PORT", 6379))
        started.append(redis)
        print("starting mailpit (Keycloak's mail) ...", flush=True)
        mail = ensure_mailpit()
        started.append(mail)
        print("starting keycloak (first run downloads it through Maven) ...", flush=True)
        keycloak = ensure_keycloak(_port("MRO_KEYCLOAK_PORT", 8080))
        started.append(keycloak)
        provision_dev_users(keycloak.url)
        print("starting the offline model server ...", flush=True)
        azure = start_fake_azure(_port("MRO_FAKE_AZURE_PORT", 8002))
        started.append(azure)
        print("starting the orchestrator ...", flush=True)
        orchestrator = start_orchestrator(
            _port("MRO_ORCHESTRATOR_PORT", 8001), gateway_url=gateway_url, azure_url=azure.url
        )
        started.append(orchestrator)
        print("starting the gateway ...", flush=True)
        gateway = start_gateway(
            gateway_port,
            keycloak_url=keycloak.url,
            redis_url=redis.url,
            orchestrator_url=orchestrator.url,
            client_secret=gateway_client["client_secret"],
        )
        started.append(gateway)
        print(_banner(gateway, keycloak, credentials, mail), flush=True)
        while not stop.wait(1.0):
            for service in started:
                if service.process is not None and service.process.poll() is not None:
                    print(f"{service.name} exited:\n{service.log_tail()}", file=sys.stderr)
                    return 1
        return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for service in reversed(started):
            service.stop()
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
        choices=["up", "token"],
        help="up: run the whole stack; token USER: print a dev user's access token",
    )
    parser.add_argument("username", nargs="?", help="dev user for `token`")
    args = parser.parse_args(argv)
    if args.command == "token":
        if not args.username:
            parser.error("token needs a dev user name")
        return token(args.username)
    return up()


if __name__ == "__main__":
    sys.exit(main())
