"""Redis from Debian's package, on loopback, without persistence."""

from __future__ import annotations

import os
import shutil
import socket

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


def ensure_redis(port: int = 6379, host: str = "127.0.0.1") -> Service:
    """Reuse MRO_REDIS_URL or a Redis answering on port; else start redis-server there."""
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
    data = VAR / f"redis-{port}"
    data.mkdir(parents=True, exist_ok=True)
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
            "--dir",
            str(data),
            "--protected-mode",
            "yes",
        ],
        url=url,
    )
    wait_until(service, lambda: redis_ping(host, port), timeout=15)
    return service
