"""A PostgreSQL cluster of a drill's own, which the drill stops and starts again on its data.

Made by ``devstack.postgres.ensure_postgres`` on a free port (``MRO_POSTGRES_URL`` is ignored:
a drill never stops a server it did not start). ``stop`` is PostgreSQL's fast shutdown (open
connections are cut, as in a crash of the database host or a failover); ``start`` runs the same
server command on the same data directory and port.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from devstack.postgres import ensure_postgres
from devstack.procs import Service, free_port, port_open, start, wait_until

START_TIMEOUT_SECONDS = 30.0


class PrivatePostgres:
    """One PostgreSQL server process with database ``mro``; restartable, removed by close."""

    def __init__(self) -> None:
        with pytest.MonkeyPatch.context() as env:
            env.delenv("MRO_POSTGRES_URL", raising=False)
            self.port = free_port()
            self._service: Service = ensure_postgres(self.port)
        process = self._service.process
        if process is None:
            raise RuntimeError("ensure_postgres reused a server; the drill needs its own")
        if not isinstance(process.args, list):
            raise RuntimeError("ensure_postgres started its server without an argument list")
        self._argv = [str(arg) for arg in process.args]
        self.root = Path(self._argv[self._argv.index("-D") + 1]).parent

    @property
    def url(self) -> str:
        return self._service.url

    @property
    def running(self) -> bool:
        process = self._service.process
        return process is not None and process.poll() is None

    def stop(self) -> None:
        """Fast shutdown: clients are disconnected, new connections refused."""
        process = self._service.process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def start(self) -> None:
        """Serve the same data on the same port again."""
        if self.running:
            return
        self._service = start("postgres", self._argv, url=self.url)
        wait_until(self._service, lambda: port_open("127.0.0.1", self.port), START_TIMEOUT_SECONDS)

    def close(self) -> None:
        """Stop the server and remove its files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
