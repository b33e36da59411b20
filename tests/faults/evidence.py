"""What the drills look at: problem documents, and the audit rows a gateway stored."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from gateway.problems import CONTENT_TYPE, TYPE_BASE


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> None:
    """response is an RFC 9457 problem with status (and code)."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith(CONTENT_TYPE), response.headers
    body = response.json()
    assert body["status"] == status, body
    assert body["type"] == TYPE_BASE + body["code"], body
    if code is not None:
        assert body["code"] == code, body


@dataclass(frozen=True)
class AuditRow:
    """One row of a gateway's ``audit_events`` table."""

    event_id: str
    action: str
    outcome: str
    reason: str | None
    request_id: str | None
    at: str


_QUERY = (
    "SELECT event_id, action, outcome, reason, request_id, at FROM audit_events ORDER BY at, id"
)


def sqlite_audit(path: Path) -> list[AuditRow]:
    """Every audit row of a gateway whose database is the SQLite file path (oldest first)."""
    with sqlite3.connect(path, timeout=10) as connection:
        try:
            rows = connection.execute(_QUERY).fetchall()
        except sqlite3.OperationalError:  # the gateway has not created its tables yet
            return []
    return [_row(row) for row in rows]


async def database_audit(url: str) -> list[AuditRow]:
    """Every audit row of a gateway whose database is url (SQLAlchemy async URL)."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(text(_QUERY))).all()
    finally:
        await engine.dispose()
    return [_row(tuple(row)) for row in rows]


def _row(values: tuple[Any, ...]) -> AuditRow:
    event_id, action, outcome, reason, request_id, at = values
    return AuditRow(event_id, action, outcome, reason, request_id, str(at))


def spooled_request_ids(folder: Path, action: str) -> list[str]:
    """Request ids of the events of action waiting in a gateway's audit spool (with repetitions).

    A restarted gateway replays these into the database, each once (inserts skip known event ids).
    """
    found: list[str] = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text("utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line torn by a crash; the replay skips it too
                continue
            if record.get("action") == action and record.get("request_id"):
                found.append(str(record["request_id"]))
    return found


def request_ids(rows: Collection[AuditRow], action: str) -> list[str]:
    """The request ids of the rows of action, with repetitions."""
    return [row.request_id for row in rows if row.action == action and row.request_id]


def wait_for(
    read: Callable[[], Any], done: Callable[[Any], bool], timeout: float, interval: float = 0.1
) -> Any:
    """Poll read() until done(value) holds or timeout passes; the last value read."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(interval)
        value = read()
    return value
