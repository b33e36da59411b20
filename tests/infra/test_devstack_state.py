"""The dev stack's data: a Keycloak database is kept unless the realm changed; reset empties."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from devstack import keycloak as devkc
from devstack.__main__ import reset
from devstack.procs import free_port

GATEWAY = "http://127.0.0.1:8000"


def _database(data: Path, stamp: str) -> Path:
    db = data / "data" / "h2" / "keycloakdb.mv.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"users")
    (data / devkc.REALM_STAMP).write_text(stamp + "\n")
    return db


def test_a_database_imported_from_this_realm_file_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same realm file and gateway URL: the database stays, nothing is said."""
    stamp = devkc.realm_stamp(GATEWAY)
    db = _database(tmp_path / "keycloak", stamp)
    assert devkc._kept_data_dir(tmp_path / "keycloak", stamp) == tmp_path / "keycloak"
    assert db.read_bytes() == b"users"
    assert capsys.readouterr().out == ""


def test_a_changed_realm_says_so_and_gets_a_new_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another realm file (or gateway URL): the start says what is reset and starts empty."""
    db = _database(tmp_path / "keycloak", devkc.realm_stamp(GATEWAY))
    devkc._kept_data_dir(tmp_path / "keycloak", devkc.realm_stamp("http://127.0.0.1:9999"))
    assert not db.exists()
    said = capsys.readouterr().out
    assert "importing it again into a new Keycloak database" in said
    assert "Kept: the dev users and their ids" in said


def test_the_stamp_follows_the_gateway_url() -> None:
    """The realm's URLs carry the gateway's port, so another port is another import."""
    assert devkc.realm_stamp(GATEWAY) == devkc.realm_stamp(GATEWAY + "/")
    assert devkc.realm_stamp(GATEWAY) != devkc.realm_stamp("http://127.0.0.1:8001")


def test_reset_removes_the_stacks_data_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """reset empties Keycloak's, Redis's and the services' data; test servers' folders stay."""
    monkeypatch.setenv("MRO_DEVSTACK_STATE", str(tmp_path))
    monkeypatch.setenv("MRO_GATEWAY_PORT", str(free_port()))
    for folder in ("keycloak/data", "redis", "audit-spool", "keycloak-data/18080", "log"):
        (tmp_path / folder).mkdir(parents=True)
    for file in ("orchestrator.db", "orchestrator.db-wal", "gateway.db"):
        (tmp_path / file).write_text("x")
    assert reset() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keycloak-data", "log"]


def test_reset_refuses_while_the_stack_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the gateway's port in use nothing is removed."""
    (tmp_path / "gateway.db").write_text("x")
    monkeypatch.setenv("MRO_DEVSTACK_STATE", str(tmp_path))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        monkeypatch.setenv("MRO_GATEWAY_PORT", str(listener.getsockname()[1]))
        assert reset() == 1
    assert (tmp_path / "gateway.db").exists()
