"""``/api/admin/users…``: people's accounts and roles, administered through Keycloak.

Everything here needs ``users:manage``; the policy checks it per route and each handler checks it
again together with the rules that depend on the request:

* ``manager`` and ``admin`` are granted and revoked only with ``users:manage:privileged``, and
  a caller without it cannot act on a user who holds either (403 ``privileged_role`` /
  ``privileged_target``). ``service`` is never handled here (403 ``role_not_manageable``):
  machine clients get it in Keycloak.
* Nobody acts on their own account through this API (403 ``self_modification``): no raising
  one's own roles, no disabling oneself. Service accounts are left alone (403 ``service_account``).
* Removing a role or disabling a user ends all their Keycloak sessions at once; Keycloak then
  sends back-channel logouts to the gateway.
* New users get no password: Keycloak mails them links to verify the address and set one.

Every change is audited with the roles or enabled flag before and after; refused attempts are
audited with outcome ``denied`` and the refusal's code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from gateway.dependencies import Audit, CurrentIdentity
from gateway.errors import BadRequest, Conflict, DependencyUnavailable, NotFound, PermissionDenied
from gateway.identity import Identity
from gateway.keycloak_admin import (
    SERVICE_ACCOUNT_PREFIX,
    KeycloakAdminClient,
    KeycloakAdminDep,
    KeycloakUser,
    NewUser,
)
from gateway.routes_me import (
    MRO_ATTRIBUTES,
    BaseStation,
    Department,
    EmployeeId,
    LicenceNumber,
    MroAttributes,
    PersonName,
    ProfileUpdate,
    apply_update,
    audit_event,
    matching,
    visible_roles,
)

__all__ = ["CreatedUser", "NewUserRequest", "UserOut", "UserPage", "create_router"]

logger = logging.getLogger(__name__)

MANAGE: Final = "users:manage"
PRIVILEGED: Final = "users:manage:privileged"
PRIVILEGED_ROLES: Final = frozenset({"manager", "admin"})
GRANTABLE_ROLES: Final = frozenset({"technician", "engineer", "manager", "admin"})
INITIAL_ACTIONS: Final = ("VERIFY_EMAIL", "UPDATE_PASSWORD")
# With a role filter the users are scanned (the service account cannot list a role's members,
# which needs view-realm); this bounds one request's scan.
DEFAULT_SCAN_LIMIT: Final = 500
SCAN_BATCH: Final = 100
PARALLEL_ROLE_LOOKUPS: Final = 8

UserId = Annotated[str, Path(pattern=r"^[0-9A-Za-z_:-]{1,100}$")]
RoleName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
RoleFilter = Literal["technician", "engineer", "manager", "admin", "service"]


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _not_reserved(value: str) -> str:
    if value.startswith(SERVICE_ACCOUNT_PREFIX):
        raise ValueError("names starting with service-account- are Keycloak's")
    return value


Username = Annotated[
    str,
    BeforeValidator(_lower),
    matching(r"[a-z0-9][a-z0-9._@-]*", "3-64 letters, digits or . _ @ -", 3, 64),
    AfterValidator(_not_reserved),
]
Email = Annotated[
    str,
    BeforeValidator(_lower),
    matching(r"[^@\s<>\"(),;:]+@[a-z0-9-]+(\.[a-z0-9-]+)+", "an email address", 6, 254),
]


class UserOut(BaseModel):
    """A user as administrators see it."""

    id: str
    username: str
    email: str | None
    email_verified: bool
    first_name: str | None
    last_name: str | None
    enabled: bool
    roles: list[str]
    attributes: MroAttributes
    required_actions: list[str]
    created_at: datetime | None

    @classmethod
    def of(cls, user: KeycloakUser, roles: frozenset[str]) -> UserOut:
        created = user.created_timestamp
        return cls(
            id=user.id,
            username=user.username,
            email=user.email,
            email_verified=user.email_verified,
            first_name=user.first_name,
            last_name=user.last_name,
            enabled=user.enabled,
            roles=visible_roles(roles),
            attributes=MroAttributes.of(user),
            required_actions=list(user.required_actions),
            created_at=datetime.fromtimestamp(created / 1000, UTC) if created else None,
        )


class UserPage(BaseModel):
    """One page of users; ``total`` is None when a role-filtered scan hit its bound."""

    items: list[UserOut]
    offset: int
    limit: int
    total: int | None


class NewUserRequest(BaseModel):
    """A person to invite; they set their own password from Keycloak's email."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    email: Email
    first_name: PersonName
    last_name: PersonName
    role: Literal["technician", "engineer"] = "technician"
    employee_id: EmployeeId | None = None
    licence_number: LicenceNumber | None = None
    base_station: BaseStation | None = None
    department: Department | None = None


