"""The Keycloak admin client: token caching and error mapping over a scripted transport, then the
real calls against the real Keycloak (realm mro) as the gateway's least-privilege service account.

Also the shared parts of the user-administration tests: a recording audit sink, throwaway
Keycloak users created and deleted by the master admin, and a small app mounting the profile
and user routers behind an identity taken from real access tokens.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakGetError
from pydantic import SecretStr

from devstack.keycloak import client_secret
from devstack.procs import free_port
from gateway import problems
from gateway.audit.events import AuditEvent
from gateway.auth.bearer import BearerAuthenticator
from gateway.auth.jwks import JWKSCache
from gateway.dependencies import get_audit, get_identity, get_revoker, get_settings
from gateway.errors import (
    AuthenticationError,
    BadRequest,
    Conflict,
    DependencyUnavailable,
    NotFound,
)
from gateway.identity import Identity
from gateway.idp.admin_client import KeycloakAdminClient
from gateway.idp.admin_errors import KEYCLOAK_MISCONFIGURED, KEYCLOAK_UNAVAILABLE
from gateway.idp.users import NewUser, ProfileEdit
from gateway.policy.policy_file import Policy
from gateway.routes import me as me_routes
from gateway.routes import users as user_routes
from gateway.settings import GatewaySettings
from tests.keycloak_flows import TokenCache, authorization_code_tokens, token_request

# --- shared parts ------------------------------------------------------------------------------


@dataclass
class RecordingAudit:
    """An AuditSink keeping every event in memory."""

    events: list[AuditEvent] = field(default_factory=list)

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)

    def about(self, target: str, action: str | None = None) -> list[AuditEvent]:
        """Events about target (optionally only one action), oldest first."""
        return [e for e in self.events if e.target == target and action in (None, e.action)]


@dataclass
class RecordingRevoker:
    """Records what the routes revoke; ends Keycloak sessions where asked, as Revoker does.

    The revoker itself (Redis, sessions, standings) is tested in tests/security/test_revocation.py.
    """

    admin: KeycloakAdminClient
    revoked: list[tuple[str, str]] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    async def revoke(
        self,
        subject: str,
        reason: str,
        *,
        at: float | None = None,
        actor: str | None = None,
        request_id: str | None = None,
        end_keycloak_sessions: bool = False,
    ) -> None:
        self.revoked.append((subject, reason))
        if end_keycloak_sessions:
            await self.admin.logout(subject)

    async def standing_changed(self, subject: str) -> None:
        self.changed.append(subject)


@dataclass(frozen=True)
class Person:
    """A throwaway Keycloak user with a password (tests only)."""

    id: str
    username: str
    email: str
    password: str


def unique(prefix: str = "t") -> str:
    """A fresh lowercase name for this run."""
    return f"{prefix}{secrets.token_hex(5)}"


class People:
    """Creates throwaway users through the master admin and deletes them at the end."""

    def __init__(self, master: KeycloakAdmin) -> None:
        self.master = master
        self.ids: list[str] = []

    def create(self, *roles: str, last_name: str = "Away", **attributes: str) -> Person:
        """A user who can log in right away, holding roles (besides the realm's defaults)."""
        username = unique()
        email = f"{username}@mro.test"
        password = f"Throwaway-{secrets.token_hex(8)}"
        user_id = self.master.create_user(
            {
                "username": username,
                "email": email,
                "emailVerified": True,
                "firstName": "Throw",
                "lastName": last_name,
                "enabled": True,
                "attributes": {name: [value] for name, value in attributes.items()},
                "credentials": [{"type": "password", "value": password, "temporary": False}],
            }
        )
        self.ids.append(user_id)
        if roles:
            self.master.assign_realm_roles(
                user_id, [self.master.get_realm_role(role) for role in roles]
            )
        return Person(user_id, username, email, password)

    def track(self, user_id: str) -> None:
        """Delete user_id at the end too (users the API created)."""
        self.ids.append(user_id)

    def cleanup(self) -> None:
        for user_id in self.ids:
            try:
                self.master.delete_user(user_id)
            except KeycloakGetError:  # already deleted by the test itself
                continue
        self.ids.clear()


def gateway_settings(keycloak_url: str, credentials: dict[str, Any]) -> GatewaySettings:
    """Settings of a gateway in front of the test Keycloak."""
    return GatewaySettings(
        keycloak_url=keycloak_url,
        client_secret=SecretStr(client_secret("mro-gateway", credentials)),
    )


def person_tokens(keycloak_url: str, person: Person, credentials: dict[str, Any]) -> dict[str, Any]:
    """A real login (auth code + PKCE) of a throwaway user."""
    secret = client_secret("mro-gateway", credentials)
    return authorization_code_tokens(
        keycloak_url, person.username, person.password, client_secret=secret
    )


def refreshed(keycloak_url: str, refresh_token: str, credentials: dict[str, Any]) -> str | None:
    """The rotated refresh token when Keycloak accepts refresh_token (the session is alive)."""
    secret = client_secret("mro-gateway", credentials)
    resp = token_request(
        keycloak_url,
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
        ("mro-gateway", secret),
    )
    return str(resp.json()["refresh_token"]) if resp.status_code == 200 else None


Identify = Callable[[Request], Awaitable[Identity]]


def bearer_identity(settings: GatewaySettings, http: httpx.AsyncClient) -> Identify:
    """The caller from a real access token (verified against Keycloak's keys) with the
    permissions the policy grants its roles, as the gateway's pipeline would attach them."""
    authenticator = BearerAuthenticator(JWKSCache(settings.discovery_url, http), settings)
    policy = Policy.load()

    async def identify(request: Request) -> Identity:
        identity = await authenticator.authenticate(request.headers)
        if identity is None:
            raise AuthenticationError("A bearer token is needed.")
        return identity.with_permissions(policy.permissions_for(identity.roles))

    return identify


def build_app(
    settings: GatewaySettings,
    admin: KeycloakAdminClient,
    audit: RecordingAudit,
    identify: Identify,
    *,
    scan_limit: int = user_routes.DEFAULT_SCAN_LIMIT,
) -> FastAPI:
    """The profile and user routers with the gateway's problem handlers."""
    app = FastAPI()
    problems.install(app)
    app.state.keycloak_admin = admin
    app.state.revoker = revoker = RecordingRevoker(admin)
    app.dependency_overrides[get_revoker] = lambda: revoker
    app.include_router(me_routes.create_router())
    app.include_router(user_routes.create_router(scan_limit=scan_limit))
    app.dependency_overrides[get_identity] = identify
    app.dependency_overrides[get_audit] = lambda: audit
    app.dependency_overrides[get_settings] = lambda: settings
    return app


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def dead_keycloak(settings: GatewaySettings) -> KeycloakAdminClient:
    """An admin client whose Keycloak is down (nothing listens on its port)."""
    down = settings.model_copy(update={"keycloak_url": f"http://127.0.0.1:{free_port()}"})
    return KeycloakAdminClient.from_settings(down)


@dataclass
class Api:
    """The test app over ASGI, its audit sink, and ways to call it as real users."""

    client: httpx.AsyncClient
    audit: RecordingAudit
    people: People
    master: KeycloakAdmin
    settings: GatewaySettings
    keycloak_url: str
    credentials: dict[str, Any]
    dev_tokens: Callable[[str], dict[str, Any]]
    identify: Identify
    revoker: RecordingRevoker
    logins: TokenCache = field(default_factory=TokenCache)

    def tokens(self, who: str | Person) -> dict[str, Any]:
        """Tokens of a dev user (by username) or a throwaway person (cached until expiry)."""
        if isinstance(who, str):
            return self.dev_tokens(who)
        return self.logins.get(
            who.id, lambda: person_tokens(self.keycloak_url, who, self.credentials)
        )

    async def call(
        self, who: str | Person, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        return await self.client.request(method, path, headers=bearer(self.tokens(who)), **kwargs)

    async def identity(self, who: str | Person) -> Identity:
        """The Identity the app derives from who's access token."""
        headers = bearer(self.tokens(who))
        raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        return await self.identify(Request({"type": "http", "headers": raw}))

    def live_session(self, who: Person) -> str:
        """A fresh login of who, proven alive by one refresh; its current refresh token."""
        tokens = person_tokens(self.keycloak_url, who, self.credentials)
        rotated = self.refresh(tokens["refresh_token"])
        assert rotated is not None, "a fresh session did not refresh"
        return rotated

    def refresh(self, refresh_token: str) -> str | None:
        """The next refresh token, or None when Keycloak refuses (the session has ended)."""
        return refreshed(self.keycloak_url, refresh_token, self.credentials)


@asynccontextmanager
async def serve_api(
    keycloak_url: str,
    credentials: dict[str, Any],
    master: KeycloakAdmin,
    dev_tokens: Callable[[str], dict[str, Any]],
    *,
    scan_limit: int = user_routes.DEFAULT_SCAN_LIMIT,
) -> AsyncIterator[Api]:
    """The profile and user routers against the real Keycloak; throwaway users deleted after."""
    settings = gateway_settings(keycloak_url, credentials)
    audit, people = RecordingAudit(), People(master)
    try:
        async with (
            httpx.AsyncClient(trust_env=False) as http,
            KeycloakAdminClient.from_settings(settings) as admin,
        ):
            identify = bearer_identity(settings, http)
            app = build_app(settings, admin, audit, identify, scan_limit=scan_limit)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
                yield Api(
                    client,
                    audit,
                    people,
                    master,
                    settings,
                    keycloak_url,
                    credentials,
                    dev_tokens,
                    identify,
                    app.state.revoker,
                )
    finally:
        people.cleanup()


def fixed_caller_client(
    settings: GatewaySettings, admin: KeycloakAdminClient, caller: Identity
) -> httpx.AsyncClient:
    """A client of the test app where every request comes from caller."""

    async def identify(request: Request) -> Identity:
        return caller

    app = build_app(settings, admin, RecordingAudit(), identify)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test")


# --- token cache and errors over a scripted transport ---------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ScriptedKeycloak:
    """A transport answering token requests and admin calls from a script, counting both."""

    admin_answers: list[httpx.Response] = field(default_factory=list)
    token_answer: httpx.Response | None = None
    token_requests: int = 0
    seen_tokens: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/protocol/openid-connect/token"):
            self.token_requests += 1
            if self.token_answer is not None:
                return self.token_answer
            token = f"token-{self.token_requests}"
            return httpx.Response(200, json={"access_token": token, "expires_in": 300})
        self.seen_tokens.append(request.headers["authorization"].removeprefix("Bearer "))
        if self.admin_answers:
            return self.admin_answers.pop(0)
        return httpx.Response(200, json=7)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedKeycloak, Clock, KeycloakAdminClient]]:
    keycloak, clock = ScriptedKeycloak(), Clock()
    http = httpx.AsyncClient(transport=httpx.MockTransport(keycloak))
    client = KeycloakAdminClient(
        http,
        base_url="http://keycloak.test",
        realm="mro",
        client_id="mro-gateway",
        client_secret=SecretStr("s3cret"),
        clock=clock,
        owns_http=True,
    )
    yield keycloak, clock, client
    await client.aclose()


