"""The orchestrator behind the gateway trusts nothing but the running gateway's own assertion.

A caller that reaches the orchestrator directly (a misrouted network policy, a compromised pod)
must not be able to claim an identity: no assertion, an unsigned one, one signed with its own
key and one signed by a different gateway (the lab's) are all 401 problem+json.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.fixtures.live import LiveStack
from tests.security.evidence import bearer, client_from
from tests.security.forge import encode
from tests.security.lab import LabFactory

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "mro-gateway",
        "aud": "mro-orchestrator",
        "sub": "forged-admin",
        "name": "Forged Admin",
        "preferred_username": "forged",
        "roles": ["admin", "manager", "engineer", "technician"],
        "permissions": ["conversations:read:all", "agents:read", "audit:read"],
        "auth": "jwt",
        "rid": "forged",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
        **overrides,
    }


def _own_key_assertion() -> str:
    key = ECKey.generate_key("P-256", parameters={"kid": "gateway-key"})
    return jwt.encode({"alg": "ES256", "kid": "gateway-key"}, _claims(), key, algorithms=["ES256"])


ASSERTIONS: dict[str, Callable[[], str | None]] = {
    "none-sent": lambda: None,
    "alg-none": lambda: encode({"alg": "none", "typ": "JWT"}, _claims()),
    "hs256-empty-key": lambda: encode({"alg": "HS256", "kid": "gateway-key"}, _claims(), b"\x00"),
    "own-key": _own_key_assertion,
    "garbage": lambda: "not-a-jws",
}


@pytest.mark.parametrize("make", ASSERTIONS.values(), ids=ASSERTIONS.keys())
def test_orchestrator_refuses_direct_calls_without_the_gateways_assertion(
    live_stack: LiveStack, make: Callable[[], str | None]
) -> None:
    """Direct calls with a missing, unsigned, self-signed or garbage assertion are 401."""
    assertion = make()
    headers = {} if assertion is None else {"X-MRO-Assertion": assertion}
    with httpx.Client(base_url=live_stack.orchestrator_url, timeout=30) as orchestrator:
        answer = orchestrator.get("/api/conversations", params={"scope": "all"}, headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_orchestrator_refuses_another_gateways_assertion(
    live_stack: LiveStack, lab_factory: LabFactory, service_token: Callable[[], str]
) -> None:
    """A genuine assertion from a different gateway (other key) does not open the orchestrator."""
    with lab_factory() as lab, lab.client("127.0.0.1") as client:
        assert client.get("/api/agents", headers=bearer(service_token())).status_code == 200
        (foreign,) = lab.upstream.received[-1].header("x-mro-assertion")
    with client_from(live_stack.orchestrator_url) as orchestrator:
        answer = orchestrator.get("/api/agents", headers={"X-MRO-Assertion": foreign})
    assert answer.status_code == 401, answer.text
