"""Fuzzing the running gateway from its own OpenAPI document: malformed input never makes a 5xx
and every error is problem+json.

The operations come from ``/openapi.json`` (served in development); the orchestrator's routes,
which the gateway proxies, are added from the contract in docs/architecture.md. Each operation
gets malformed requests as an administrator (who passes every permission check, so the input
reaches the handlers) and one without credentials. The seed is fixed for reproducibility;
``MRO_FUZZ_SEED`` draws another sample.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.live import LiveStack
from tests.security.evidence import LoopbackAddresses, TokenSource, bearer, client_from
from tests.security.fuzz import Draw, Operation, draws, operations

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]

SEED = int(os.environ.get("MRO_FUZZ_SEED", "20240611"))
DRAWS_PER_OPERATION = 4
# Proxied to the orchestrator (docs/architecture.md); not in the gateway's own document.
PROXIED = [
    Operation("GET", "/api/agents"),
    Operation(
        "GET",
        "/api/conversations",
        (
            {"name": "limit", "in": "query"},
            {"name": "offset", "in": "query"},
            {"name": "scope", "in": "query"},
        ),
    ),
    Operation("POST", "/api/conversations", body={"properties": {"title": {"type": "string"}}}),
    Operation("GET", "/api/conversations/{id}", ({"name": "id", "in": "path"},)),
    Operation("DELETE", "/api/conversations/{id}", ({"name": "id", "in": "path"},)),
    Operation(
        "POST",
        "/api/conversations/{id}/messages",
        ({"name": "id", "in": "path"},),
        {
            "properties": {
                "content": {"type": "string"},
                "agent": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "max_tokens": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            }
        },
    ),
]


# Draws that hit a weakness documented by a test of its own below (docs/security.md).
KNOWN_WEAKNESSES: set[tuple[str, str]] = set()


def _check(answer: httpx.Response, draw: Draw) -> str | None:
    """Why answer is unacceptable for draw, or None."""
    where = f"{draw.method} {draw.url} ({draw.kind}): {answer.status_code}"
    if answer.status_code >= 500:
        return f"{where} {answer.text[:200]}"
    if answer.status_code >= 400:
        if not answer.headers.get("content-type", "").startswith("application/problem+json"):
            return f"{where} without problem+json"
        body: dict[str, Any] = answer.json()
        if body.get("status") != answer.status_code or not body.get("code"):
            return f"{where} with a malformed problem {body}"
    return None


def _send(client: httpx.Client, draw: Draw, headers: dict[str, str]) -> httpx.Response:
    return client.request(
        draw.method,
        draw.url,
        params=tuple(draw.params),
        headers={**draw.headers, **headers},
        content=draw.content,
    )


@pytest.fixture(scope="module")
def document(gateway_module: httpx.Client) -> dict[str, Any]:
    """The running gateway's OpenAPI document."""
    answer = gateway_module.get("/openapi.json")
    assert answer.status_code == 200
    spec: dict[str, Any] = answer.json()
    return spec


@pytest.fixture(scope="module")
def gateway_module(live_stack: LiveStack, addresses: LoopbackAddresses) -> Iterator[httpx.Client]:
    """One client of the running gateway for the whole module."""
    with client_from(live_stack.gateway_url, addresses.next()) as client:
        yield client


def test_the_document_covers_the_gateways_own_routes(document: dict[str, Any]) -> None:
    """The fuzz is not vacuous: the document lists the admin, profile and login operations."""
    names = {op.name for op in operations(document)}
    for expected in (
        "GET /api/admin/audit",
        "POST /api/admin/api-keys",
        "PATCH /api/admin/users/{user_id}",
        "PATCH /api/me",
        "POST /auth/backchannel-logout",
    ):
        assert expected in names
    assert len(names) >= 25


def test_malformed_requests_never_cause_a_5xx_and_errors_are_problems(
    gateway_module: httpx.Client, document: dict[str, Any], user_tokens: TokenSource
) -> None:
    """Every operation, fed malformed paths, queries and bodies, answers < 500 with
    problem+json errors, with and without credentials."""
    rng = random.Random(SEED)

    def admin() -> dict[str, str]:
        return bearer(user_tokens("admin1")["access_token"])

    failures: list[str] = []
    sent = 0
    for operation in [*operations(document), *PROXIED]:
        for index, draw in enumerate(draws(operation, document, rng, DRAWS_PER_OPERATION)):
            if (operation.name, draw.kind) in KNOWN_WEAKNESSES:
                continue
            credentials = admin() if index else {}
            problem = _check(_send(gateway_module, draw, credentials), draw)
            sent += 1
            if problem:
                failures.append(problem)
    assert sent > 100
    assert failures == [], "\n".join(failures)


def test_deeply_nested_json_to_the_model_route_is_a_client_error(
    gateway_module: httpx.Client, service_token: Callable[[], str]
) -> None:
    """A message body nested 50 000 levels deep is refused as the client's error (4xx)."""
    answer = gateway_module.post(
        f"/api/conversations/{uuid.uuid4()}/messages",
        content=b"[" * 50_000 + b"]" * 50_000,
        headers={"Content-Type": "application/json", **bearer(service_token())},
    )
    assert 400 <= answer.status_code < 500, answer.text[:200]
    assert answer.headers["content-type"].startswith("application/problem+json")
