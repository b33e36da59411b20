"""The API-key admin routes over HTTP (ASGI), with a real database and the real authenticator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.events import AuditEvent
from gateway.auth.api_keys import ApiKeyAuthenticator, parse_key
from gateway.db import create_engine, create_schema, session_factory
from gateway.errors import AuthenticationError
from gateway.identity import AuthMethod, Identity
from gateway.policy.policy_file import Policy
from gateway.problems import CONTENT_TYPE as PROBLEM_CONTENT_TYPE
from gateway.settings import GatewaySettings
from tests.gateway.keys import FakeClock, admin_app

BASE = "/api/admin/api-keys"
PEOPLE = {
    "mgr": Identity("mgr-1", AuthMethod.JWT, frozenset({"manager"}), "mgr1", "Mia Manager"),
    "admin": Identity("adm-1", AuthMethod.JWT, frozenset({"admin"}), "admin1", "Ada Admin"),
    "eng": Identity("eng-1", AuthMethod.JWT, frozenset({"engineer"}), "eng1", "Eli Engineer"),
}


class HeaderAuthenticator:
    """Identifies test callers by an ``X-Test-User`` field (the pipeline's part in these tests)."""

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        who = headers.get("x-test-user")
        if who is None:
            return None
        if who not in PEOPLE:
            raise AuthenticationError("unknown test user")
        return PEOPLE[who]


@dataclass
class ListSink:
    events: list[AuditEvent] = field(default_factory=list)

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)

    def of(self, action: str) -> list[AuditEvent]:
        return [e for e in self.events if e.action == action]


@dataclass
class Admin:
    client: httpx.AsyncClient
    keys: ApiKeyAuthenticator
    audit: ListSink
    clock: FakeClock
    changed: list[str]
    engine: AsyncEngine
    database: Path

    @asynccontextmanager
    async def database_down(self) -> AsyncIterator[None]:
        """The database file moved away and a folder in its place, then put back."""
        await self.engine.dispose()  # no pooled connection keeps the old file open
        away = self.database.with_suffix(".away")
        self.database.rename(away)
        self.database.mkdir()
        try:
            yield
        finally:
            self.database.rmdir()
            away.rename(self.database)

    async def call(
        self, who: str | None, method: str, path: str = "", **kwargs: Any
    ) -> httpx.Response:
        headers = {"X-Test-User": who} if who else {}
        return await self.client.request(method, BASE + path, headers=headers, **kwargs)

    async def create(self, who: str = "mgr", **body: Any) -> dict[str, Any]:
        payload = {"name": "planning sync", "permissions": ["agents:read", "messages:create"]}
        response = await self.call(who, "POST", json={**payload, **body})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def works(self, token: str) -> bool:
        try:
            return await self.keys.authenticate({"x-api-key": token}) is not None
        except AuthenticationError:
            return False


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    database = tmp_path / "gateway.db"
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    await create_schema(engine)
    sessions = session_factory(engine)
    settings = GatewaySettings()
    clock, audit, changed = FakeClock(), ListSink(), []
    keys = ApiKeyAuthenticator(sessions, settings, clock)

    def on_change(key_id: str) -> None:
        changed.append(key_id)
        keys.invalidate(key_id)

    app = admin_app(HeaderAuthenticator(), sessions, settings, audit, clock, on_change)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Admin(client, keys, audit, clock, changed, engine, database)
    await engine.dispose()


async def test_created_key_is_shown_once_and_works(admin: Admin) -> None:
    """The create answer carries the key (not cacheable); the key then authenticates."""
    response = await admin.call(
        "mgr", "POST", json={"name": "sync", "permissions": ["agents:read"]}
    )
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    parsed = parse_key(body["key"])
    assert parsed is not None
    assert parsed.key_id == body["id"]
    assert (body["owner_sub"], body["owner_name"], body["status"]) == (
        "mgr-1",
        "Mia Manager",
        "active",
    )
    assert (body["roles"], body["permissions"]) == (["service"], ["agents:read"])
    identity = await admin.keys.authenticate({"x-api-key": body["key"]})
    assert identity is not None
    assert identity.scopes == frozenset({"agents:read"})
    final = Policy.load().permissions_for(identity.roles) & identity.scopes
    assert final == {"agents:read"}


