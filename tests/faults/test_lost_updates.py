"""Drill: a disable lands in Keycloak between the gateway's read of a person and its write.

A profile save reads the person from Keycloak, then writes them. Here the gateway's Keycloak
client goes through ``DisableFirst``: the first write to a person waits until a disable of that
person, sent as Keycloak's console sends it (the master admin's ``PUT users/{id}``), has been
answered, and the round's other writes wait for it too. So in each of the rounds several
concurrent saves, by the person on ``/api/me`` or by a manager on ``/api/admin/users/{id}``, read
an enabled person and write after the disable.

Promised (docs/users.md): a save writes only the fields it changes, so the person stays
disabled. Only the gateway's own read-then-write window is drilled: two admin writes that overlap
inside Keycloak can lose one of them in Keycloak itself (``KeycloakAdminClient.edit_profile``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from keycloak import KeycloakAdmin
from pydantic import SecretStr

from devstack.keycloak import REALM, admin_token, client_secret
from tests.faults.evidence import bearer
from tests.faults.gateways import in_process_gateway
from tests.gateway.harness import RecordingUpstream, running, settings_for
from tests.gateway.idp.test_admin_client import People, Person, person_tokens

pytestmark = [pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

ROUNDS: Final = 20
SAVES: Final = 4  # concurrent saves per round
_USER_WRITE: Final = re.compile(rf"^/admin/realms/{REALM}/users/([0-9a-f-]{{36}})$")

Save = Callable[[int], tuple[str, dict[str, Any], dict[str, str]]]


class DisableFirst(httpx.AsyncBaseTransport):
    """Forwards the gateway's calls to Keycloak; a person's first write waits for their disable.

    The disable goes out through ``console`` (not through this transport) once per person, and
    every write to that person is held until Keycloak has answered it.
    """

    def __init__(self, console: httpx.AsyncClient) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._console = console
        self._disables: dict[str, asyncio.Task[None]] = {}
        self.held: dict[str, int] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        match = _USER_WRITE.match(request.url.path)
        if request.method == "PUT" and match:
            user_id = match.group(1)
            if user_id not in self._disables:
                self._disables[user_id] = asyncio.create_task(self._disable(user_id))
            await asyncio.shield(self._disables[user_id])
            self.held[user_id] = self.held.get(user_id, 0) + 1
        return await self._inner.handle_async_request(request)

    async def _disable(self, user_id: str) -> None:
        response = await self._console.put(f"/users/{user_id}", json={"enabled": False})
        assert response.status_code == 204, response.text

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture
def people(keycloak_admin: KeycloakAdmin) -> Iterator[People]:
    """Throwaway people, deleted after the test."""
    made = People(keycloak_admin)
    yield made
    made.cleanup()


@pytest.fixture
async def console(keycloak_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Keycloak's admin API for realm mro as the master realm's admin (what the console uses)."""
    with httpx.Client(trust_env=False, timeout=30) as http:
        token = admin_token(http, keycloak_url)
    async with httpx.AsyncClient(
        base_url=f"{keycloak_url}/admin/realms/{REALM}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        trust_env=False,
    ) as client:
        yield client


def own_save(headers: dict[str, str]) -> Save:
    """The person saving their profile: the department and their first name in turn."""

    def save(n: int) -> tuple[str, dict[str, Any], dict[str, str]]:
        body = {"department": f"Hangar {n}"} if n % 2 == 0 else {"first_name": "Throw" + "a" * n}
        return "/api/me", body, headers

    return save


def manager_save(person: Person, headers: dict[str, str]) -> Save:
    """A manager editing the person: the licence number and the last name in turn."""

    def save(n: int) -> tuple[str, dict[str, Any], dict[str, str]]:
        body = {"licence_number": f"UK.66.{n}0001"} if n % 2 == 0 else {"last_name": "Aw" + "a" * n}
        return f"/api/admin/users/{person.id}", body, headers

    return save


@pytest.mark.parametrize("editor", ["self", "manager"])
async def test_a_disable_between_read_and_write_of_profile_saves_sticks(
    editor: str,
    tmp_path: Path,
    redis_url: str,
    keycloak_url: str,
    dev_credentials: dict[str, Any],
    user_tokens: Callable[[str], dict[str, Any]],
    console: httpx.AsyncClient,
    people: People,
    stand_in: RecordingUpstream,
) -> None:
    """Concurrent profile saves that read a person before a console disable and write after it
    leave the person disabled, in every round."""
    settings = settings_for(
        tmp_path,
        keycloak_url=keycloak_url,
        redis_url=redis_url,
        client_secret=SecretStr(client_secret("mro-gateway", dev_credentials)),
    )
    transport = DisableFirst(console)
    reenabled: list[int] = []
    async with (
        httpx.AsyncClient(transport=transport, timeout=10.0, trust_env=False) as keycloak_http,
        running(in_process_gateway(settings, stand_in, keycloak_http=keycloak_http)) as gateway,
    ):
        for round_no in range(ROUNDS):
            person = people.create()
            if editor == "self":
                tokens = await asyncio.to_thread(
                    person_tokens, keycloak_url, person, dev_credentials
                )
                save = own_save(bearer(tokens["access_token"]))
            else:
                save = manager_save(person, bearer(user_tokens("mgr1")["access_token"]))

            async def one(n: int, save: Save = save) -> httpx.Response:
                path, body, headers = save(n)
                return await gateway.patch(path, json=body, headers=headers)

            answers = await asyncio.gather(*(one(n) for n in range(SAVES)))
            statuses = [answer.status_code for answer in answers]
            # The gateway may refuse the person once it has read the disable from Keycloak's
            # admin events; the save whose write waited for the disable got through.
            assert set(statuses) <= {200, 401}, (round_no, statuses)
            assert 200 in statuses, (round_no, statuses)
            assert transport.held.get(person.id, 0) >= 1, "no write waited for the disable"
            stored = await console.get(f"/users/{person.id}")
            if stored.json()["enabled"]:
                reenabled.append(round_no)
    assert reenabled == [], f"a save enabled the person again in rounds {reenabled} of {ROUNDS}"
