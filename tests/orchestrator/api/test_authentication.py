"""Every route but the health checks needs a valid gateway assertion; attacks answer 401."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc.jwk import ECKey

from tests.fixtures.orchestrator import Orchestrator, handmade_token

PROTECTED = [
    ("GET", "/api/agents"),
    ("GET", "/api/conversations"),
    ("POST", "/api/conversations"),
    ("GET", "/api/conversations/00000000-0000-0000-0000-000000000000"),
    ("DELETE", "/api/conversations/00000000-0000-0000-0000-000000000000"),
    ("POST", "/api/conversations/00000000-0000-0000-0000-000000000000/messages"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("GET", "/no/such/route"),
]


def assert_unauthorized(response: Any, code: str = "invalid_assertion") -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("MRO-Assertion")
    body = response.json()
    assert (body["status"], body["code"]) == (401, code)
    assert body["type"].endswith("/" + code)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_no_assertion_is_401_everywhere(
    orchestrator: Orchestrator, method: str, path: str
) -> None:
    """Without X-MRO-Assertion every route (and unknown paths) answers 401 problem+json."""
    response = await orchestrator.http.request(method, path, json={"content": "x"})
    assert_unauthorized(response, "missing_assertion")


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_routes_are_public(orchestrator: Orchestrator, path: str) -> None:
    """The health checks answer without an assertion."""
    assert (await orchestrator.http.get(path)).status_code == 200


def _attacks(orchestrator: Orchestrator) -> dict[str, str]:
    signer = orchestrator.signer
    forger = ECKey.generate_key("P-256", parameters={"kid": signer.kid})
    return {
        "expired": signer.sign(iat=1_000, nbf=1_000, exp=1_060),
        "wrong-audience": signer.sign(aud="mro-gateway"),
        "wrong-issuer": signer.sign(iss="https://evil.example"),
        "wrong-key": signer.sign(key=forger),
        "alg-none": handmade_token({"alg": "none", "kid": signer.kid}, signer.claims()),
        "hs256": handmade_token(
            {"alg": "HS256", "kid": signer.kid}, signer.claims(), hs256_secret=b"guessed"
        ),
        "garbage": "not-a-token",
    }


@pytest.mark.parametrize(
    "attack",
    ["expired", "wrong-audience", "wrong-issuer", "wrong-key", "alg-none", "hs256", "garbage"],
)
async def test_forged_or_stale_assertions_are_401(orchestrator: Orchestrator, attack: str) -> None:
    """Expired, mis-addressed, foreign-signed, unsigned and HMAC assertions are refused."""
    token = _attacks(orchestrator)[attack]
    response = await orchestrator.http.get("/api/conversations", headers={"X-MRO-Assertion": token})
    assert_unauthorized(
        response, "expired_assertion" if attack == "expired" else "invalid_assertion"
    )


async def test_two_assertion_headers_are_401(orchestrator: Orchestrator) -> None:
    """A request carrying two assertions is ambiguous and refused."""
    token = orchestrator.signer.sign()
    response = await orchestrator.http.get(
        "/api/conversations",
        headers=[("X-MRO-Assertion", token), ("X-MRO-Assertion", token)],
    )
    assert_unauthorized(response)


async def test_unknown_key_is_401_unknown_key(orchestrator: Orchestrator) -> None:
    """An assertion naming a kid the gateway never published is 401 unknown_key."""
    other = ECKey.generate_key("P-256", parameters={"kid": "rotated-away"})
    token = orchestrator.signer.sign(key=other, header={"kid": "rotated-away"})
    response = await orchestrator.http.get("/api/agents", headers={"X-MRO-Assertion": token})
    assert_unauthorized(response, "unknown_key")


async def test_valid_assertion_reaches_the_route(orchestrator: Orchestrator) -> None:
    """A valid assertion gets through to the route."""
    response = await orchestrator.http.get("/api/conversations", headers=orchestrator.as_user())
    assert response.status_code == 200


async def test_request_id_comes_from_the_assertion(orchestrator: Orchestrator) -> None:
    """The assertion's rid becomes the request id echoed in X-Request-ID and problem bodies."""
    headers = orchestrator.as_user(rid="gw-request-0001")
    response = await orchestrator.http.get("/api/no-such-thing", headers=headers)
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "gw-request-0001"
    assert response.json()["request_id"] == "gw-request-0001"