async def test_listing_never_shows_secrets_or_hashes(admin: Admin) -> None:
    """GET lists keys without the key, its secret or its hash."""
    created = await admin.create()
    response = await admin.call("mgr", "GET")
    assert response.status_code == 200
    (item,) = response.json()["items"]
    assert item["id"] == created["id"]
    assert "key" not in item
    assert "secret_hash" not in item
    assert created["key"].split("_")[2] not in response.text
    single = await admin.call("mgr", "GET", f"/{created['id']}")
    assert single.json() == item


async def test_list_filters_by_owner(admin: Admin) -> None:
    """?owner= keeps one owner's keys."""
    await admin.create("mgr")
    await admin.create("admin")
    response = await admin.call("mgr", "GET", params={"owner": "adm-1"})
    assert [k["owner_sub"] for k in response.json()["items"]] == ["adm-1"]


async def test_creation_is_audited_without_key_material(admin: Admin) -> None:
    """api_key.created names the actor and the key id, never the key."""
    created = await admin.create()
    (event,) = admin.audit.of("api_key.created")
    assert (event.actor, event.target, event.outcome) == (
        "mgr-1",
        f"apikey:{created['id']}",
        "success",
    )
    assert event.details["permissions"] == ["agents:read", "messages:create"]
    assert created["key"] not in str(event.to_json())
    assert created["key"].split("_")[2] not in str(event.to_json())
    assert event.request_id


async def test_permissions_must_be_held_by_the_creator(admin: Admin) -> None:
    """A manager cannot issue a key with a permission only admins hold."""
    response = await admin.call(
        "mgr", "POST", json={"name": "x", "permissions": ["agents:read", "users:manage:privileged"]}
    )
    assert response.status_code == 403
    assert response.json()["code"] == "api_key_permission_not_held"
    assert admin.audit.of("api_key.created") == []


async def test_only_admins_give_roles_beyond_service(admin: Admin) -> None:
    """Roles other than service need an admin; an admin may grant them."""
    body = {"name": "x", "permissions": ["agents:read"], "roles": ["manager"]}
    denied = await admin.call("mgr", "POST", json=body)
    assert denied.status_code == 403
    assert denied.json()["code"] == "api_key_role_not_allowed"
    allowed = await admin.call("admin", "POST", json=body)
    assert allowed.status_code == 201
    assert allowed.json()["roles"] == ["manager"]


async def test_callers_without_manage_permission_are_refused(admin: Admin) -> None:
    """An engineer gets 403 on every route, an anonymous caller 401."""
    created = await admin.create()
    for method, path in [
        ("GET", ""),
        ("POST", ""),
        ("GET", f"/{created['id']}"),
        ("POST", f"/{created['id']}/rotate"),
        ("POST", f"/{created['id']}/revoke"),
    ]:
        kwargs = (
            {"json": {"name": "x", "permissions": ["agents:read"]}}
            if path == "" and method == "POST"
            else {}
        )
        assert (await admin.call("eng", method, path, **kwargs)).status_code == 403
    assert (await admin.call(None, "GET")).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "permissions": ["agents:read"], "expires_in_days": 366},
        {"name": "x", "permissions": ["agents:read"], "expires_in_days": 0},
        {"name": "", "permissions": ["agents:read"]},
        {"name": "x", "permissions": []},
        {"name": "x", "permissions": ["agents:read"], "secret": "mine"},
    ],
)
async def test_invalid_create_bodies_are_422(admin: Admin, body: dict[str, Any]) -> None:
    """Lifetimes over a year, empty names or permissions and unknown fields are refused."""
    response = await admin.call("mgr", "POST", json=body)
    assert response.status_code == 422


async def test_key_expires_after_its_lifetime(admin: Admin) -> None:
    """A key made for 1 day stops working a day later."""
    created = await admin.create(expires_in_days=1)
    assert await admin.works(created["key"])
    admin.clock.advance(86400)
    assert not await admin.works(created["key"])


async def test_rotation_keeps_the_old_key_for_the_grace_period(admin: Admin) -> None:
    """After rotation both keys work; at the end of 24 h only the new one does."""
    old = await admin.create()
    response = await admin.call("mgr", "POST", f"/{old['id']}/rotate")
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    new = response.json()
    assert new["rotated_from"] == old["id"]
    assert (new["name"], new["permissions"], new["roles"]) == (
        old["name"],
        old["permissions"],
        old["roles"],
    )
    assert admin.changed == [old["id"]]
    listed = {k["id"]: k for k in (await admin.call("mgr", "GET")).json()["items"]}
    assert listed[old["id"]]["replaced_by"] == new["id"]
    admin.clock.advance(24 * 3600 - 1)
    assert await admin.works(old["key"])
    assert await admin.works(new["key"])
    admin.clock.advance(1)
    assert not await admin.works(old["key"])
    assert await admin.works(new["key"])
    (event,) = admin.audit.of("api_key.rotated")
    assert event.details["new_id"] == new["id"]