async def test_service_token_is_reused_until_shortly_before_it_expires(
    scripted: tuple[ScriptedKeycloak, Clock, KeycloakAdminClient],
) -> None:
    """One client-credentials token serves calls until 30 s before its expiry, then a new one."""
    keycloak, clock, client = scripted
    assert await client.count_users() == 7
    clock.now += 269
    await client.count_users()
    assert keycloak.token_requests == 1
    clock.now += 2
    await client.count_users()
    assert keycloak.token_requests == 2
    assert keycloak.seen_tokens == ["token-1", "token-1", "token-2"]


async def test_a_rejected_token_is_dropped_and_the_call_retried_once(
    scripted: tuple[ScriptedKeycloak, Clock, KeycloakAdminClient],
) -> None:
    """A 401 from the admin API fetches a fresh token and repeats the call once."""
    keycloak, _, client = scripted
    keycloak.admin_answers = [httpx.Response(401), httpx.Response(200, json=3)]
    assert await client.count_users() == 3
    assert keycloak.seen_tokens == ["token-1", "token-2"]
    keycloak.admin_answers = [httpx.Response(401), httpx.Response(401)]
    with pytest.raises(DependencyUnavailable) as caught:
        await client.count_users()
    assert caught.value.code == KEYCLOAK_MISCONFIGURED


