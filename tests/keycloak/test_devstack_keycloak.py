"""devstack.keycloak: reuse rules, JDK detection, environment and dev-user provisioning."""

from __future__ import annotations

import socket
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from keycloak import KeycloakAdmin

from devstack import keycloak as devkc
from devstack.procs import StackError, free_port

pytestmark = pytest.mark.keycloak


def _fake_java(tmp_path: Path, banner: str) -> Path:
    java = tmp_path / "java"
    java.write_text(f"#!/bin/sh\necho '{banner}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return java


@pytest.mark.parametrize(
    ("banner", "major"),
    [
        ('openjdk version "21.0.2" 2024-01-16', 21),
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_292"', 8),
        ("not a java", 0),
    ],
)
def test_java_major_reads_the_version_banner(tmp_path: Path, banner: str, major: int) -> None:
    """The feature release is parsed from `java -version`, old 1.x style included."""
    assert devkc.java_major(str(_fake_java(tmp_path, banner))) == major


def test_found_jdk_can_run_keycloak() -> None:
    """find_java_home picks a JDK whose java is at least version 17."""
    home = devkc.find_java_home()
    assert devkc.java_major(str(home / "bin" / "java")) >= devkc.MIN_JAVA


def test_keycloak_url_from_the_environment_is_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    """MRO_KEYCLOAK_URL is used as is and nothing is started."""
    monkeypatch.setenv("MRO_KEYCLOAK_URL", "http://127.0.0.1:1/")
    service = devkc.ensure_keycloak(free_port())
    assert service.url == "http://127.0.0.1:1"
    assert service.process is None


def test_port_taken_by_something_else_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A port answering without realm mro is reported instead of starting a second server."""
    monkeypatch.delenv("MRO_KEYCLOAK_URL", raising=False)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with pytest.raises(StackError, match="does not serve realm mro"):
            devkc.ensure_keycloak(listener.getsockname()[1])


class _StartingKeycloak(BaseHTTPRequestHandler):
    """Answers like a Keycloak that serves realm mro only from its third discovery request on."""

    discovery_calls = 0

    def do_GET(self) -> None:
        ready = True
        if self.path.endswith("/.well-known/openid-configuration"):
            type(self).discovery_calls += 1
            ready = type(self).discovery_calls >= 3
        self.send_response(200 if ready else 503)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def starting_keycloak() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StartingKeycloak)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def test_keycloak_still_starting_on_the_port_is_awaited_and_reused(
    monkeypatch: pytest.MonkeyPatch, starting_keycloak: int
) -> None:
    """A server answering HTTP but not yet the realm is waited for, then reused, not replaced."""
    monkeypatch.delenv("MRO_KEYCLOAK_URL", raising=False)
    service = devkc.ensure_keycloak(starting_keycloak)
    assert service.process is None
    assert service.url == f"http://127.0.0.1:{starting_keycloak}"
    assert _StartingKeycloak.discovery_calls >= 3


def test_environment_carries_dev_secrets_and_allows_overrides(
    monkeypatch: pytest.MonkeyPatch, dev_credentials: dict[str, Any]
) -> None:
    """kc.sh gets the dev client secrets and bootstrap admin; env variables override them."""
    monkeypatch.delenv("MRO_KC_PLANNING_SYNC_CLIENT_SECRET", raising=False)
    monkeypatch.setenv("MRO_KC_GATEWAY_CLIENT_SECRET", "from-env")
    env = devkc.keycloak_env(dev_credentials)
    assert env["MRO_KC_GATEWAY_CLIENT_SECRET"] == "from-env"
    assert env["MRO_KC_PLANNING_SYNC_CLIENT_SECRET"] == devkc.client_secret(
        "mro-planning-sync", dev_credentials
    )
    assert env["KC_BOOTSTRAP_ADMIN_USERNAME"] == dev_credentials["bootstrap_admin"]["username"]
    assert env["MRO_KC_SMTP_PORT"].isdigit()


def test_dev_credentials_are_marked_dev_only(dev_credentials: dict[str, Any]) -> None:
    """dev-users.json says it is for development and tests, and lists both confidential clients."""
    assert "dev" in dev_credentials["_comment"].lower()
    grants = {c["client_id"]: c["grant"] for c in dev_credentials["clients"]}
    assert grants == {
        "mro-gateway": "authorization_code",
        "mro-planning-sync": "client_credentials",
    }


def test_provisioning_is_idempotent(keycloak_url: str) -> None:
    """A second provisioning run finds every dev user and creates nobody."""
    assert devkc.provision_dev_users(keycloak_url) == []


def test_dev_users_have_exactly_their_roles_and_profile(
    keycloak_admin: KeycloakAdmin, dev_credentials: dict[str, Any]
) -> None:
    """Provisioned users hold only their listed roles, a verified email and the MRO attributes."""
    for user in dev_credentials["users"]:
        user_id = keycloak_admin.get_user_id(user["username"])
        assert user_id is not None
        direct = {r["name"] for r in keycloak_admin.get_realm_roles_of_user(user_id)}
        assert direct == set(user["roles"])
        stored = keycloak_admin.get_user(user_id)
        assert stored["email"] == user["email"]
        assert stored["emailVerified"] is True
        for name, value in user["attributes"].items():
            assert stored["attributes"][name] == [value]
