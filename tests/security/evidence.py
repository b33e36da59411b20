"""What the suite checks besides the status: problem documents, audit records, metrics.

Audit events reach the database through the gateway's queue a moment after the answer, so
``AuditReader.wait_for`` polls the admin API (``GET /api/admin/audit``) until the expected
records are there. Each test talks from a loopback address of its own (``LoopbackAddresses``), so
the records of a test are those with its ``client_ip``.
"""

from __future__ import annotations

import functools
import itertools
import random
import re
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from gateway.problems import CONTENT_TYPE, TYPE_BASE

AUDIT_WAIT_SECONDS = 10.0

TokenSource = Callable[[str], dict[str, Any]]


class LoopbackAddresses:
    """Distinct 127.x.y.z source addresses: one client each, for per-address limits.

    The second octet is random per run, so a rerun within a rate-limit window against the same
    Redis does not meet the counters of the previous run.
    """

    def __init__(self) -> None:
        self._prefix = random.randint(16, 250)  # spreads runs; not a secret
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            n = next(self._counter)
        return f"127.{self._prefix}.{n // 250 % 250 + 1}.{n % 250 + 1}"


@functools.cache
def _tls() -> ssl.SSLContext:
    # Building a context per client costs tens of milliseconds; the suite speaks plain http.
    return ssl.create_default_context()


def transport(source: str | None = None) -> httpx.HTTPTransport:
    """An httpx transport whose connections come from the loopback address source."""
    return httpx.HTTPTransport(local_address=source, verify=_tls())


def client_from(base_url: str, source: str | None = None, **kwargs: Any) -> httpx.Client:
    """An httpx client for base_url whose connections come from the address source."""
    kwargs.setdefault("timeout", 30)
    return httpx.Client(base_url=base_url, transport=transport(source), **kwargs)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """Check response is an RFC 9457 problem with status (and code); return its body."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith(CONTENT_TYPE), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status, body
    assert body["type"] == TYPE_BASE + body["code"], body
    assert body["request_id"] == response.headers["x-request-id"], body
    if code is not None:
        assert body["code"] == code, body
    return body


def since(seconds_ago: float = 2.0) -> datetime:
    """A ``since`` bound for audit queries: slightly before now."""
    return datetime.now(UTC) - timedelta(seconds=seconds_ago)


class AuditReader:
    """Reads the gateway's audit log through its admin API with a manager's token."""

    def __init__(self, client: httpx.Client, token: Callable[[], str]) -> None:
        self._client = client
        self._token = token

    def events(self, *, action: str | None = None, after: datetime) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"since": after.isoformat(), "limit": 1000}
        if action is not None:
            params["action"] = action
        response = self._client.get(
            "/api/admin/audit",
            params=params,
            headers={"Authorization": f"Bearer {self._token()}"},
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def wait_for(
        self,
        action: str,
        *,
        after: datetime,
        count: int = 1,
        where: Callable[[dict[str, Any]], bool] = lambda event: True,
        seconds: float = AUDIT_WAIT_SECONDS,
    ) -> list[dict[str, Any]]:
        """The matching events once at least count of them are stored (fails after seconds)."""
        deadline = time.monotonic() + seconds
        while True:
            found = [event for event in self.events(action=action, after=after) if where(event)]
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"expected {count} {action} events, found {found}"
                return found
            time.sleep(0.1)


_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE)


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of samples of name whose labels include labels, in Prometheus text."""
    total = 0.0
    for match in _SAMPLE.finditer(text):
        if match["name"] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(match["value"])
    return total