@pytest.mark.parametrize(
    ("answer", "error", "code"),
    [
        (httpx.Response(404, json={"error": "User not found"}), NotFound, "user_not_found"),
        (
            httpx.Response(409, json={"errorMessage": "User exists with same email"}),
            Conflict,
            "user_exists",
        ),
        (
            httpx.Response(500, text="java.lang.NullPointerException at ..."),
            DependencyUnavailable,
            KEYCLOAK_UNAVAILABLE,
        ),
        (
            httpx.Response(403, json={"error": "HTTP 403 Forbidden"}),
            DependencyUnavailable,
            KEYCLOAK_MISCONFIGURED,
        ),
        (
            httpx.Response(200, text="<html>not json</html>"),
            DependencyUnavailable,
            KEYCLOAK_UNAVAILABLE,
        ),
    ],
)
async def test_keycloak_answers_become_gateway_errors(
    scripted: tuple[ScriptedKeycloak, Clock, KeycloakAdminClient],
    answer: httpx.Response,
    error: type[Exception],
    code: str,
) -> None:
    """Each failed admin call raises the gateway error for it, without Keycloak's text."""
    keycloak, _, client = scripted
    keycloak.admin_answers = [answer]
    with pytest.raises(error) as caught:
        await client.get_user("0f3c2a9e-1111-2222-3333-444455556666")
    assert getattr(caught.value, "code", None) == code
    assert "java" not in str(caught.value)
    assert "HTTP 403" not in str(caught.value)


