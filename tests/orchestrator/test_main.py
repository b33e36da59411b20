"""``mro-orchestrator``: ``migrate`` upgrades the database; the default command serves the API."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.paths import ROOT
from devstack.procs import free_port
from orchestrator.__main__ import main


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Only this test's MRO_ORCHESTRATOR_* variables, a database in tmp_path; logging restored."""
    for name in list(os.environ):
        if name.startswith("MRO_ORCHESTRATOR_"):
            monkeypatch.delenv(name)
    database = tmp_path / "data" / "orchestrator.db"
    monkeypatch.setenv("MRO_ORCHESTRATOR_DATABASE_URL", f"sqlite+aiosqlite:///{database}")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield database
    # main() configures logging for the whole process; put the test runner's back.
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("uvicorn.access").disabled = False
    for name in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_migrate_upgrades_the_database(
    environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``migrate`` creates the schema and reports the revision."""
    assert main(["migrate"]) == 0
    assert "database at revision 0002" in capsys.readouterr().out
    assert environment.is_file()


def test_invalid_settings_exit_with_status_2(
    environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Production without a real model credential refuses to start."""
    monkeypatch.setenv("MRO_ORCHESTRATOR_ENVIRONMENT", "production")
    assert main(["migrate"]) == 2
    assert "must be set in production" in capsys.readouterr().err
    assert not environment.exists()


@pytest.mark.slow
def test_serve_answers_health_checks_and_stops_on_sigterm(tmp_path: Path) -> None:
    """``python -m orchestrator`` serves /healthz, logs JSON and exits cleanly on SIGTERM."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MRO_ORCHESTRATOR_")},
        "MRO_ORCHESTRATOR_PORT": str(port),
        "MRO_ORCHESTRATOR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'o.db'}",
    }
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            response = _poll(client, process)
            assert response.json() == {"status": "ok"}
            assert client.get("/api/agents").status_code == 401
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = log_path.read_text().splitlines()
    assert all(line.startswith("{") for line in lines)
    assert any("Application shutdown complete" in line for line in lines)


def _poll(client: httpx.Client, process: subprocess.Popen[bytes]) -> httpx.Response:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            return client.get("/healthz", timeout=0.5)
        except httpx.TransportError:
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.1)
        assert process.poll() is None, "the orchestrator exited"
    raise AssertionError("the orchestrator did not answer /healthz")
