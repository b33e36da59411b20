"""`make dev`'s stack behaves like a service: a process SIGKILLed comes back within a stated
time while the others keep serving, and a full stop and start keeps users' ids, conversations,
API keys and browser sessions.

The stack is started as `make dev` starts it (``python -m devstack up``) with its own Keycloak,
Redis and state folder on free ports, so a developer's running `make dev` is not touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.keycloak import GATEWAY_CLIENT_ID, client_secret, load_dev_credentials, serves_realm
from devstack.mailpit import answers as mailpit_answers
from devstack.paths import ROOT
from devstack.procs import free_port, http_ok, port_open
from devstack.redis import redis_ping
from tests.keycloak_flows import (
    LoginPage,
    authorization_code_tokens,
    browser_client,
    jwt_claims,
)

pytestmark = [pytest.mark.slow, pytest.mark.keycloak, pytest.mark.redis]

# The first start imports the realm into a new database (the distribution is cached).
FIRST_START_WITHIN = 180.0
# Seconds from SIGKILL until the process answers again: the restart backoff (1 s) plus its
# start-up. Measured on a 2-core machine: Keycloak 10-13 s, the gateway 4-6 s, the
# orchestrator 3-5 s, the rest 2-3 s (docs/operations.md, "The local stack").
BACK_WITHIN = {
    "redis": 10.0,
    "mailpit": 10.0,
    "keycloak": 60.0,
    "fake-azure": 20.0,
    "orchestrator": 20.0,
    "gateway": 20.0,
}
PORT_NAMES = {
    "gateway": "GATEWAY",
    "keycloak": "KEYCLOAK",
    "orchestrator": "ORCHESTRATOR",
    "fake-azure": "FAKE_AZURE",
    "redis": "REDIS",
    "mailpit": "MAILPIT",
}
API_KEY_PERMISSIONS = ["agents:read", "conversations:read:own"]


@dataclass
class Stack:
    """One `python -m devstack up` on free ports with its own state folder."""

    state: Path
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    output: Path | None = None

    def __post_init__(self) -> None:
        self.ports = {name: free_port() for name in PORT_NAMES}
        self.ports["mailpit-smtp"] = free_port()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("MRO_KEYCLOAK_URL", "MRO_REDIS_URL")
        }
        env |= {
            f"MRO_{PORT_NAMES[n]}_PORT": str(p) for n, p in self.ports.items() if n in PORT_NAMES
        }
        env |= {
            "MRO_MAILPIT_SMTP_PORT": str(self.ports["mailpit-smtp"]),
            "MRO_DEVSTACK_STATE": str(self.state),
            "PYTHONPATH": str(ROOT / "infra" / "local"),
        }
        return env

    def start(self) -> float:
        """Start the stack; the seconds until the gateway is ready."""
        self.output = self.state.parent / f"devstack-{time.monotonic_ns()}.out"
        began = time.monotonic()
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devstack", "up"],
                cwd=ROOT,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while time.monotonic() - began < FIRST_START_WITHIN:
            assert self.process.poll() is None, self.text()[-3000:]
            if http_ok(f"{self.url('gateway')}/readyz"):
                return time.monotonic() - began
            time.sleep(0.5)
        raise AssertionError(f"not ready in {FIRST_START_WITHIN}s:\n{self.text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C: everything stops and every port is free again."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise
        assert self.process.returncode == 0, self.text()[-3000:]
        for name, port in self.ports.items():
            assert not port_open("127.0.0.1", port), f"{name}'s port {port} still open"

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output else ""

    def probes(self) -> dict[str, Callable[[], bool]]:
        """For each process: does it answer right now? (The gateway's /healthz: its /readyz
        also needs Keycloak and Redis.)"""
        return {
            "redis": lambda: redis_ping("127.0.0.1", self.ports["redis"]),
            "mailpit": lambda: mailpit_answers(self.url("mailpit")),
            "keycloak": lambda: serves_realm(self.url("keycloak")),
            "fake-azure": lambda: http_ok(f"{self.url('fake-azure')}/healthz"),
            "orchestrator": lambda: http_ok(f"{self.url('orchestrator')}/healthz"),
            "gateway": lambda: http_ok(f"{self.url('gateway')}/healthz"),
        }


def listener_pid(port: int) -> int:
    """The process listening on a loopback TCP port (read from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) in inodes:
                return int(fd.parent.parent.name)
        except OSError:
            continue
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("devstack") / "state")
    try:
        stack.start()
        yield stack
    finally:
        if stack.process is not None and stack.process.poll() is None:
            os.killpg(stack.process.pid, signal.SIGTERM)
            stack.process.wait(timeout=90)


def _password(username: str) -> str:
    users = load_dev_credentials()["users"]
    return str(next(u["password"] for u in users if u["username"] == username))


def _dev_id(username: str) -> str:
    users = load_dev_credentials()["users"]
    return str(next(u["id"] for u in users if u["username"] == username))


def _token(stack: Stack, username: str) -> str:
    tokens = authorization_code_tokens(
        stack.url("keycloak"),
        username,
        _password(username),
        client_secret=client_secret(GATEWAY_CLIENT_ID),
        redirect_uri=f"{stack.url('gateway')}/auth/callback",
    )
    return str(tokens["access_token"])


