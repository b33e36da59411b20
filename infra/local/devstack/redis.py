"""Redis from Debian's package, on loopback.

Test servers persist nothing. The dev stack passes ``data_dir``: Redis then keeps an
append-only file there (fsync every second), so sessions, revocations, API-key state, budgets
and rate counters survive a restart of Redis or of the whole stack.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from devstack.paths import VAR
from devstack.procs import Service, StackError, port_open, start, wait_until


def redis_ping(host: str, port: int) -> bool:
    """True when a Redis server answers PING on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def ensure_redis(
    port: int = 6379, host: str = "127.0.0.1", *, data_dir: Path | None = None
) -> Service:
    """Reuse MRO_REDIS_URL or a Redis answering on port; else start redis-server there.

    With data_dir, Redis keeps an append-only file there; without, it persists nothing.
    Raises StackError when the port is taken or Redis does not answer within 15 seconds.
    """
    if url := os.environ.get("MRO_REDIS_URL"):
        return Service(name="redis", url=url)
    url = f"redis://{host}:{port}/0"
    if redis_ping(host, port):
        return Service(name="redis", url=url)
    if port_open(host, port):
        raise StackError(f"port {port} is taken by something that is not Redis")
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError("redis-server not found: run scripts/bootstrap.sh")
    data = data_dir or VAR / f"redis-{port}"
    data.mkdir(parents=True, exist_ok=True)
    persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if data_dir else []
    service = start(
        "redis",
        [
            binary,
            "--bind",
            host,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            *persistence,
            "--dir",
            str(data),
            "--protected-mode",
            "yes",
        ],
        url=url,
    )
    wait_until(service, lambda: redis_ping(host, port), timeout=15)
    return service
