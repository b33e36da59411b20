"""Processes the drills own: gateways and orchestrators they stop, kill, restart, run in pairs.

Each process runs ``python -m gateway`` or ``python -m orchestrator`` in its own session (a signal
reaches it and nothing else), writes its output to a log file in the drill's temporary folder,
and is started again with the same port and environment by ``restart``. Starts go through the
session's ``ForkServer`` (``tests/faults/forkserver.py``), which has the imports done already.
Nothing here touches the session's shared stack.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from devstack.paths import ROOT

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0


class ForkServer:
    """Client of a warm launcher process; ``fork`` blocks until the launcher has its imports."""

    def __init__(self, log: Path) -> None:
        with log.open("ab") as errors:
            self._popen = subprocess.Popen(
                [sys.executable, "-m", "tests.faults.forkserver"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                cwd=ROOT,
                start_new_session=True,
            )
        self._lock = threading.Lock()
        self._log = log

    def fork(self, module: str, env: Mapping[str, str], log: Path) -> int:
        """Start ``python -m module`` with env (the whole environment) logging to log; its pid."""
        request = {"module": module, "env": dict(env), "log": str(log), "cwd": str(ROOT)}
        stdin, stdout = self._popen.stdin, self._popen.stdout
        if stdin is None or stdout is None:
            raise RuntimeError("the fork server has no pipes")
        with self._lock:
            stdin.write(json.dumps(request).encode() + b"\n")
            stdin.flush()
            answer = stdout.readline()
        if not answer.strip():
            raise RuntimeError(f"the fork server died:\n{self._log.read_text(errors='replace')}")
        return int(answer)

    def close(self) -> None:
        if self._popen.stdin is not None:
            self._popen.stdin.close()
        try:
            self._popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait(timeout=5)
        if self._popen.stdout is not None:
            self._popen.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class HttpProcess:
    """One service process on 127.0.0.1:port, ready when ``ready_path`` answers 200."""

    def __init__(
        self,
        forks: ForkServer,
        name: str,
        module: str,
        env: Mapping[str, str],
        log: Path,
        port: int,
        ready_path: str = "/healthz",
    ) -> None:
        self.name = name
        self.module = module
        self.env = dict(env)
        self.log = log
        self.port = port
        self.ready_path = ready_path
        self._forks = forks
        self._pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._pid is not None and _alive(self._pid)

    def launch(self) -> None:
        """Start the process without waiting for it to answer."""
        self._pid = self._forks.fork(self.module, {**os.environ, **self.env}, self.log)

    def start(self) -> None:
        """Start and wait until it answers; raises RuntimeError with its log tail otherwise."""
        self.launch()
        self.wait_ready()

    def restart(self) -> None:
        """Start again after a stop or a kill, on the same port with the same settings."""
        if self.running:
            raise RuntimeError(f"{self.name} is still running")
        self.start()

    def send(self, number: signal.Signals, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Send number to the process and wait until it is gone (SIGKILL after timeout)."""
        if self._pid is None:
            return
        try:
            os.kill(self._pid, number)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while _alive(self._pid):
            if time.monotonic() > deadline:
                os.kill(self._pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
            time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self.send(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: the server drains its requests and runs its shutdown."""
        self.send(signal.SIGTERM)

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline and self.running:
                try:
                    if client.get(self.url + self.ready_path).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def gateway_process(
    forks: ForkServer, folder: Path, port: int, env: Mapping[str, str], name: str = "gateway"
) -> HttpProcess:
    """A gateway process on port; env adds ``MRO_GATEWAY_*`` settings."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "MRO_GATEWAY_HOST": "127.0.0.1",
        "MRO_GATEWAY_PORT": str(port),
        "MRO_GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "MRO_GATEWAY_SESSION_COOKIE_SECURE": "false",
        "MRO_GATEWAY_LOG_LEVEL": "WARNING",
        **env,
    }
    return HttpProcess(forks, name, "gateway", settings, folder / f"{name}.log", port)


def orchestrator_process(
    forks: ForkServer, folder: Path, port: int, env: Mapping[str, str]
) -> HttpProcess:
    """An orchestrator process on port; env adds ``MRO_ORCHESTRATOR_*`` settings."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "MRO_ORCHESTRATOR_HOST": "127.0.0.1",
        "MRO_ORCHESTRATOR_PORT": str(port),
        "MRO_ORCHESTRATOR_LOG_LEVEL": "WARNING",
        **env,
    }
    log = folder / "orchestrator.log"
    return HttpProcess(forks, "orchestrator", "orchestrator", settings, log, port)