async def test_profile_refusals_name_the_field_but_not_the_value(
    scripted: tuple[ScriptedKeycloak, Clock, KeycloakAdminClient],
) -> None:
    """A user-profile 400 becomes keycloak_rejected naming the attribute, never echoing input."""
    keycloak, _, client = scripted
    refusal = {"field": "base_station", "errorMessage": "bad", "params": ["<script>"]}
    keycloak.admin_answers = [httpx.Response(400, json=refusal)]
    new = NewUser(username="x1", email="x1@mro.test", first_name="X", last_name="Y")
    with pytest.raises(BadRequest) as caught:
        await client.create_user(new)
    assert caught.value.code == "keycloak_rejected"
    assert "base_station" in caught.value.detail
    assert "<script>" not in caught.value.detail


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, KEYCLOAK_MISCONFIGURED),
        (400, KEYCLOAK_MISCONFIGURED),
        (404, KEYCLOAK_MISCONFIGURED),
        (503, KEYCLOAK_UNAVAILABLE),
    ],
)
async def test_token_endpoint_refusals_are_the_gateways_problem(
    scripted: tuple[ScriptedKeycloak, Clock, KeycloakAdminClient], status: int, code: str
) -> None:
    """A refused client-credentials grant is a misconfiguration (503), an outage stays one."""
    keycloak, _, client = scripted
    keycloak.token_answer = httpx.Response(status, json={"error": "unauthorized_client"})
    with pytest.raises(DependencyUnavailable) as caught:
        await client.count_users()
    assert caught.value.code == code
    assert keycloak.seen_tokens == []


async def test_without_a_client_secret_nothing_is_sent() -> None:
    """An unconfigured client secret fails before any request leaves the gateway."""
    keycloak = ScriptedKeycloak()
    settings = GatewaySettings(keycloak_url="http://keycloak.test")
    http = httpx.AsyncClient(transport=httpx.MockTransport(keycloak))
    client = KeycloakAdminClient.from_settings(settings, http)
    with pytest.raises(DependencyUnavailable) as caught:
        await client.count_users()
    assert caught.value.code == KEYCLOAK_MISCONFIGURED
    assert keycloak.token_requests == 0
    await client.aclose()
    assert not http.is_closed  # not its own client: left open
    await http.aclose()


