"""Rate limits: exact under concurrency, not escaped by forged addresses, and a flood of bad
tokens stopped per address before any signature is checked, without locking out the valid
credentials of clients sharing that address."""

from __future__ import annotations

import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.fixtures.live import LiveStack
from tests.security.evidence import (
    AuditReader,
    LoopbackAddresses,
    TokenSource,
    assert_problem,
    bearer,
    client_from,
    metric,
    since,
)
from tests.security.forge import flip_signature_byte
from tests.security.lab import LabFactory

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]

FAILURES = "mro_gateway_auth_failures_total"
PACKAGED_POLICY = Path(__file__).resolve().parents[2] / "gateway" / "policy" / "policy.toml"


def _invalid_credentials_allowed() -> int:
    """How many invalid credentials per address the packaged policy allows in its window."""
    policy = tomllib.loads(PACKAGED_POLICY.read_text("utf-8"))
    return int(policy["rate_limits"]["invalid_credentials"].split("/")[0])


@pytest.fixture(scope="module")
def api_key(
    live_stack: LiveStack, addresses: LoopbackAddresses, manager_token: Callable[[], str]
) -> Iterator[str]:
    """An API key of the running gateway (issued by a manager, revoked afterwards)."""
    with client_from(live_stack.gateway_url, addresses.next()) as admin:
        issued = admin.post(
            "/api/admin/api-keys",
            json={"name": "security-suite shared address", "permissions": ["agents:read"]},
            headers=bearer(manager_token()),
        )
        assert issued.status_code == 201, issued.text
        yield str(issued.json()["key"])
        revoked = admin.post(
            f"/api/admin/api-keys/{issued.json()['id']}/revoke",
            json={},
            headers=bearer(manager_token()),
        )
        assert revoked.status_code == 200, revoked.text


def _concurrently(
    client: httpx.Client, count: int, send: Callable[[httpx.Client], int]
) -> Counter[int]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        return Counter(pool.map(lambda _: send(client), range(count)))


