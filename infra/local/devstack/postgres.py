"""A throwaway PostgreSQL cluster from Debian's binaries, on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from devstack.paths import VAR
from devstack.procs import Service, StackError, port_open, start, wait_until

_DB = "mro"


def binary(name: str) -> str:
    """Path of a PostgreSQL program (PATH, else the newest Debian install); raises StackError."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise StackError(f"{name} not found: run scripts/bootstrap.sh")


def as_postgres_user(argv: list[str]) -> list[str]:
    """argv run as the postgres system user when running as root."""
    # initdb and postgres refuse to run as root; Debian's package creates the postgres user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def ensure_postgres(port: int = 5433, host: str = "127.0.0.1") -> Service:
    """Reuse MRO_POSTGRES_URL; else start a fresh cluster on port with database ``mro``."""
    if url := os.environ.get("MRO_POSTGRES_URL"):
        return Service(name="postgres", url=url)
    url = f"postgresql+asyncpg://postgres@{host}:{port}/{_DB}"
    if port_open(host, port):
        return Service(name="postgres", url=url)
    VAR.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="postgres-", dir=VAR))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(  # noqa: S603 - fixed argv
        as_postgres_user(
            [binary("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    service = start(
        "postgres",
        as_postgres_user(
            [
                binary("postgres"),
                "-D",
                str(data),
                "-h",
                host,
                "-p",
                str(port),
                "-k",
                str(sockets),
                "-c",
                "fsync=off",
            ]
        ),
        url=url,
    )
    wait_until(service, lambda: port_open(host, port), timeout=30)
    createdb = [binary("createdb"), "-h", host, "-p", str(port), "-U", "postgres", _DB]
    subprocess.run(createdb, check=True, capture_output=True)  # noqa: S603 - fixed argv
    return service
