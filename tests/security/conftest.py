"""Fixtures of the security suite: clients from addresses of their own, audit, keys, the lab.

Every test that can reach the running stack (``live_stack``: gateway, orchestrator and model
server as processes against the real Keycloak and Redis) does; a test that must see what the
orchestrator received, move the gateway's clock or count its calls to Keycloak uses a lab
gateway (``tests/security/lab.py``). Each test talks from a loopback address of its own, so the
per-address limits of one test never touch another, nor the other suites sharing the stack.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from tests.fixtures.live import LiveStack
from tests.gateway.keys import rsa_key
from tests.security.evidence import AuditReader, LoopbackAddresses, TokenSource, client_from
from tests.security.forge import RealmKey, realm_key
from tests.security.lab import Lab, LabFactory, lab_gateway


@pytest.fixture(scope="session")
def addresses() -> LoopbackAddresses:
    """The allocator of the suite's client addresses."""
    return LoopbackAddresses()


@pytest.fixture
def client_ip(addresses: LoopbackAddresses) -> str:
    """A loopback address no other test uses."""
    return addresses.next()


@pytest.fixture
def gateway(live_stack: LiveStack, client_ip: str) -> Iterator[httpx.Client]:
    """A client of the running gateway, connecting from this test's own address."""
    with client_from(live_stack.gateway_url, client_ip) as client:
        yield client


@pytest.fixture(scope="session")
def manager_token(user_tokens: TokenSource) -> Callable[[], str]:
    """A current access token of the manager mgr1 (refreshed when it nears expiry)."""
    return lambda: str(user_tokens("mgr1")["access_token"])


@pytest.fixture(scope="session")
def service_token(service_tokens: TokenSource) -> Callable[[], str]:
    """A current access token of the service account mro-planning-sync."""
    return lambda: str(service_tokens("mro-planning-sync")["access_token"])


@pytest.fixture(scope="session")
def audit_reader(
    live_stack: LiveStack, addresses: LoopbackAddresses, manager_token: Callable[[], str]
) -> Iterator[AuditReader]:
    """Reads the running gateway's audit log as a manager."""
    with client_from(live_stack.gateway_url, addresses.next()) as client:
        yield AuditReader(client, manager_token)


@pytest.fixture(scope="session")
def realm(keycloak_url: str) -> RealmKey:
    """Realm mro's published signing key in every encoding."""
    return realm_key(keycloak_url)


@pytest.fixture(scope="session")
def attacker_key() -> RSAKey:
    """An RSA key of the attacker's own (not in any published key set)."""
    return rsa_key("attacker-key")


@pytest.fixture(scope="session")
def lab(lab_factory: LabFactory) -> Iterator[Lab]:
    """A lab gateway shared by the request and field tests (bad credentials do not block it)."""
    with lab_factory(limits={"invalid_credentials": "1000/minute"}) as running:
        yield running


@pytest.fixture
def upstream_log(lab: Lab) -> Callable[[], list[str]]:
    """The paths the lab's upstream received during this test."""
    start = len(lab.upstream.received)
    return lambda: [r.path for r in lab.upstream.received[start:]]


@pytest.fixture(scope="session")
def lab_factory(
    keycloak_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> LabFactory:
    """Starts lab gateways: ``with lab_factory(limits=..., **settings) as lab: ...``."""

    @contextlib.contextmanager
    def start(**options: Any) -> Iterator[Lab]:
        folder = tmp_path_factory.mktemp("lab")
        with lab_gateway(folder, keycloak_url=keycloak_url, redis_url=redis_url, **options) as lab:
            yield lab

    return start
