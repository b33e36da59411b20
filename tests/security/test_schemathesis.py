"""Schemathesis against the running stack: no 5xx, and every refusal is problem+json.

Two documents are fuzzed, both through the gateway: the gateway's own ``/openapi.json`` and the
orchestrator's ``/api`` operations (its document built from the app; they are sent to the
gateway, which proxies them). Requests carry the access token of a throwaway user
with the ``admin`` role, so the input passes every permission check and reaches the handlers.

Schemathesis draws *negative* cases only (input its schema forbids) for operations that write,
so the fuzz cannot invite users, mint keys or end sessions of the shared realm; read-only
operations also get valid input. The example count per operation is kept small for CI
(``MRO_SCHEMATHESIS_EXAMPLES``, default 20); the draw is random per run, and a failure prints
the request as a curl command to replay it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from keycloak import KeycloakAdmin
from schemathesis import Case, GenerationMode
from schemathesis.core.control import SkipTest
from schemathesis.schemas import BaseSchema

from devstack.keycloak import client_secret
from orchestrator.api import create_app as create_orchestrator
from orchestrator.settings import OrchestratorSettings
from tests.fixtures.live import LiveStack
from tests.gateway.login_stack import keycloak_user
from tests.keycloak_flows import authorization_code_tokens
from tests.security.evidence import LoopbackAddresses, client_from

pytestmark = [pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

EXAMPLES = int(os.environ.get("MRO_SCHEMATHESIS_EXAMPLES", "20"))
READ_ONLY = {"GET", "HEAD", "OPTIONS"}


def _document(url: str) -> dict[str, Any]:
    answer = httpx.get(url, timeout=30)
    assert answer.status_code == 200, f"{url}: {answer.status_code}"
    document: dict[str, Any] = answer.json()
    return document


def _schema(document: dict[str, Any], base_url: str) -> BaseSchema:
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=base_url)
    schema.config.generation.update(modes=[GenerationMode.NEGATIVE])
    return schema


@pytest.fixture(scope="module")
def fuzz_admin(
    keycloak_admin: KeycloakAdmin, keycloak_url: str, dev_credentials: dict[str, Any]
) -> Iterator[str]:
    """A throwaway admin's access token (its own profile is the only one the fuzz may touch)."""
    with keycloak_user(keycloak_admin, role="admin") as user:
        tokens = authorization_code_tokens(
            keycloak_url,
            user.username,
            user.password,
            client_secret=client_secret("mro-gateway", dev_credentials),
        )
        yield str(tokens["access_token"])


@pytest.fixture(scope="module")
def fuzz_client(live_stack: LiveStack, addresses: LoopbackAddresses) -> Iterator[httpx.Client]:
    """A client of the gateway from a loopback address of its own."""
    with client_from(live_stack.gateway_url, addresses.next()) as client:
        yield client


@pytest.fixture(scope="module")
def gateway_schema(live_stack: LiveStack) -> BaseSchema:
    """The gateway's own operations, from its running document."""
    return _schema(_document(f"{live_stack.gateway_url}/openapi.json"), live_stack.gateway_url)


@pytest.fixture(scope="module")
def orchestrator_schema(live_stack: LiveStack) -> BaseSchema:
    """The orchestrator's operations under /api (the ones the gateway proxies), sent through
    the gateway. Its document is built from the app, as the running one needs an assertion."""
    document = create_orchestrator(OrchestratorSettings()).openapi()
    document["paths"] = {
        path: item for path, item in document["paths"].items() if path.startswith("/api/")
    }
    return _schema(document, live_stack.gateway_url)


def _send(client: httpx.Client, case: Case, token: str) -> httpx.Response:
    """Send case with the token; cookies go in a Cookie field (the client keeps none)."""
    kwargs = case.as_transport_kwargs(headers={"Authorization": f"Bearer {token}"})
    headers = dict(kwargs.get("headers") or {})
    if cookies := kwargs.get("cookies"):
        headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
    if "json" in kwargs:
        content: Any = json.dumps(kwargs["json"])
    elif isinstance(kwargs.get("data"), dict):
        content = urlencode(kwargs["data"])
    else:
        content = kwargs.get("data")
    return client.request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        headers=headers,
        content=content,
    )


def _problem(case: Case, answer: httpx.Response) -> str | None:
    """Why answer is unacceptable for case (with a curl command to replay it), or None."""
    where = f"{case.method} {case.formatted_path} -> {answer.status_code}\n{case.as_curl_command()}"
    if answer.status_code >= 500:
        return f"{where}\n{answer.text[:300]}"
    if answer.status_code >= 400:
        media = answer.headers.get("content-type", "")
        if not media.startswith("application/problem+json"):
            return f"{where} as {media}"
        problem = answer.json()
        if problem.get("status") != answer.status_code or not problem.get("code"):
            return f"{where} with a malformed problem {problem}"
    return None


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Outcome:
    """What one document's fuzz sent and found."""

    operations: list[str] = field(default_factory=list)
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    nothing_to_break: list[str] = field(default_factory=list)


def _fuzz(schema: BaseSchema, client: httpx.Client, token: str) -> Outcome:
    outcome = Outcome()
    for result in schema.get_all_operations():
        operation = result.ok()  # raises for an operation schemathesis cannot read
        outcome.operations.append(f"{operation.method.upper()} {operation.path}")
        modes = [GenerationMode.NEGATIVE]
        if operation.method.upper() in READ_ONLY:
            modes.append(GenerationMode.POSITIVE)
        for mode in modes:

            @FUZZ
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Case) -> None:
                outcome.sent += 1
                problem = _problem(case, _send(client, case, token))
                if problem:
                    outcome.failures.append(problem)

            try:
                run()
            except SkipTest:
                # Nothing in the operation's schema can be broken (no parameters, no body).
                outcome.nothing_to_break.append(f"{operation.method.upper()} {operation.path}")
    return outcome


def test_gateway_operations_refuse_malformed_input_cleanly(
    gateway_schema: BaseSchema, fuzz_client: httpx.Client, fuzz_admin: str
) -> None:
    """Every gateway operation, fed input its schema forbids, answers < 500 with problem+json."""
    outcome = _fuzz(gateway_schema, fuzz_client, fuzz_admin)
    assert {"PATCH /api/me", "POST /api/admin/api-keys", "GET /api/admin/audit"} <= set(
        outcome.operations
    )
    assert outcome.sent >= len(outcome.operations) * 2
    assert outcome.failures == [], "\n\n".join(outcome.failures)


def test_orchestrator_operations_through_the_gateway_refuse_malformed_input_cleanly(
    orchestrator_schema: BaseSchema, fuzz_client: httpx.Client, fuzz_admin: str
) -> None:
    """Every orchestrator operation, sent through the gateway with input its schema forbids,
    answers < 500 with problem+json."""
    outcome = _fuzz(orchestrator_schema, fuzz_client, fuzz_admin)
    assert "POST /api/conversations/{conversation_id}/messages" in outcome.operations
    assert outcome.sent >= len(outcome.operations) * 2
    assert outcome.failures == [], "\n\n".join(outcome.failures)
