"""``/api/admin/users…``: people's accounts and roles, administered through Keycloak.

Everything here needs ``users:manage``; the policy checks it per route and each handler checks it
again together with the rules that depend on the request (``gateway.people.admin_rules``; the
bodies are in ``gateway.people.admin_models``):

* ``manager`` and ``admin`` are granted and revoked only with ``users:manage:privileged``, and
  a caller without it cannot act on a user who holds either (403 ``privileged_role`` /
  ``privileged_target``). ``service`` is never handled here (403 ``role_not_manageable``):
  machine clients get it in Keycloak.
* Nobody acts on their own account through this API (403 ``self_modification``): no raising
  one's own roles, no disabling oneself. Service accounts are left alone (403 ``service_account``).
* Removing a role, disabling a user or signing them out ends every credential they hold at once
  (``gateway.idp.revoker``): their access tokens on every replica, their browser sessions, their
  Keycloak sessions, and what their API keys may do. Granting a role or enabling someone makes
  their API keys re-read what the owner may do.
* New users get no password: Keycloak mails them links to verify the address and set one.

Every change is audited with the roles or enabled flag before and after; refused attempts are
audited with outcome ``denied`` and the refusal's code.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status

from gateway.audit.events import audit_event
from gateway.dependencies import Audit, CurrentIdentity, RevokerDep
from gateway.edge.request_context import current_context
from gateway.errors import BadRequest, Conflict, DependencyUnavailable
from gateway.identity import Identity
from gateway.idp.admin_client import KeycloakAdminClient, KeycloakAdminDep
from gateway.idp.revoker import Revoker
from gateway.idp.users import KeycloakUser, NewUser
from gateway.people.admin_models import CreatedUser, NewUserRequest, UserOut, UserPage, UserUpdate
from gateway.people.admin_rules import RoleChange, denials, not_self, require, snapshot, target
from gateway.people.profile import MRO_ATTRIBUTES, profile_edit

__all__ = ["DEFAULT_SCAN_LIMIT", "create_router"]

logger = logging.getLogger(__name__)

INITIAL_ACTIONS: Final = ("VERIFY_EMAIL", "UPDATE_PASSWORD")
# With a role filter the users are scanned (the service account cannot list a role's members,
# which needs view-realm); this bounds one request's scan.
DEFAULT_SCAN_LIMIT: Final = 500
SCAN_BATCH: Final = 100
PARALLEL_ROLE_LOOKUPS: Final = 8

UserId = Annotated[str, Path(pattern=r"^[0-9A-Za-z_:-]{1,100}$")]
RoleName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
RoleFilter = Literal["technician", "engineer", "manager", "admin", "service"]


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
        require(caller)
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
        require(caller)
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
        require(caller)
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
            "after": snapshot(user, roles),
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
        """Change someone's names and MRO attributes (employee id and licence number included).

        Only the changed fields are written, never the enabled flag read above.
        """
        with denials(sink, request, caller, "users.updated", user_id):
            require(caller)
            not_self(caller, user_id)
            user, roles = await target(admin, caller, user_id)
        edit, changes = profile_edit(user, body)
        if changes:
            await admin.edit_profile(user_id, edit)
            sink.emit(audit_event(request, caller, "users.updated", user_id, changes))
        return UserOut.of(await admin.get_user(user_id), roles)

    @router.put("/{user_id}/roles/{role}")
    async def grant_role(
        caller: CurrentIdentity,
        admin: KeycloakAdminDep,
        revoker: RevokerDep,
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
        await revoker.standing_changed(user_id)
        return await change.done(user, before)

    @router.delete("/{user_id}/roles/{role}")
    async def revoke_role(
        caller: CurrentIdentity,
        admin: KeycloakAdminDep,
        revoker: RevokerDep,
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
        await end_everything(revoker, request, caller, user_id, "users.role_revoked")
        return await change.done(user, before, sessions_ended=True)

    async def set_enabled(
        caller: Identity,
        admin: KeycloakAdminClient,
        revoker: Revoker,
        sink: Audit,
        request: Request,
        user_id: str,
        enabled: bool,
    ) -> UserOut:
        action = "users.enabled" if enabled else "users.disabled"
        with denials(sink, request, caller, action, user_id):
            require(caller)
            not_self(caller, user_id)
            user, roles = await target(admin, caller, user_id)
        if user.enabled == enabled:
            return UserOut.of(user, roles)
        await admin.set_enabled(user_id, enabled)
        if enabled:
            await revoker.standing_changed(user_id)
        else:
            await end_everything(revoker, request, caller, user_id, action)
        changed = user.model_copy(update={"enabled": enabled})
        details = {
            "before": snapshot(user, roles),
            "after": snapshot(changed, roles),
            "sessions_ended": not enabled,
        }
        sink.emit(audit_event(request, caller, action, user_id, details))
        return UserOut.of(changed, roles)

    @router.post("/{user_id}/disable")
    async def disable_user(
        caller: CurrentIdentity,
        admin: KeycloakAdminDep,
        revoker: RevokerDep,
        sink: Audit,
        request: Request,
        user_id: UserId,
    ) -> UserOut:
        """Disable the account and end every credential it holds."""
        return await set_enabled(caller, admin, revoker, sink, request, user_id, False)

    @router.post("/{user_id}/enable")
    async def enable_user(
        caller: CurrentIdentity,
        admin: KeycloakAdminDep,
        revoker: RevokerDep,
        sink: Audit,
        request: Request,
        user_id: UserId,
    ) -> UserOut:
        """Enable the account again."""
        return await set_enabled(caller, admin, revoker, sink, request, user_id, True)

    @router.post("/{user_id}/logout", status_code=status.HTTP_204_NO_CONTENT)
    async def logout_user(
        caller: CurrentIdentity,
        admin: KeycloakAdminDep,
        revoker: RevokerDep,
        sink: Audit,
        request: Request,
        user_id: UserId,
    ) -> None:
        """End every credential the user holds but their API keys (they must log in again)."""
        action = "users.logged_out"
        with denials(sink, request, caller, action, user_id):
            require(caller)
            not_self(caller, user_id)
            user, roles = await target(admin, caller, user_id)
        await end_everything(revoker, request, caller, user_id, action)
        details = {"before": snapshot(user, roles), "after": snapshot(user, roles)}
        sink.emit(audit_event(request, caller, action, user_id, details))

    return router


async def end_everything(
    revoker: Revoker, request: Request, caller: Identity, user_id: str, reason: str
) -> None:
    """End the user's credentials here and their sessions at Keycloak. Raises GatewayError."""
    context = current_context(request.scope)
    await revoker.revoke(
        user_id,
        reason,
        actor=caller.subject,
        request_id=context.request_id if context else None,
        end_keycloak_sessions=True,
    )
