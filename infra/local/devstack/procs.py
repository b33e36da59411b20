"""Start, watch and stop the local stack's processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devstack.paths import ensure_dirs, state_dir


class StackError(RuntimeError):
    """A local service could not be started or did not become ready."""


# Every process start() launched in this interpreter, so an interrupted start or restart
# leaves nothing behind (stop_started).
_launched: list[Service] = []


@dataclass
class Service:
    """A running service; ``process`` is None when an already-running one was reused."""

    name: str
    url: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def owned(self) -> bool:
        return self.process is not None

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the process group this stack started (reused services are left alone)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when a GET of url answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start(
    name: str,
    argv: Sequence[str],
    *,
    url: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Service:
    """Start argv in its own process group, logging to <state>/log/<name>.log (var/log/)."""
    ensure_dirs()
    log_dir = state_dir() / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    log = log_path.open("ab")
    process = subprocess.Popen(  # noqa: S603 - argv is built by this package
        list(argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=full_env,
        cwd=cwd,
        start_new_session=True,
    )
    log.close()
    service = Service(name=name, url=url, process=process, log_path=log_path, env=dict(env or {}))
    _launched.append(service)
    return service


def stop_started() -> None:
    """Stop every process start() launched that still runs, the last launched first."""
    for service in reversed(_launched):
        service.stop()
    _launched.clear()


def wait_until(
    service: Service, ready: Callable[[], bool], timeout: float, interval: float = 0.25
) -> None:
    """Poll ready() until true; stop the service and raise StackError on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if service.process is not None and service.process.poll() is not None:
            raise StackError(
                f"{service.name} exited with {service.process.returncode}:\n{service.log_tail()}"
            )
        time.sleep(interval)
    service.stop()
    raise StackError(f"{service.name} not ready after {timeout:.0f}s:\n{service.log_tail()}")
