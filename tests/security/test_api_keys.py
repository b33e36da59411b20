"""API keys: no timing oracle, revocation within the documented cache time, never in the clear.

Keys are created through the running gateway's admin API by a manager, used against the same
gateway, and looked for afterwards in its log file, its audit log and its database file.
"""

from __future__ import annotations

import random
import secrets
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.live import LiveStack
from tests.security.evidence import (
    AuditReader,
    LoopbackAddresses,
    assert_problem,
    bearer,
    client_from,
    since,
)
from tests.security.lab import LabFactory
from tests.security.timing import compare

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
ROUNDS_PER_ADDRESS = 6  # three kinds per round: 18 rejections, under the 20 per address
ADDRESSES = 20


@dataclass(frozen=True)
class IssuedKey:
    id: str
    key: str

    @property
    def secret(self) -> str:
        return self.key.rsplit("_", 1)[1]


class KeyAdmin:
    """The API-key administration of the running gateway, as a manager."""

    def __init__(self, client: httpx.Client, token: Callable[[], str]) -> None:
        self._client = client
        self._token = token

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self._client.post(path, json=body, headers=bearer(self._token()))

    def create(self, name: str) -> IssuedKey:
        answer = self._post("/api/admin/api-keys", {"name": name, "permissions": ["agents:read"]})
        assert answer.status_code == 201, answer.text
        return IssuedKey(answer.json()["id"], answer.json()["key"])

    def rotate(self, key: IssuedKey) -> IssuedKey:
        answer = self._post(f"/api/admin/api-keys/{key.id}/rotate", {"grace_hours": 0})
        assert answer.status_code == 201, answer.text
        return IssuedKey(answer.json()["id"], answer.json()["key"])

    def revoke(self, key: IssuedKey) -> None:
        answer = self._post(f"/api/admin/api-keys/{key.id}/revoke", {})
        assert answer.status_code == 200, answer.text

    def listing(self) -> str:
        answer = self._client.get("/api/admin/api-keys", headers=bearer(self._token()))
        assert answer.status_code == 200, answer.text
        return answer.text


@pytest.fixture(scope="module")
def key_admin(
    live_stack: LiveStack, addresses: LoopbackAddresses, manager_token: Callable[[], str]
) -> Iterator[KeyAdmin]:
    with client_from(live_stack.gateway_url, addresses.next()) as client:
        yield KeyAdmin(client, manager_token)


@pytest.fixture(scope="module")
def timing_key(key_admin: KeyAdmin) -> Iterator[IssuedKey]:
    key = key_admin.create("security-suite timing")
    yield key
    key_admin.revoke(key)