async def test_rotation_with_zero_grace_stops_the_old_key_at_once(admin: Admin) -> None:
    """grace_hours=0 retires the old key immediately, even though it was cached."""
    old = await admin.create()
    assert await admin.works(old["key"])
    response = await admin.call("mgr", "POST", f"/{old['id']}/rotate", json={"grace_hours": 0})
    assert response.status_code == 201
    assert not await admin.works(old["key"])


async def test_a_key_is_rotated_only_once(admin: Admin) -> None:
    """Rotating the already replaced key (or a revoked one) is a conflict."""
    old = await admin.create()
    assert (await admin.call("mgr", "POST", f"/{old['id']}/rotate")).status_code == 201
    assert (await admin.call("mgr", "POST", f"/{old['id']}/rotate")).status_code == 409
    other = await admin.create()
    await admin.call("mgr", "POST", f"/{other['id']}/revoke")
    assert (await admin.call("mgr", "POST", f"/{other['id']}/rotate")).status_code == 409


async def test_rotation_needs_the_rights_to_create_the_key(admin: Admin) -> None:
    """A manager cannot rotate (and so obtain) a key carrying roles only an admin may grant."""
    body = {"name": "ops", "permissions": ["agents:read"], "roles": ["manager"]}
    created = (await admin.call("admin", "POST", json=body)).json()
    response = await admin.call("mgr", "POST", f"/{created['id']}/rotate")
    assert response.status_code == 403


async def test_revocation_is_immediate_here_and_idempotent(admin: Admin) -> None:
    """A revoked key stops at once on this replica; revoking again changes nothing."""
    created = await admin.create()
    assert await admin.works(created["key"])
    response = await admin.call("mgr", "POST", f"/{created['id']}/revoke")
    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert not await admin.works(created["key"])
    again = await admin.call("mgr", "POST", f"/{created['id']}/revoke")
    assert again.json()["revoked_at"] == response.json()["revoked_at"]
    assert len(admin.audit.of("api_key.revoked")) == 1


async def test_delete_revokes(admin: Admin) -> None:
    """DELETE answers 204 and the key is revoked, still listed for the audit trail."""
    created = await admin.create()
    response = await admin.call("mgr", "DELETE", f"/{created['id']}")
    assert response.status_code == 204
    assert not await admin.works(created["key"])
    shown = await admin.call("mgr", "GET", f"/{created['id']}")
    assert shown.json()["status"] == "revoked"


async def test_unknown_and_malformed_ids(admin: Admin) -> None:
    """An unknown id is 404; a path that cannot be a key id is 422."""
    unknown = await admin.call("mgr", "POST", "/AAAAAAAAAAAAAAAA/revoke")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "api_key_not_found"
    assert (await admin.call("mgr", "GET", "/bad_id")).status_code == 422


async def test_every_route_answers_503_while_the_database_is_down(admin: Admin) -> None:
    """Listing, showing, creating, rotating and revoking answer 503 problem+json
    ``dependency_unavailable`` while the database is gone (never 500), audit nothing, and work
    again once it is back."""
    created = await admin.create()
    audited = len(admin.audit.events)
    body = {"name": "during the outage", "permissions": ["agents:read"]}
    async with admin.database_down():
        answers = [
            await admin.call("mgr", "GET"),
            await admin.call("mgr", "GET", f"/{created['id']}"),
            await admin.call("mgr", "POST", json=body),
            await admin.call("mgr", "POST", f"/{created['id']}/rotate"),
            await admin.call("mgr", "POST", f"/{created['id']}/revoke"),
            await admin.call("mgr", "DELETE", f"/{created['id']}"),
        ]
    for response in answers:
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
        assert response.json()["code"] == "dependency_unavailable"
        assert "sqlite" not in response.text.lower()
    assert len(admin.audit.events) == audited
    assert (await admin.call("mgr", "GET")).status_code == 200