class UserUpdate(ProfileUpdate):
    """What an administrator may change on someone's profile: theirs plus the employee id."""

    employee_id: EmployeeId | None = None


class CreatedUser(UserOut):
    """The new user; ``invitation_sent`` is False when Keycloak could not send the email."""

    invitation_sent: bool


def _require(caller: Identity) -> None:
    if MANAGE not in caller.permissions:
        raise PermissionDenied("Managing users needs users:manage.")


def _check_role(caller: Identity, role: str) -> None:
    if role == "service":
        raise PermissionDenied(
            "The service role belongs to machine clients and is set in Keycloak.",
            code="role_not_manageable",
        )
    if role not in GRANTABLE_ROLES:
        raise NotFound(f"No role {role!r} is managed here.", code="role_not_found")
    if role in PRIVILEGED_ROLES and PRIVILEGED not in caller.permissions:
        raise PermissionDenied(
            f"Granting or removing {role} needs users:manage:privileged.", code="privileged_role"
        )


def _not_self(caller: Identity, user_id: str) -> None:
    if caller.subject == user_id:
        raise PermissionDenied("You cannot change your own account here.", code="self_modification")


async def _target(
    admin: KeycloakAdminClient, caller: Identity, user_id: str
) -> tuple[KeycloakUser, frozenset[str]]:
    """The user to act on and their effective roles, if caller may act on them."""
    user, roles = await asyncio.gather(
        admin.get_user(user_id), admin.effective_realm_roles(user_id)
    )
    if user.is_service_account:
        raise PermissionDenied("Service accounts are managed in Keycloak.", code="service_account")
    if roles & PRIVILEGED_ROLES and PRIVILEGED not in caller.permissions:
        raise PermissionDenied(
            "Only holders of users:manage:privileged can change a manager or admin.",
            code="privileged_target",
        )
    return user, roles


def _snapshot(user: KeycloakUser, roles: frozenset[str]) -> dict[str, Any]:
    return {"roles": visible_roles(roles), "enabled": user.enabled}


@contextmanager
def denials(
    sink: Audit, request: Request, caller: Identity, action: str, target: str, **details: Any
) -> Iterator[None]:
    """Audit a PermissionDenied raised inside as a denied attempt at action."""
    try:
        yield
    except PermissionDenied as exc:
        event = audit_event(
            request, caller, action, target, details, outcome="denied", reason=exc.code
        )
        sink.emit(event)
        raise


@dataclass(frozen=True, slots=True)
class RoleChange:
    """One grant or revocation of role on user_id: its checks and its audit event."""

    caller: Identity
    admin: KeycloakAdminClient
    sink: Audit
    request: Request
    action: str
    user_id: str
    role: str

    async def target(self) -> tuple[KeycloakUser, frozenset[str]]:
        """The user and their roles before; denied attempts are audited and re-raised."""
        with denials(
            self.sink, self.request, self.caller, self.action, self.user_id, role=self.role
        ):
            _require(self.caller)
            _not_self(self.caller, self.user_id)
            _check_role(self.caller, self.role)
            return await _target(self.admin, self.caller, self.user_id)

    async def done(self, user: KeycloakUser, before: frozenset[str], **extra: Any) -> UserOut:
        """Audit the change with the roles before and after; answer the user as after."""
        after = await self.admin.effective_realm_roles(self.user_id)
        details = {
            "role": self.role,
            "before": _snapshot(user, before),
            "after": _snapshot(user, after),
            **extra,
        }
        self.sink.emit(audit_event(self.request, self.caller, self.action, self.user_id, details))
        return UserOut.of(user, after)


