"""Fixtures of the fault drills: tokens that no cache shares, a stand-in orchestrator, a Keycloak
relay, and the warm launcher of the drills' processes.

The drills never stop anything the session shares (Keycloak, the session's Redis, ``live_stack``):
each one breaks a dependency of its own (a relay in front of Keycloak, a private Redis, a private
PostgreSQL, a private orchestrator) or a gateway process of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from devstack.keycloak import client_secret
from tests.faults.gateways import TokenMinter
from tests.faults.processes import ForkServer
from tests.faults.relay import TcpRelay
from tests.gateway.harness import RecordingUpstream
from tests.keycloak_flows import client_credentials_tokens

SERVICE_CLIENT = "mro-planning-sync"


@pytest.fixture(scope="session")
def mint_service_token(dev_credentials: dict[str, Any]) -> TokenMinter:
    """New client-credentials tokens of mro-planning-sync, never cached or shared with others.

    Keycloak writes the URL a token was requested through into ``iss``, so a token minted through
    a relay is a token for a gateway that talks to Keycloak through that relay.
    """
    secret = client_secret(SERVICE_CLIENT, dev_credentials)

    def mint(base_url: str) -> str:
        return str(client_credentials_tokens(base_url, SERVICE_CLIENT, secret)["access_token"])

    return mint


@pytest.fixture(scope="session", autouse=True)
def forks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    """The warm launcher of the drills' processes, started with the first drill so that its
    imports are done by the time a drill needs a process."""
    server = ForkServer(tmp_path_factory.mktemp("forkserver") / "forkserver.log")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def keycloak_relay(keycloak_url: str) -> Iterator[TcpRelay]:
    """A relay in front of the real Keycloak that the test may cut and restore."""
    target = urlsplit(keycloak_url)
    relay = TcpRelay(target.hostname or "127.0.0.1", target.port or 80)
    relay.start()
    try:
        yield relay
    finally:
        relay.close()


@pytest.fixture
def stand_in() -> RecordingUpstream:
    """A stand-in orchestrator recording what reaches it (for in-process gateways)."""
    return RecordingUpstream()