def _random_text(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def _near_miss(key: IssuedKey) -> str:
    last = key.secret[-1]
    return key.key[:-1] + ("A" if last != "A" else "B")


def test_a_valid_key_authenticates_only_in_its_two_headers(
    live_stack: LiveStack, client_ip: str, timing_key: IssuedKey
) -> None:
    """The key works in ``X-API-Key`` and as a bearer token (as OpenAI-style clients send keys);
    in the query string or as Basic credentials it does not, and a bearer value that is neither
    a JWT nor a key is told how to send one."""
    with client_from(live_stack.gateway_url, client_ip) as client:
        assert client.get("/api/agents", headers={"X-API-Key": timing_key.key}).status_code == 200
        assert client.get("/api/agents", headers=bearer(timing_key.key)).status_code == 200
        in_query = client.get("/api/agents", params={"api_key": timing_key.key})
        assert_problem(in_query, 401, "authentication_required")
        as_basic = client.get("/api/agents", headers={"Authorization": f"Basic {timing_key.key}"})
        assert_problem(as_basic, 401, "unsupported_scheme")
        foreign = client.get("/api/agents", headers=bearer("sk-" + timing_key.key[4:]))
        assert_problem(foreign, 401, "token_malformed")
        assert "X-API-Key" in foreign.json()["detail"]


def test_near_miss_and_random_keys_take_the_same_time(
    live_stack: LiveStack, addresses: LoopbackAddresses, timing_key: IssuedKey
) -> None:
    """A key one character off, a wrong secret for a real id and a random key are refused in
    indistinguishable time (medians of interleaved samples)."""
    samples: dict[str, list[float]] = {"near-miss": [], "wrong-secret": [], "unknown-id": []}
    makers: dict[str, Callable[[], str]] = {
        "near-miss": lambda: _near_miss(timing_key),
        "wrong-secret": lambda: f"mro_{timing_key.id}_{_random_text(43)}",
        "unknown-id": lambda: f"mro_{_random_text(16)}_{_random_text(43)}",
    }
    rng = random.Random(7)  # the order is shuffled, reproducibly
    for _ in range(ADDRESSES):
        with client_from(live_stack.gateway_url, addresses.next()) as client:
            assert client.get("/healthz").status_code == 200  # opens the connection
            for _ in range(ROUNDS_PER_ADDRESS):
                kinds = list(samples)
                rng.shuffle(kinds)
                for kind in kinds:
                    key = makers[kind]()
                    started = time.perf_counter()
                    answer = client.get("/api/agents", headers={"X-API-Key": key})
                    samples[kind].append(time.perf_counter() - started)
                    assert answer.status_code == 401, answer.text
                    assert answer.json()["code"] == "invalid_api_key"
    for other in ("wrong-secret", "unknown-id"):
        result = compare(samples["near-miss"], samples[other])
        assert not result.distinguishable, f"near-miss vs {other}: {result.describe()}"


def test_the_timing_comparison_detects_a_real_shortcut() -> None:
    """The comparison used above flags a 3 ms shortcut hidden in noisy, drifting samples, and
    does not flag two kinds that differ by noise and drift alone."""
    rng = random.Random(11)

    drift = [rng.uniform(0.0, 0.005) for _ in range(120)]  # the machine's load, round by round

    def noisy(base: float) -> list[float]:
        return [base + load + rng.expovariate(1 / 0.001) for load in drift]

    assert compare(noisy(0.004), noisy(0.007)).distinguishable
    assert not compare(noisy(0.004), noisy(0.004)).distinguishable


def test_revoked_key_stops_at_once_on_the_revoking_gateway(
    gateway: httpx.Client, key_admin: KeyAdmin, audit_reader: AuditReader, client_ip: str
) -> None:
    """Right after the revoke call returns, the key (cached a moment ago) is refused."""
    key = key_admin.create("security-suite revoke")
    assert gateway.get("/api/agents", headers={"X-API-Key": key.key}).status_code == 200
    after = since()
    key_admin.revoke(key)
    assert_problem(
        gateway.get("/api/agents", headers={"X-API-Key": key.key}), 401, "invalid_api_key"
    )
    events = audit_reader.wait_for(
        "api_key.rejected", after=after, where=lambda e: e["target"] == f"apikey:{key.id}"
    )
    assert events[0]["reason"] == "revoked"


def test_revoked_key_stops_within_the_cache_time_on_another_replica(
    live_stack: LiveStack, lab_factory: LabFactory, key_admin: KeyAdmin
) -> None:
    """A second gateway on the same database refuses a key revoked elsewhere once its
    documented cache time (``api_key_cache_seconds``) has passed; no one waits for it."""
    database_url = _gateway_env(live_stack)["MRO_GATEWAY_DATABASE_URL"]
    key = key_admin.create("security-suite replica")
    with lab_factory(database_url=database_url) as replica, replica.client() as client:
        replica.clock.pin(time.time())
        assert client.get("/api/agents", headers={"X-API-Key": key.key}).status_code == 200
        key_admin.revoke(key)
        replica.clock.advance(replica.settings.api_key_cache_seconds + 1)
        assert_problem(
            client.get("/api/agents", headers={"X-API-Key": key.key}), 401, "invalid_api_key"
        )


def _gateway_env(live_stack: LiveStack) -> dict[str, str]:
    return next(s.env for s in live_stack.services if s.name == "gateway")


def _gateway_log(live_stack: LiveStack) -> Path:
    path = next(s.log_path for s in live_stack.services if s.name == "gateway")
    assert path is not None
    return path


def _database_files(live_stack: LiveStack) -> list[Path]:
    url = _gateway_env(live_stack)["MRO_GATEWAY_DATABASE_URL"]
    database = Path(url.split(":///", 1)[1])
    return [p for p in database.parent.glob(database.name + "*") if p.is_file()]


def test_keys_never_appear_in_logs_audit_or_database(
    live_stack: LiveStack,
    gateway: httpx.Client,
    key_admin: KeyAdmin,
    audit_reader: AuditReader,
    service_token: Callable[[], str],
) -> None:
    """After creating, using, missing, rotating and revoking keys, no secret (nor a bearer token)
    is in the gateway's log file, its audit log, its key listing or its database file."""
    after = since()
    first = key_admin.create("security-suite secrets")
    used = gateway.get("/api/agents", headers={"X-API-Key": first.key})
    assert used.status_code == 200
    gateway.get("/api/agents", headers={"X-API-Key": _near_miss(first)})
    second = key_admin.rotate(first)
    assert gateway.get("/api/agents", headers={"X-API-Key": second.key}).status_code == 200
    token = service_token()
    assert gateway.get("/api/agents", headers=bearer(token)).status_code == 200
    key_admin.revoke(second)
    secrets_ = [first.secret, second.secret, _near_miss(first).rsplit("_", 1)[1]]
    signature = token.rsplit(".", 1)[1]

    audit_reader.wait_for("api_key.revoked", after=after)
    audit = str(audit_reader.events(after=after))
    assert first.id in audit  # the key's id is what the audit log names
    assert [s for s in secrets_ if s in audit] == []

    listing = key_admin.listing()
    assert second.id in listing
    assert [s for s in secrets_ if s in listing] == []

    log = _wait_for_text(_gateway_log(live_stack), used.headers.get_list("x-request-id")[0])
    assert [s for s in [*secrets_, signature] if s in log] == []

    stored = b"".join(path.read_bytes() for path in _database_files(live_stack))
    assert first.id.encode() in stored
    assert [s for s in secrets_ if s.encode() in stored] == []


def _wait_for_text(path: Path, marker: str, seconds: float = 5.0) -> str:
    """The file's text once it contains marker (the process writes its log asynchronously)."""
    deadline = time.monotonic() + seconds
    while True:
        text = path.read_text(errors="replace")
        if marker in text or time.monotonic() > deadline:
            assert marker in text, f"{marker} not logged in {path.name}"
            return text
        time.sleep(0.1)