async def test_a_user_id_that_is_not_one_path_segment_is_never_sent(
    scripted: tuple[ScriptedKeycloak, Clock, KeycloakAdminClient],
) -> None:
    """Ids with slashes or dots are refused as unknown users before any call."""
    keycloak, _, client = scripted
    for bad in ("../roles", "a/b", ""):
        with pytest.raises(NotFound):
            await client.get_user(bad)
    assert keycloak.seen_tokens == []


async def test_concurrent_edits_of_one_user_keep_each_others_attributes() -> None:
    """Two attribute edits of one user at once are each a read then a write, one after the
    other, so the second write carries the first one's attribute."""
    stored: dict[str, Any] = {
        "id": "u1",
        "username": "tech1",
        "email": "tech1@mro.test",
        "firstName": "Ada",
        "lastName": "Lee",
        "attributes": {"base_station": ["LHR"]},
    }
    calls: list[str] = []

    async def keycloak(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        calls.append(request.method)
        await asyncio.sleep(0.01)  # long enough for the other edit to start meanwhile
        if request.method == "GET":
            return httpx.Response(200, json=stored)
        stored.update(json.loads(request.content))
        return httpx.Response(204)

    http = httpx.AsyncClient(transport=httpx.MockTransport(keycloak))
    settings = GatewaySettings(keycloak_url="http://keycloak.test", client_secret=SecretStr("s"))
    async with KeycloakAdminClient.from_settings(settings, http) as client:
        await asyncio.gather(
            client.edit_profile("u1", ProfileEdit(attributes={"department": "Stores"})),
            client.edit_profile("u1", ProfileEdit(attributes={"licence_number": "UK.66.1"})),
        )
    await http.aclose()
    assert calls == ["GET", "PUT", "GET", "PUT"]
    assert stored["attributes"] == {
        "base_station": ["LHR"],
        "department": ["Stores"],
        "licence_number": ["UK.66.1"],
    }


# --- against the real Keycloak ---------------------------------------------------------------


@pytest.fixture(scope="module")
def people(keycloak_admin: KeycloakAdmin) -> Iterator[People]:
    made = People(keycloak_admin)
    yield made
    made.cleanup()


@pytest.fixture
async def admin(
    keycloak_url: str, dev_credentials: dict[str, Any]
) -> AsyncIterator[KeycloakAdminClient]:
    client = KeycloakAdminClient.from_settings(gateway_settings(keycloak_url, dev_credentials))
    yield client
    await client.aclose()


@pytest.mark.keycloak
async def test_users_are_created_read_and_updated_without_losing_fields(
    admin: KeycloakAdminClient, people: People
) -> None:
    """A created user reads back; an update of one field keeps email and attributes."""
    username = unique()
    new = NewUser(
        username=username,
        email=f"{username}@mro.test",
        first_name="Nia",
        last_name="New",
        attributes={"base_station": "LHR", "employee_id": "E-9001"},
        required_actions=("VERIFY_EMAIL", "UPDATE_PASSWORD"),
    )
    user_id = await admin.create_user(new)
    people.track(user_id)
    user = await admin.get_user(user_id)
    assert (user.username, user.email, user.attribute("employee_id")) == (
        username,
        f"{username}@mro.test",
        "E-9001",
    )
    assert set(user.required_actions) == {"VERIFY_EMAIL", "UPDATE_PASSWORD"}
    await admin.edit_profile(user_id, ProfileEdit(first_name="Nina"))
    again = await admin.get_user(user_id)
    assert again.first_name == "Nina"
    assert again.email == user.email
    assert again.attributes == user.attributes
    with pytest.raises(Conflict):
        await admin.create_user(new)


@pytest.mark.keycloak
@pytest.mark.parametrize(
    "edit",
    [
        ProfileEdit(first_name="Nina"),
        ProfileEdit(first_name="Nina", attributes={"department": "Hangar 2", "base_station": None}),
    ],
    ids=["names", "attributes"],
)
async def test_an_edit_never_undoes_a_standing_change_made_after_the_read(
    admin: KeycloakAdminClient, people: People, edit: ProfileEdit
) -> None:
    """A disable, required action and unverified email set in Keycloak after the gateway read
    the user survive its edit; fields the edit does not name keep their stored values."""
    person = people.create(base_station="LHR", department="Stores", employee_id="E-9002")
    stale = await admin.get_user(person.id)
    assert stale.enabled
    people.master.update_user(
        person.id,
        {"enabled": False, "emailVerified": False, "requiredActions": ["CONFIGURE_TOTP"]},
    )
    await admin.edit_profile(person.id, edit)
    stored = await admin.get_user(person.id)
    assert (stored.enabled, stored.email_verified, stored.required_actions) == (
        False,
        False,
        ["CONFIGURE_TOTP"],
    )
    assert (stored.first_name, stored.last_name, stored.email) == ("Nina", "Away", person.email)
    expected = dict(stale.attributes)
    for name, value in edit.attributes.items():
        if value is None:
            expected.pop(name)
        else:
            expected[name] = [value]
    assert stored.attributes == expected


@pytest.mark.keycloak
async def test_realm_roles_are_granted_and_revoked_with_the_service_account(
    admin: KeycloakAdminClient, people: People
) -> None:
    """manage-users suffices to map realm roles; effective roles expand composites."""
    person = people.create()
    await admin.grant_realm_role(person.id, "manager")
    assert {"manager", "engineer", "technician"} <= await admin.effective_realm_roles(person.id)
    await admin.grant_realm_role(person.id, "manager")  # mapped already: no error
    assert await admin.revoke_realm_role(person.id, "manager") is True
    assert await admin.revoke_realm_role(person.id, "manager") is False
    assert "manager" not in await admin.effective_realm_roles(person.id)
    with pytest.raises(NotFound) as caught:
        await admin.grant_realm_role(person.id, "no-such-role")
    assert caught.value.code == "role_not_found"


@pytest.mark.keycloak
async def test_search_count_and_enabled_filter(admin: KeycloakAdminClient, people: People) -> None:
    """Search by name prefix, count and the enabled filter agree with each other."""
    one, two = people.create(), people.create()
    await admin.set_enabled(two.id, False)
    found = {u.username for u in await admin.find_users(search=one.username)}
    assert found == {one.username}
    assert await admin.count_users(search=two.username, enabled=False) == 1
    assert await admin.count_users(search=two.username, enabled=True) == 0
    assert (await admin.get_user(two.id)).first_name == "Throw"  # disabling kept the profile


@pytest.mark.keycloak
async def test_logout_ends_the_users_sessions(
    admin: KeycloakAdminClient,
    people: People,
    keycloak_url: str,
    dev_credentials: dict[str, Any],
) -> None:
    """After logout the user's refresh token no longer works at Keycloak."""
    person = people.create()
    tokens = person_tokens(keycloak_url, person, dev_credentials)
    alive = refreshed(keycloak_url, tokens["refresh_token"], dev_credentials)
    assert alive is not None
    await admin.logout(person.id)
    assert refreshed(keycloak_url, alive, dev_credentials) is None


@pytest.mark.keycloak
async def test_unknown_users_are_not_found(admin: KeycloakAdminClient) -> None:
    """A well-formed id Keycloak does not know raises NotFound (user_not_found)."""
    with pytest.raises(NotFound) as caught:
        await admin.get_user("00000000-0000-0000-0000-000000000000")
    assert caught.value.code == "user_not_found"


async def test_keycloak_down_is_dependency_unavailable() -> None:
    """Nothing listening where Keycloak should be raises DependencyUnavailable."""
    client = dead_keycloak(GatewaySettings(client_secret=SecretStr("s3cret")))
    with pytest.raises(DependencyUnavailable) as caught:
        await client.count_users()
    assert caught.value.code == KEYCLOAK_UNAVAILABLE
    assert "Errno" not in caught.value.detail
    await client.aclose()
