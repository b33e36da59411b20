"""The README's run command: the whole stack comes up, answers, and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from devstack.paths import ROOT
from devstack.procs import Service, free_port, port_open
from tests.keycloak_flows import jwt_claims

# The README promises the gateway answers /readyz within this many seconds once Keycloak runs.
READY_WITHIN_SECONDS = 90


def _descendants(pid: int) -> set[int]:
    """Every process whose ancestry leads to pid (read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


@pytest.mark.keycloak
@pytest.mark.redis
@pytest.mark.slow
def test_stack_command_serves_readyz_and_stops_without_leftovers(
    keycloak: Service, redis_url: str, tmp_path: Path
) -> None:
    """`python -m devstack up` brings the gateway to ready, and SIGTERM leaves no process behind."""
    names = ("GATEWAY", "ORCHESTRATOR", "FAKE_AZURE", "MAILPIT", "MAILPIT_SMTP")
    ports = {name: free_port() for name in names}
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "infra" / "local"),
        "MRO_KEYCLOAK_URL": keycloak.url,
        "MRO_REDIS_URL": redis_url,
        "MRO_DEVSTACK_STATE": str(tmp_path / "state"),
        **{f"MRO_{name}_PORT": str(port) for name, port in ports.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack", "up"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    gateway = f"http://127.0.0.1:{ports['GATEWAY']}"
    # The output is read as it comes: the banner follows /readyz by the start-up's own poll.
    lines: list[str] = []
    reader = threading.Thread(target=_collect, args=(process, lines), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + READY_WITHIN_SECONDS
        ready = False
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"{gateway}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                ready = False
            if ready:
                break
            time.sleep(0.5)
        assert ready, f"gateway not ready in {READY_WITHIN_SECONDS}s (exit {process.poll()})"
        while time.monotonic() < deadline and not any("dev users" in line for line in lines):
            time.sleep(0.1)
        children = _descendants(process.pid)
        assert len(children) >= 3, "expected the model server, orchestrator and gateway"
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    text = "".join(lines)
    assert "dev users" in text, text[-2000:]
    assert "tech1" in text
    assert f"mail      http://127.0.0.1:{ports['MAILPIT']}" in text, text[-2000:]
    assert process.returncode == 0, text[-2000:]
    assert not _alive(children), f"left behind: {_alive(children)}"
    for port in ports.values():
        assert not port_open("127.0.0.1", port), f"port {port} still open"


def _collect(process: subprocess.Popen[bytes], lines: list[str]) -> None:
    """Append process's output lines to lines until it closes its output."""
    assert process.stdout is not None
    for line in iter(process.stdout.readline, b""):
        lines.append(line.decode(errors="replace"))


@pytest.mark.keycloak
def test_token_command_prints_a_dev_users_access_token(keycloak: Service) -> None:
    """`python -m devstack token tech1` logs in through Keycloak's form and prints the token."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "infra" / "local"),
        "MRO_KEYCLOAK_URL": keycloak.url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "token", "tech1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    claims = jwt_claims(done.stdout.strip())
    assert claims["preferred_username"] == "tech1"
    assert "technician" in claims["realm_access"]["roles"]
