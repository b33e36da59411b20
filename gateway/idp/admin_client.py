"""A small typed async client for the few Keycloak admin REST calls the gateway makes.

The gateway reads and edits users of its realm as its own client's service account
(client-credentials grant of ``mro-gateway``). That account holds exactly the realm-management
roles ``view-users``, ``query-users`` and ``manage-users``: enough to read, create, update,
disable and log out users and to map realm roles onto them. It cannot read the realm's role list
(``view-realm``), so role ids are taken from the user's own mappings (``…/available`` to grant,
the direct mappings to revoke) instead of ``/roles``.

Why not python-keycloak: its async methods return untyped ``dict``/``Any``, raise its own
exception tree carrying Keycloak's raw answer, and manage tokens with logic we cannot share with
the gateway's pooled ``httpx.AsyncClient`` or drive with an injected clock. We need about a dozen
endpoints; plain httpx with pydantic models keeps them typed and testable with a transport.

The service token is cached until ``TOKEN_MARGIN_SECONDS`` before it expires; concurrent callers
share one refetch. A 401 from the admin API drops the token and retries once.

Every failure is a gateway error, never an httpx one (``gateway.idp.admin_errors``); the
representations read and written are in ``gateway.idp.users``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Annotated, Any, Final, Self

import httpx
from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter

from gateway.auth.standing import GONE, Standing
from gateway.errors import NotFound
from gateway.idp.admin_errors import KEYCLOAK_MISCONFIGURED, check, parse, unavailable
from gateway.idp.users import (
    AdminEvent,
    KeycloakUser,
    NewUser,
    ProfileEdit,
    RoleRef,
)
from gateway.settings import GatewaySettings

__all__ = ["KeycloakAdminClient", "KeycloakAdminDep", "get_keycloak_admin"]

logger = logging.getLogger(__name__)

TOKEN_MARGIN_SECONDS: Final = 30.0
DEFAULT_TIMEOUT_SECONDS: Final = 5.0
_USER_ID: Final = re.compile(r"^[0-9A-Za-z_:-]{1,100}$")


class _Token(BaseModel):
    model_config = ConfigDict(extra="ignore")

    access_token: str = Field(min_length=1)
    expires_in: int = Field(gt=0)


_USER: Final = TypeAdapter(KeycloakUser)
_USERS: Final = TypeAdapter(list[KeycloakUser])
_ROLES: Final = TypeAdapter(list[RoleRef])
_COUNT: Final = TypeAdapter(int)
_EVENTS: Final = TypeAdapter(list[AdminEvent])
_TOKEN: Final = TypeAdapter(_Token)


class KeycloakAdminClient:
    """Keycloak's admin REST API for one realm, as the gateway's service account."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        realm: str,
        client_id: str,
        client_secret: SecretStr | None,
        clock: Callable[[], float] = time.monotonic,
        owns_http: bool = False,
    ) -> None:
        base = base_url.rstrip("/")
        self._http = http
        self._owns_http = owns_http
        self._admin = f"{base}/admin/realms/{realm}"
        self._token_url = f"{base}/realms/{realm}/protocol/openid-connect/token"
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = asyncio.Lock()
        # user id -> (lock, edits holding or awaiting it): one profile edit of a user at a time.
        self._edits: dict[str, tuple[asyncio.Lock, int]] = {}

    @classmethod
    def from_settings(
        cls,
        settings: GatewaySettings,
        http: httpx.AsyncClient | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> KeycloakAdminClient:
        """A client for the gateway's realm; it closes http on ``aclose`` only if it made it."""
        own = http is None
        client = http or httpx.AsyncClient(timeout=DEFAULT_TIMEOUT_SECONDS, trust_env=False)
        return cls(
            client,
            base_url=settings.keycloak_url,
            realm=settings.keycloak_realm,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            clock=clock,
            owns_http=own,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Forget the service token; close the HTTP client when this object created it."""
        self._token = None
        if self._owns_http:
            await self._http.aclose()

    # --- users ---------------------------------------------------------------------------

    async def get_user(self, user_id: str) -> KeycloakUser:
        """One user. Raises NotFound (user_not_found)."""
        response = await self._call("GET", f"/users/{_uid(user_id)}", {"userProfileMetadata": "0"})
        return parse(response, _USER)

    async def find_users(
        self,
        *,
        search: str | None = None,
        enabled: bool | None = None,
        first: int = 0,
        max_results: int = 50,
    ) -> list[KeycloakUser]:
        """Users whose username, email or names match search (Keycloak's prefix search)."""
        params = _filters(search, enabled) | {
            "first": str(first),
            "max": str(max_results),
            "briefRepresentation": "false",
        }
        return parse(await self._call("GET", "/users", params), _USERS)

    async def count_users(self, *, search: str | None = None, enabled: bool | None = None) -> int:
        """How many users find_users would return without paging."""
        return parse(await self._call("GET", "/users/count", _filters(search, enabled)), _COUNT)

    async def create_user(self, user: NewUser) -> str:
        """Create user; the new id. Raises Conflict (user_exists), BadRequest."""
        response = await self._call("POST", "/users", json=user.representation())
        location: str = response.headers.get("location", "")
        user_id = location.rstrip("/").rsplit("/", 1)[-1]
        if not _USER_ID.match(user_id):
            raise unavailable("The identity provider did not say which user it created.")
        return user_id

    async def edit_profile(self, user_id: str, edit: ProfileEdit) -> None:
        """Write edit's names and attributes and nothing else. Raises NotFound, BadRequest.

        No standing field is ever sent, so a disable, an email verification or a required action
        set meanwhile (in the console, by another manager) is never undone, and roles are not
        part of a user's PUT at all. Names alone are a PUT of the names alone. An attribute change
        has to send the whole attributes map with the email and names (``ProfileEdit``), so the
        user is read again right before the PUT, and this client runs one edit of a user at a
        time, so its own concurrent edits neither drop each other's attributes nor overlap in
        Keycloak. What is left: a change to another attribute, the email or a name made elsewhere
        (the console, another replica) in the milliseconds between that read and the PUT is
        overwritten; Keycloak's admin API has no conditional update of a user to close that gap.
        And Keycloak itself writes a user's whole row: two admin writes to one user that overlap
        inside Keycloak can lose the first one's fields, ``enabled`` included (measured on
        Keycloak 26 with a name change racing a disable), whatever each of them sends.
        """
        async with self._one_edit_at_a_time(user_id):
            current = await self.get_user(user_id) if edit.needs_current else None
            await self._call("PUT", f"/users/{_uid(user_id)}", json=edit.representation(current))

    @contextlib.asynccontextmanager
    async def _one_edit_at_a_time(self, user_id: str) -> AsyncIterator[None]:
        lock, users = self._edits.get(user_id, (asyncio.Lock(), 0))
        self._edits[user_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._edits[user_id]
            if users == 1:
                del self._edits[user_id]
            else:
                self._edits[user_id] = (lock, users - 1)

    async def set_enabled(self, user_id: str, enabled: bool) -> None:
        """Enable or disable a user (a PUT without attributes leaves the profile alone)."""
        await self._call("PUT", f"/users/{_uid(user_id)}", json={"enabled": enabled})

    async def standing(self, user_id: str) -> Standing:
        """Whether the account exists and is enabled, and its effective realm roles.

        Raises DependencyUnavailable when Keycloak cannot tell.
        """
        try:
            user = await self.get_user(user_id)
            roles = await self.effective_realm_roles(user_id) if user.enabled else frozenset()
        except NotFound:
            return GONE
        return Standing(exists=True, enabled=user.enabled, roles=roles)

    async def admin_events(self, *, first: int, max_results: int) -> list[AdminEvent]:
        """A page of the realm's admin events, newest first (needs ``view-events``)."""
        params = {"first": str(first), "max": str(max_results)}
        return parse(await self._call("GET", "/admin-events", params), _EVENTS)

    async def own_user_id(self) -> str | None:
        """The id of the gateway's service account (the ``sub`` of its own token)."""
        token = await self._service_token()
        try:
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return None
        sub = claims.get("sub") if isinstance(claims, dict) else None
        return sub if isinstance(sub, str) else None

    async def logout(self, user_id: str) -> None:
        """End all the user's sessions; Keycloak then sends back-channel logouts."""
        await self._call("POST", f"/users/{_uid(user_id)}/logout")

    async def send_actions_email(self, user_id: str, actions: Sequence[str]) -> None:
        """Have Keycloak mail the user links to perform actions (e.g. VERIFY_EMAIL)."""
        await self._call("PUT", f"/users/{_uid(user_id)}/execute-actions-email", json=list(actions))

    # --- realm roles ---------------------------------------------------------------------

    async def effective_realm_roles(self, user_id: str) -> frozenset[str]:
        """Names of the user's realm roles, composites expanded. Raises NotFound."""
        path = f"/users/{_uid(user_id)}/role-mappings/realm/composite"
        return frozenset(role.name for role in parse(await self._call("GET", path), _ROLES))

    async def direct_realm_roles(self, user_id: str) -> list[RoleRef]:
        """The realm roles mapped onto the user itself. Raises NotFound."""
        path = f"/users/{_uid(user_id)}/role-mappings/realm"
        return parse(await self._call("GET", path), _ROLES)

    async def grant_realm_role(self, user_id: str, role: str) -> None:
        """Map role onto the user (no-op when mapped already). Raises NotFound."""
        base = f"/users/{_uid(user_id)}/role-mappings/realm"
        available = parse(await self._call("GET", f"{base}/available"), _ROLES)
        match = next((r for r in available if r.name == role), None)
        if match is None:
            if any(r.name == role for r in await self.direct_realm_roles(user_id)):
                return
            raise NotFound(f"No realm role {role!r}.", code="role_not_found")
        await self._call("POST", base, json=[match.model_dump()])

    async def revoke_realm_role(self, user_id: str, role: str) -> bool:
        """Remove a direct mapping of role; False when the user had none. Raises NotFound."""
        direct = next((r for r in await self.direct_realm_roles(user_id) if r.name == role), None)
        if direct is None:
            return False
        path = f"/users/{_uid(user_id)}/role-mappings/realm"
        await self._call("DELETE", path, json=[direct.model_dump()])
        return True

    # --- transport -----------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        json: Any = None,
    ) -> httpx.Response:
        for attempt in (1, 2):
            token = await self._service_token()
            response = await self._send(
                method,
                self._admin + path,
                params=params,
                json=json,
                headers={"Authorization": f"Bearer {token}"},
            )
            if response.status_code == 401 and attempt == 1:
                self._forget(token)
                continue
            check(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise unavailable("The identity provider did not answer in time.") from exc
        except httpx.HTTPError as exc:
            raise unavailable("The identity provider is unreachable.") from exc

    def _forget(self, token: str) -> None:
        if self._token == token:
            self._token = None

    async def _service_token(self) -> str:
        if self._token is not None and self._clock() < self._token_expires:
            return self._token
        async with self._lock:
            if self._token is not None and self._clock() < self._token_expires:
                return self._token
            if self._client_secret is None:
                raise unavailable("User administration is not configured.", KEYCLOAK_MISCONFIGURED)
            started = self._clock()
            response = await self._send(
                "POST",
                self._token_url,
                data={"grant_type": "client_credentials"},
                auth=(self._client_id, self._client_secret.get_secret_value()),
            )
            if response.status_code >= 500:
                raise unavailable("The identity provider failed.")
            if response.status_code != 200:
                # Wrong secret, disabled service account, unknown realm: not the caller's fault.
                logger.warning(
                    "keycloak refused the gateway's client credentials",
                    extra={"status": response.status_code},
                )
                raise unavailable("User administration is not permitted.", KEYCLOAK_MISCONFIGURED)
            token = parse(response, _TOKEN)
            self._token = token.access_token
            self._token_expires = started + max(0.0, token.expires_in - TOKEN_MARGIN_SECONDS)
            return self._token


def _uid(user_id: str) -> str:
    """user_id, checked to be one path segment (routes validate it too)."""
    if not _USER_ID.match(user_id):
        raise NotFound("No such user.", code="user_not_found")
    return user_id


def _filters(search: str | None, enabled: bool | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if search:
        params["search"] = search
    if enabled is not None:
        params["enabled"] = "true" if enabled else "false"
    return params


def get_keycloak_admin(request: Request) -> KeycloakAdminClient:
    """The app's admin client (``app.state.keycloak_admin``). Raises DependencyUnavailable."""
    client = getattr(request.app.state, "keycloak_admin", None)
    if not isinstance(client, KeycloakAdminClient):
        raise unavailable("User administration is not configured.", KEYCLOAK_MISCONFIGURED)
    return client


KeycloakAdminDep = Annotated[KeycloakAdminClient, Depends(get_keycloak_admin)]