def test_identity_limit_is_exact_under_concurrency(
    lab_factory: LabFactory, service_token: Callable[[], str], client_ip: str
) -> None:
    """40 simultaneous requests against a 25/minute tier: exactly 25 pass, 15 get 429."""
    tiers = {"service": "25/minute", "technician": "120/minute"}
    token = service_token()
    with lab_factory(limits={"tiers": tiers}) as lab, lab.client(client_ip) as client:
        statuses = _concurrently(
            client, 40, lambda c: c.get("/api/agents", headers=bearer(token)).status_code
        )
        assert statuses == Counter({200: 25, 429: 15})
        assert len(lab.upstream.received) == 25
        refused = client.get("/api/agents", headers=bearer(token))
        assert_problem(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["ratelimit-policy"] == '"tier";q=25;w=60'
        assert refused.headers["ratelimit"].startswith('"tier";r=0;t=')
        exceeded = lab.audit.actions("ratelimit.exceeded")
        assert len(exceeded) == 1, "audited once per caller and window"
        assert exceeded[0].reason == "tier"
        assert exceeded[0].actor is not None
        assert exceeded[0].client_ip == client_ip


def test_address_limit_is_exact_under_concurrency(live_stack: LiveStack, client_ip: str) -> None:
    """Public routes: exactly the anonymous quota per address passes, however concurrent."""
    with client_from(live_stack.gateway_url, client_ip) as client:
        quota = int(client.get("/healthz").headers["ratelimit-policy"].split("q=")[1].split(";")[0])
        statuses = _concurrently(client, quota + 20, lambda c: c.get("/healthz").status_code)
    assert statuses == Counter({200: quota - 1, 429: 21})


def test_forwarded_for_rotation_does_not_escape_the_limit(
    gateway: httpx.Client, audit_reader: AuditReader, client_ip: str
) -> None:
    """A new X-Forwarded-For on every bad credential still counts against the socket's address."""
    after = since()
    statuses = [
        gateway.get(
            "/api/agents",
            headers={
                "Authorization": f"Bearer forged.{n}.token",
                "X-Forwarded-For": f"198.51.100.{n}",
                "X-Real-IP": f"198.51.100.{n}",
                "Forwarded": f"for=198.51.100.{n}",
            },
        ).status_code
        for n in range(25)
    ]
    assert statuses == [401] * 20 + [429] * 5
    events = audit_reader.wait_for(
        "auth.token_rejected", after=after, count=20, where=lambda e: e["client_ip"] == client_ip
    )
    assert len(events) == 20
    forged = audit_reader.events(action="auth.token_rejected", after=after)
    assert not [e for e in forged if str(e["client_ip"]).startswith("198.51.100.")]


def test_behind_a_trusted_proxy_only_the_address_it_appended_counts(
    lab_factory: LabFactory,
) -> None:
    """With a trusted proxy in front, rotating the client-written part of X-Forwarded-For does
    not escape the limit: the right-most untrusted address is the one limited and audited."""
    with lab_factory(trusted_proxies=["127.0.0.0/8"]) as lab, lab.client("127.0.0.1") as proxy:
        statuses = [
            proxy.get(
                "/api/agents",
                headers={
                    "Authorization": "Bearer forged.token.value",
                    "X-Forwarded-For": f"10.{n}.0.1, 198.51.100.77, 127.0.0.9",
                },
            ).status_code
            for n in range(23)
        ]
        assert statuses == [401] * 20 + [429] * 3
        addresses = {event.client_ip for event in lab.audit.actions("auth.token_rejected")}
        assert addresses == {"198.51.100.77"}


def test_bad_token_flood_is_stopped_before_signature_work(
    gateway: httpx.Client,
    audit_reader: AuditReader,
    client_ip: str,
    service_token: Callable[[], str],
) -> None:
    """After the address's allowance of invalid credentials, forged tokens get 429 without a
    signature check: the gateway's signature-failure count stops growing."""
    forged = flip_signature_byte(service_token())
    before = metric(gateway.get("/metrics").text, FAILURES, reason="token_signature")
    after = since()
    answers = [gateway.get("/api/agents", headers=bearer(forged)) for _ in range(50)]
    assert [a.status_code for a in answers] == [401] * 20 + [429] * 30
    refused = answers[-1]
    assert_problem(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-policy"].startswith('"invalid-credentials";q=20;w=60')
    grown = metric(gateway.get("/metrics").text, FAILURES, reason="token_signature")
    assert grown - before == 20
    events = audit_reader.wait_for(
        "auth.token_rejected", after=after, count=20, where=lambda e: e["client_ip"] == client_ip
    )
    assert {e["reason"] for e in events} == {"token_signature"}
    assert len(events) == 20
    assert forged not in str(events)


def test_bad_tokens_from_a_shared_address_do_not_lock_out_valid_credentials(
    gateway: httpx.Client,
    user_tokens: TokenSource,
    service_token: Callable[[], str],
    api_key: str,
) -> None:
    """Behind one NAT address, a client sending more bad tokens than ``invalid_credentials``
    allows gets 429, while a user's token and an API key from that address still get 200."""
    allowed = _invalid_credentials_allowed()
    forged = flip_signature_byte(service_token())
    sent = allowed + 5
    statuses = [gateway.get("/api/agents", headers=bearer(forged)).status_code for _ in range(sent)]
    assert statuses == [401] * allowed + [429] * 5
    technician = gateway.get("/api/agents", headers=bearer(user_tokens("tech1")["access_token"]))
    assert technician.status_code == 200, technician.text
    assert technician.headers["ratelimit-policy"].startswith('"tier";')
    assert gateway.get("/api/agents", headers={"X-API-Key": api_key}).status_code == 200
    for credential in (bearer(forged), bearer("another.forged.token"), {"X-API-Key": "mro_x_y"}):
        refused = gateway.get("/api/agents", headers=credential)
        assert_problem(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["ratelimit-policy"].startswith(
            f'"invalid-credentials";q={allowed};w=60'
        )
        assert refused.headers["ratelimit"].startswith('"invalid-credentials";r=0;t=')
