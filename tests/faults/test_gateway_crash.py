"""Drill: the gateway process stops during a burst of audited requests, gracefully or not.

Every request of the burst is one a service account may not make (``GET /api/admin/audit``):
each answer is a 403 carrying ``X-Request-ID``, and each has exactly one ``auth.permission_denied``
audit event with that request id. After the stop the drill restarts the gateway on the same
database and compares the answers the clients received with the events stored.

The promise (docs/operations.md, "A gateway replica stops or crashes"):

* graceful stop (SIGTERM: rolling update, scale-in): every answered request's event is stored,
  exactly once;
* crash (SIGKILL, out of memory): every answered request's event survives, in the database, the
  spool or the audit journal (written before the answer), and is stored exactly once after the
  restart. The drill makes the database slow (a lock held by another connection) so that
  events sit in the writer's memory queue for seconds when the process is killed, and the
  outcome does not depend on scheduling.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from devstack.procs import free_port
from tests.faults.evidence import (
    bearer,
    request_ids,
    spooled_request_ids,
    sqlite_audit,
    wait_for,
)
from tests.faults.gateways import TokenMinter
from tests.faults.processes import ForkServer, HttpProcess, gateway_process
from tests.fixtures.stack import RedisServer

pytestmark = [pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

DENIED = "auth.permission_denied"
ANSWERS_BEFORE_STOP = 40
WORKERS = 6
# One retry round of the audit writer (5 s) and a margin.
SETTLE_SECONDS = 7.0
# How long the gateway's SQLite connection waits for a lock before its insert fails.
SQLITE_BUSY_SECONDS = 5.0


class Burst:
    """Clients sending denied requests from threads until stopped or the gateway is gone."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self._url = url
        self._headers = headers
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.answered: list[str] = []
        self.unexpected: list[int] = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(WORKERS)]

    def __enter__(self) -> Burst:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def wait_for_answers(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answered) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.answered) >= count, "the burst did not get going"

    def _run(self) -> None:
        with httpx.Client(base_url=self._url, headers=self._headers, timeout=10) as http:
            while not self._stop.is_set():
                try:
                    response = http.get("/api/admin/audit")
                except httpx.HTTPError:
                    return  # the gateway is gone
                with self._lock:
                    if response.status_code == 403:
                        self.answered.append(response.headers["x-request-id"])
                    else:
                        self.unexpected.append(response.status_code)


@dataclass
class StopOutcome:
    """Answers the clients received before the gateway stopped, and the events stored once it
    was restarted and had replayed its spool."""

    answered: list[str] = field(default_factory=list)
    unexpected: list[int] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)

    @property
    def missing(self) -> set[str]:
        return set(self.answered) - set(self.stored)


@dataclass
class Crash:
    graceful: StopOutcome = field(default_factory=StopOutcome)
    killed: StopOutcome = field(default_factory=StopOutcome)


def burst_then(gateway: HttpProcess, headers: dict[str, str], stop: str) -> StopOutcome:
    """Run a burst, stop the gateway with stop ("term" or "kill") mid-burst."""
    with Burst(gateway.url, headers) as burst:
        burst.wait_for_answers(ANSWERS_BEFORE_STOP)
        if stop == "term":
            gateway.stop()
        else:
            gateway.kill()
    return StopOutcome(list(burst.answered), list(burst.unexpected))


def settled_events(database: Path, spool: Path) -> list[str]:
    """Request ids of the denials stored once the restarted gateway has replayed its spool."""
    wait_for(lambda: spooled_request_ids(spool, DENIED), lambda ids: not ids, SETTLE_SECONDS)
    return request_ids(sqlite_audit(database), DENIED)


@pytest.fixture(scope="module")
def crash(
    forks: ForkServer,
    keycloak_url: str,
    mint_service_token: TokenMinter,
    tmp_path_factory: pytest.TempPathFactory,
) -> Crash:
    """A gateway process stopped gracefully during one burst and killed during another, each
    time restarted on the same database and spool."""
    folder = tmp_path_factory.mktemp("gateway-crash")
    database, spool = folder / "gateway.db", folder / "spool"
    redis = RedisServer()
    redis.start()
    gateway = gateway_process(
        forks,
        folder,
        free_port(),
        {
            "MRO_GATEWAY_KEYCLOAK_URL": keycloak_url,
            "MRO_GATEWAY_REDIS_URL": redis.url,
            "MRO_GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
            "MRO_GATEWAY_AUDIT_SPOOL_DIR": str(spool),
        },
    )
    headers = bearer(mint_service_token(keycloak_url))
    seen = Crash()
    try:
        gateway.start()
        seen.graceful = burst_then(gateway, headers, "term")
        gateway.restart()
        seen.graceful.stored = settled_events(database, spool)
        lock = sqlite3.connect(database, isolation_level=None, timeout=10)
        try:
            lock.execute("BEGIN EXCLUSIVE")  # the database answers, slowly: writes wait
            locked_at = time.monotonic()
            seen.killed = burst_then(gateway, headers, "kill")
            # The premise: killed while the writer still waits for the lock (SQLite gives up
            # after 5 s and spools), so the queued events are what the kill takes.
            assert time.monotonic() - locked_at < SQLITE_BUSY_SECONDS, "the burst was too slow"
        finally:
            lock.close()
        gateway.restart()
        seen.killed.stored = settled_events(database, spool)
    finally:
        gateway.stop()
        redis.close()
    return seen


def test_a_graceful_stop_stores_every_answered_event_once(crash: Crash) -> None:
    """After SIGTERM mid-burst, every 403 a client received has its audit event, once."""
    outcome = crash.graceful
    assert outcome.unexpected == []
    assert outcome.missing == set()
    answered = set(outcome.answered)
    assert sorted(i for i in outcome.stored if i in answered) == sorted(answered)


def test_a_crash_never_stores_an_event_twice(crash: Crash) -> None:
    """After SIGKILL and a restart no audit event is stored twice."""
    outcome = crash.killed
    assert outcome.unexpected == []
    assert outcome.stored, "nothing was stored at all"
    assert len(outcome.stored) == len(set(outcome.stored))


def test_a_crash_loses_no_answered_event(crash: Crash) -> None:
    """After SIGKILL mid-burst (database slow), every 403 a client received has its event."""
    assert crash.killed.missing == set()