def create_router(*, scan_limit: int = DEFAULT_SCAN_LIMIT) -> APIRouter:
    """The ``/api/admin/users`` router; scan_limit bounds a role-filtered listing."""
    router = APIRouter(prefix="/api/admin/users", tags=["users"])

    async def with_roles(admin: KeycloakAdminClient, users: list[KeycloakUser]) -> list[UserOut]:
        gate = asyncio.Semaphore(PARALLEL_ROLE_LOOKUPS)

        async def one(user: KeycloakUser) -> UserOut:
            async with gate:
                return UserOut.of(user, await admin.effective_realm_roles(user.id))

        return list(await asyncio.gather(*(one(user) for user in users)))

    async def scan(
        admin: KeycloakAdminClient, q: str | None, enabled: bool | None, role: str
    ) -> tuple[list[UserOut], bool]:
        """Every matching user holding role, and whether the scan saw all candidates."""
        found: list[UserOut] = []
        first = 0
        while first < scan_limit:
            size = min(SCAN_BATCH, scan_limit - first)
            batch = await admin.find_users(search=q, enabled=enabled, first=first, max_results=size)
            found += [user for user in await with_roles(admin, batch) if role in user.roles]
            first += len(batch)
            if len(batch) < size:
                return found, True
        return found, False

    @router.get("")
    async def list_users(
        caller: CurrentIdentity,
        admin: KeycloakAdminDep,
        q: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
        role: RoleFilter | None = None,
        enabled: bool | None = None,
        offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> UserPage:
        """Users matching q (username, email, names), holding role, enabled or not."""
        _require(caller)
        if role is None:
            users, total = await asyncio.gather(
                admin.find_users(search=q, enabled=enabled, first=offset, max_results=limit),
                admin.count_users(search=q, enabled=enabled),
            )
            items = await with_roles(admin, users)
            return UserPage(items=items, offset=offset, limit=limit, total=total)
        found, complete = await scan(admin, q, enabled, role)
        return UserPage(
            items=found[offset : offset + limit],
            offset=offset,
            limit=limit,
            total=len(found) if complete else None,
        )

    @router.get("/{user_id}")
    async def show_user(
        caller: CurrentIdentity, admin: KeycloakAdminDep, user_id: UserId
    ) -> UserOut:
        """One user with their effective roles."""
        _require(caller)
        user, roles = await asyncio.gather(
            admin.get_user(user_id), admin.effective_realm_roles(user_id)
        )
        return UserOut.of(user, roles)

    @router.post("", status_code=status.HTTP_201_CREATED)
    async def create_user(
        body: NewUserRequest,
        caller: CurrentIdentity,
        admin: KeycloakAdminDep,
        sink: Audit,
        request: Request,
        response: Response,
    ) -> CreatedUser:
        """Create a technician or engineer; Keycloak mails them the required actions."""
        _require(caller)
        attributes = {n: v for n in MRO_ATTRIBUTES if (v := getattr(body, n)) is not None}
        new = NewUser(
            username=body.username,
            email=body.email,
            first_name=body.first_name,
            last_name=body.last_name,
            attributes=attributes,
            required_actions=INITIAL_ACTIONS,
        )
        user_id = await admin.create_user(new)
        await admin.grant_realm_role(user_id, body.role)
        try:
            await admin.send_actions_email(user_id, INITIAL_ACTIONS)
            sent = True
        except (DependencyUnavailable, BadRequest) as exc:
            logger.warning("invitation email not sent", extra={"code": exc.code})
            sent = False
        user, roles = await asyncio.gather(
            admin.get_user(user_id), admin.effective_realm_roles(user_id)
        )
        details = {
            "username": user.username,
            "role": body.role,
            "before": None,
            "after": _snapshot(user, roles),
            "invitation_sent": sent,
        }
        sink.emit(audit_event(request, caller, "users.created", user_id, details))
        response.headers["Location"] = f"{router.prefix}/{user_id}"
        return CreatedUser(**UserOut.of(user, roles).model_dump(), invitation_sent=sent)

    @router.patch("/{user_id}")
    async def update_user(
        body: UserUpdate,
        caller: CurrentIdentity,
        admin: KeycloakAdminDep,
        sink: Audit,
        request: Request,
        user_id: UserId,
    ) -> UserOut:
        """Change someone's names and MRO attributes (employee id included)."""
        with denials(sink, request, caller, "users.updated", user_id):
            _require(caller)
            _not_self(caller, user_id)
            user, roles = await _target(admin, caller, user_id)
        updated, changes = apply_update(user, body)
        if changes:
            await admin.update_user(updated)
            sink.emit(audit_event(request, caller, "users.updated", user_id, changes))
        return UserOut.of(await admin.get_user(user_id), roles)

    @router.put("/{user_id}/roles/{role}")
    async def grant_role(
        caller: CurrentIdentity,
        admin: KeycloakAdminDep,
        sink: Audit,
        request: Request,
        user_id: UserId,
        role: RoleName,
    ) -> UserOut:
        """Grant a role (idempotent); answers the user with their roles after."""
        change = RoleChange(caller, admin, sink, request, "users.role_granted", user_id, role)
        user, before = await change.target()
        if role in before:
            return UserOut.of(user, before)
        await admin.grant_realm_role(user_id, role)
        return await change.done(user, before)

    @router.delete("/{user_id}/roles/{role}")
    async def revoke_role(
        caller: CurrentIdentity,
        admin: KeycloakAdminDep,
        sink: Audit,
        request: Request,
        user_id: UserId,
        role: RoleName,
    ) -> UserOut:
        """Remove a role and end the user's sessions; answers the user with their roles after."""
        change = RoleChange(caller, admin, sink, request, "users.role_revoked", user_id, role)
        user, before = await change.target()
        if not await admin.revoke_realm_role(user_id, role):
            if role in before:
                raise Conflict(
                    f"{role} comes with another role of this user; revoke that role instead.",
                    code="role_inherited",
                )
            return UserOut.of(user, before)
        await admin.logout(user_id)
        return await change.done(user, before, sessions_ended=True)

    async def set_enabled(
        caller: Identity,
        admin: KeycloakAdminClient,
        sink: Audit,
        request: Request,
        user_id: str,
        enabled: bool,
    ) -> UserOut:
        action = "users.enabled" if enabled else "users.disabled"
        with denials(sink, request, caller, action, user_id):
            _require(caller)
            _not_self(caller, user_id)
            user, roles = await _target(admin, caller, user_id)
        if user.enabled == enabled:
            return UserOut.of(user, roles)
        await admin.set_enabled(user_id, enabled)
        if not enabled:
            await admin.logout(user_id)
        changed = user.model_copy(update={"enabled": enabled})
        details = {
            "before": _snapshot(user, roles),
            "after": _snapshot(changed, roles),
            "sessions_ended": not enabled,
        }
        sink.emit(audit_event(request, caller, action, user_id, details))
        return UserOut.of(changed, roles)

    @router.post("/{user_id}/disable")
    async def disable_user(
        caller: CurrentIdentity,
        admin: KeycloakAdminDep,
        sink: Audit,
        request: Request,
        user_id: UserId,
    ) -> UserOut:
        """Disable the account and end all its sessions."""
        return await set_enabled(caller, admin, sink, request, user_id, False)

    @router.post("/{user_id}/enable")
    async def enable_user(
        caller: CurrentIdentity,
        admin: KeycloakAdminDep,
        sink: Audit,
        request: Request,
        user_id: UserId,
    ) -> UserOut:
        """Enable the account again."""
        return await set_enabled(caller, admin, sink, request, user_id, True)

    @router.post("/{user_id}/logout", status_code=status.HTTP_204_NO_CONTENT)
    async def logout_user(
        caller: CurrentIdentity,
        admin: KeycloakAdminDep,
        sink: Audit,
        request: Request,
        user_id: UserId,
    ) -> None:
        """End all the user's Keycloak sessions (they must log in again)."""
        action = "users.logged_out"
        with denials(sink, request, caller, action, user_id):
            _require(caller)
            _not_self(caller, user_id)
            user, roles = await _target(admin, caller, user_id)
        await admin.logout(user_id)
        details = {"before": _snapshot(user, roles), "after": _snapshot(user, roles)}
        sink.emit(audit_event(request, caller, action, user_id, details))

    return router
