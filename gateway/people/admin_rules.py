"""Who may act on whom in user administration; refusals are audited as denied attempts.

``users:manage`` is needed for everything. ``manager`` and ``admin`` are granted and revoked only
with ``users:manage:privileged``, and a caller without it cannot act on a user who holds either
(403 ``privileged_role`` / ``privileged_target``). ``service`` is never handled (403
``role_not_manageable``). Nobody acts on their own account (403 ``self_modification``), and
service accounts are left alone (403 ``service_account``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from fastapi import Request

from gateway.audit.events import audit_event
from gateway.dependencies import Audit
from gateway.errors import NotFound, PermissionDenied
from gateway.identity import Identity
from gateway.idp.admin_client import KeycloakAdminClient
from gateway.idp.users import KeycloakUser
from gateway.people.admin_models import UserOut
from gateway.people.profile import visible_roles

__all__ = [
    "GRANTABLE_ROLES",
    "MANAGE",
    "PRIVILEGED",
    "PRIVILEGED_ROLES",
    "RoleChange",
    "check_role",
    "denials",
    "not_self",
    "require",
    "snapshot",
    "target",
]

MANAGE: Final = "users:manage"
PRIVILEGED: Final = "users:manage:privileged"
PRIVILEGED_ROLES: Final = frozenset({"manager", "admin"})
GRANTABLE_ROLES: Final = frozenset({"technician", "engineer", "manager", "admin"})


def require(caller: Identity) -> None:
    """Raises PermissionDenied unless caller holds users:manage."""
    if MANAGE not in caller.permissions:
        raise PermissionDenied("Managing users needs users:manage.")


def check_role(caller: Identity, role: str) -> None:
    """Raises PermissionDenied or NotFound unless caller may grant or revoke role here."""
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


def not_self(caller: Identity, user_id: str) -> None:
    """Raises PermissionDenied when user_id is the caller's own account."""
    if caller.subject == user_id:
        raise PermissionDenied("You cannot change your own account here.", code="self_modification")


async def target(
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


def snapshot(user: KeycloakUser, roles: frozenset[str]) -> dict[str, Any]:
    """The audited state of a user: visible roles and the enabled flag."""
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
            require(self.caller)
            not_self(self.caller, self.user_id)
            check_role(self.caller, self.role)
            return await target(self.admin, self.caller, self.user_id)

    async def done(self, user: KeycloakUser, before: frozenset[str], **extra: Any) -> UserOut:
        """Audit the change with the roles before and after; answer the user as after."""
        after = await self.admin.effective_realm_roles(self.user_id)
        details = {
            "role": self.role,
            "before": snapshot(user, before),
            "after": snapshot(user, after),
            **extra,
        }
        self.sink.emit(audit_event(self.request, self.caller, self.action, self.user_id, details))
        return UserOut.of(user, after)
