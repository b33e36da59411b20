"""Two gateway processes behind one imagined load balancer: one Redis, one database, one
assertion signing key and one Keycloak client (a copy of the realm's gateway client)."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from keycloak import KeycloakAdmin

from devstack.procs import free_port
from gateway.proxy.assertion import generate_signing_key_pem
from tests.faults.processes import ForkServer, HttpProcess, gateway_process
from tests.fixtures.stack import RedisServer
from tests.gateway.harness import RecordingUpstream, serve
from tests.gateway.login_stack import KeycloakClient, keycloak_client


@dataclass
class Replicas:
    a: HttpProcess
    b: HttpProcess
    client: KeycloakClient

    @property
    def both(self) -> tuple[HttpProcess, HttpProcess]:
        return (self.a, self.b)

    def alternate(self) -> Iterator[HttpProcess]:
        return itertools.cycle(self.both)


def start_together(*processes: HttpProcess) -> None:
    for process in processes:
        process.launch()
    for process in processes:
        process.wait_ready()


@contextlib.contextmanager
def two_replicas(
    forks: ForkServer,
    keycloak_url: str,
    keycloak_admin: KeycloakAdmin,
    folder: Path,
    env: Mapping[str, str],
) -> Iterator[Replicas]:
    """Replicas a and b in front of a recording upstream; env adds ``MRO_GATEWAY_*`` settings."""
    redis = RedisServer()
    redis.start()
    ports = {"a": free_port(), "b": free_port()}
    urls = [f"http://127.0.0.1:{port}" for port in ports.values()]
    try:
        with (
            serve(RecordingUpstream().app()) as upstream,
            keycloak_client(keycloak_admin, urls) as client,
        ):
            shared = {
                "MRO_GATEWAY_KEYCLOAK_URL": keycloak_url,
                "MRO_GATEWAY_CLIENT_ID": client.client_id,
                "MRO_GATEWAY_CLIENT_SECRET": client.secret,
                "MRO_GATEWAY_REDIS_URL": redis.url,
                "MRO_GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'gateway.db'}",
                "MRO_GATEWAY_ORCHESTRATOR_URL": upstream,
                "MRO_GATEWAY_ASSERTION_SIGNING_KEYS": json.dumps([generate_signing_key_pem()]),
                **env,
            }
            a, b = (
                gateway_process(
                    forks,
                    folder,
                    port,
                    {**shared, "MRO_GATEWAY_AUDIT_SPOOL_DIR": str(folder / f"spool-{name}")},
                    name=f"gateway-{name}",
                )
                for name, port in ports.items()
            )
            try:
                start_together(a, b)
                yield Replicas(a, b, client)
            finally:
                a.stop()
                b.stop()
    finally:
        redis.close()