def _browser_session(stack: Stack, username: str) -> dict[str, str]:
    """Sign in through the gateway's /auth/login as a browser does; the cookies it holds."""
    gateway = stack.url("gateway")
    with browser_client() as browser:
        to_keycloak = browser.get(f"{gateway}/auth/login")
        assert to_keycloak.status_code in (302, 303), to_keycloak.text
        form = browser.get(to_keycloak.headers["location"])
        assert form.status_code == 200
        page = LoginPage(
            browser, stack.url("keycloak"), form.text, "", f"{gateway}/auth/callback", None
        )
        callback = page.login(username, _password(username))
        assert callback.headers.get("location", "").startswith(f"{gateway}/auth/callback")
        signed_in = browser.get(callback.headers["location"])
        assert signed_in.status_code in (302, 303), signed_in.text
        me = browser.get(f"{gateway}/api/me")
        assert me.status_code == 200, me.text
        return dict(browser.cookies)


def _kill_and_time(stack: Stack, name: str) -> float:
    """SIGKILL name's listening process; the seconds until it serves again (the gateway: until
    /readyz answers 200, as the supervisor waits for). Meanwhile every other process of the
    stack must answer each probe. Probes run twice a second: the gateway limits anonymous
    requests per address (300 a minute), and the supervisor polls /readyz too."""
    probes = stack.probes()
    others = {other: probe for other, probe in probes.items() if other != name}
    ready = f"{stack.url('gateway')}/readyz"
    back = (lambda: http_ok(ready)) if name == "gateway" else probes[name]
    pid = listener_pid(stack.ports[name])
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    while not back():
        elapsed = time.monotonic() - killed_at
        assert elapsed < BACK_WITHIN[name], f"{name} not back in {BACK_WITHIN[name]}s"
        down = [other for other, probe in others.items() if not probe()]
        assert down == [], f"while {name} was down, {down} did not answer"
        time.sleep(0.5)
    elapsed = time.monotonic() - killed_at
    # The whole stack settles (the gateway ready again) before the next process is killed.
    deadline = time.monotonic() + 30
    while not http_ok(ready):
        assert time.monotonic() < deadline, f"gateway not ready after {name} came back"
        time.sleep(1)
    return elapsed


def test_each_process_killed_comes_back_while_the_others_serve(
    stack: Stack, record_property: Callable[[str, Any], None]
) -> None:
    """SIGKILL each process in turn: it is logged and restarted within its stated time, the
    others answer throughout, and an API call through the whole stack works afterwards."""
    token = _token(stack, "tech1")
    measured = {}
    for name in ("redis", "mailpit", "fake-azure", "orchestrator", "gateway", "keycloak"):
        measured[name] = round(_kill_and_time(stack, name), 1)
        record_property(f"back_after_{name}_s", measured[name])
    print(f"back after (s): {measured}")
    with httpx.Client(base_url=stack.url("gateway"), timeout=30) as client:
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 30
        while (answer := client.get("/api/agents", headers=headers)).status_code != 200:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.5)
    # The supervisor says "is back" once its own start step is done (Keycloak: dev users too).
    deadline = time.monotonic() + 30
    while not all(f"devstack: {name} is back" in stack.text() for name in measured):
        assert time.monotonic() < deadline, stack.text()[-3000:]
        time.sleep(0.5)
    for name in measured:
        assert f"devstack: {name} killed by SIGKILL; restarting it in" in stack.text()


def test_a_full_stop_and_start_keeps_ids_conversations_api_keys_and_sessions(
    stack: Stack,
) -> None:
    """After Ctrl-C and `make dev` again: same user ids, their conversations, working API keys
    and browser sessions, and access tokens issued before still verify (same realm keys)."""
    gateway = stack.url("gateway")
    tech_token = _token(stack, "tech1")
    assert jwt_claims(tech_token)["sub"] == _dev_id("tech1")
    with httpx.Client(base_url=gateway, timeout=30) as client:
        tech = {"Authorization": f"Bearer {tech_token}"}
        created = client.post("/api/conversations", json={"title": "APU"}, headers=tech)
        assert created.status_code == 201, created.text
        conversation = created.json()["id"]
        manager = {"Authorization": f"Bearer {_token(stack, 'mgr1')}"}
        issued = client.post(
            "/api/admin/api-keys",
            json={
                "name": "restart drill",
                "permissions": API_KEY_PERMISSIONS,
                "expires_in_days": 1,
            },
            headers=manager,
        )
        assert issued.status_code == 201, issued.text
        api_key = issued.json()["key"]
    cookies = _browser_session(stack, "eng1")

    stack.stop()
    stack.start()

    assert jwt_claims(_token(stack, "tech1"))["sub"] == _dev_id("tech1")
    with httpx.Client(base_url=gateway, timeout=30) as client:
        again = client.get(f"/api/conversations/{conversation}", headers=tech)
        assert again.status_code == 200, again.text
        assert again.json()["owner_sub"] == _dev_id("tech1")
        assert client.get("/api/agents", headers={"X-API-Key": api_key}).status_code == 200
    with httpx.Client(base_url=gateway, timeout=30, cookies=cookies) as browser:
        me = browser.get("/api/me")
        assert me.status_code == 200, me.text
        assert me.json()["id"] == _dev_id("eng1")
    stack.stop()
    assert "importing it again" not in stack.text()
