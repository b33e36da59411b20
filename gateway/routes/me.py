"""``/api/me``: the caller's own profile, read from and written to Keycloak.

``GET`` shows the profile (effective realm roles read from Keycloak, so a role change shows at
once, not at the next token). ``PATCH`` edits the fields a person may keep up to date
themselves: names, base station and department. The employee id (issued by HR) and the Part-66
licence number (verified against the licence) are set by a manager or admin through
``/api/admin/users/{id}``, as the realm's user profile says; naming either here is a 403
``admin_managed_field``. Roles, username and email (Keycloak's own verification flow) are not
fields here at all, and naming any other field is a 422. A save writes only the fields it
changes (``KeycloakAdminClient.edit_profile``), never the person's enabled flag.
``POST /api/me/password`` answers the Keycloak URL where the person changes their password:
no password ever passes through the gateway.

API keys and service accounts have no profile in Keycloak: ``GET`` answers with what the
credential says about them, and the other routes refuse them (403 ``profile_not_editable``).
The field types are shared with the user administration routes (``gateway.people.profile``).
"""

from __future__ import annotations

import asyncio
from typing import Final, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from pydantic import BaseModel, model_validator

from gateway.audit.events import audit_event
from gateway.dependencies import Audit, CurrentIdentity, SettingsDep
from gateway.errors import PermissionDenied
from gateway.identity import Identity
from gateway.idp.admin_client import KeycloakAdminDep
from gateway.idp.users import KeycloakUser
from gateway.people.profile import MroAttributes, ProfileFields, profile_edit, visible_roles
from gateway.settings import GatewaySettings

__all__ = [
    "PasswordChange",
    "Profile",
    "ProfileUpdate",
    "create_router",
    "update_password_url",
]

# Attributes the realm's user profile lets only administrators edit; the gateway's managers and
# admins set them through /api/admin/users/{id}.
ADMIN_MANAGED: Final = {"employee_id": "employee id", "licence_number": "licence number"}
UPDATE_PASSWORD: Final = "UPDATE_PASSWORD"  # noqa: S105 - a Keycloak action name


class Profile(BaseModel):
    """The caller as Keycloak knows them (or as their credential says, for machines)."""

    id: str
    username: str
    email: str | None
    email_verified: bool | None
    first_name: str | None
    last_name: str | None
    roles: list[str]
    permissions: list[str]
    attributes: MroAttributes
    auth_method: str
    service: bool


class ProfileUpdate(ProfileFields):
    """Fields a person may change on their own profile.

    Raises PermissionDenied (``admin_managed_field``) when the body names the employee id or
    the licence number, before any other check: a clearer answer than "extra field" for two
    attributes the person sees on their profile but only a manager or admin sets.
    """

    @model_validator(mode="before")
    @classmethod
    def _not_admin_managed(cls, data: object) -> object:
        if isinstance(data, dict):
            named = [label for field, label in ADMIN_MANAGED.items() if field in data]
            if named:
                raise PermissionDenied(
                    f"Only a manager or an admin sets your {' and '.join(named)}; "
                    "ask one to change it.",
                    code="admin_managed_field",
                )
        return data


class PasswordChange(BaseModel):
    """Where to send the browser to change the password at Keycloak."""

    url: str
    action: Literal["UPDATE_PASSWORD"] = "UPDATE_PASSWORD"


def update_password_url(settings: GatewaySettings) -> str:
    """The gateway's login route asking Keycloak for its UPDATE_PASSWORD action.

    It runs the ordinary login flow (state, nonce, PKCE held by the gateway), so Keycloak shows
    its own password form and then returns to the gateway's callback like any login; no password
    ever passes through the gateway.
    """
    query = urlencode({"action": "update_password", "return_to": "/"})
    return f"{settings.public_url.rstrip('/')}/auth/login?{query}"


def _machine_profile(caller: Identity) -> Profile:
    return Profile(
        id=caller.subject,
        username=caller.username,
        email=caller.email or None,
        email_verified=None,
        first_name=None,
        last_name=None,
        roles=visible_roles(caller.roles),
        permissions=sorted(caller.permissions),
        attributes=MroAttributes(),
        auth_method=caller.method.value,
        service=True,
    )


def _profile(caller: Identity, user: KeycloakUser, roles: frozenset[str]) -> Profile:
    return Profile(
        id=user.id,
        username=user.username,
        email=user.email,
        email_verified=user.email_verified,
        first_name=user.first_name,
        last_name=user.last_name,
        roles=visible_roles(roles),
        permissions=sorted(caller.permissions),
        attributes=MroAttributes.of(user),
        auth_method=caller.method.value,
        service=False,
    )


def _is_machine(caller: Identity) -> bool:
    """API keys and service accounts: no Keycloak user behind them to look up or edit."""
    return caller.is_service or caller.subject.startswith("apikey:")


def _require_person(caller: Identity) -> None:
    if _is_machine(caller):
        raise PermissionDenied(
            "API keys and service accounts have no editable profile.",
            code="profile_not_editable",
        )


def create_router() -> APIRouter:
    """The ``/api/me`` router."""
    router = APIRouter(prefix="/api/me", tags=["profile"])

    @router.get("")
    async def read_profile(caller: CurrentIdentity, admin: KeycloakAdminDep) -> Profile:
        """The caller's profile; machines get what their credential says."""
        if _is_machine(caller):
            return _machine_profile(caller)
        user, roles = await asyncio.gather(
            admin.get_user(caller.subject), admin.effective_realm_roles(caller.subject)
        )
        return _profile(caller, user, roles)

    @router.patch("")
    async def update_profile(
        body: ProfileUpdate,
        caller: CurrentIdentity,
        admin: KeycloakAdminDep,
        sink: Audit,
        request: Request,
    ) -> Profile:
        """Change own names, base station and department; answers the profile as stored."""
        _require_person(caller)
        user = await admin.get_user(caller.subject)
        edit, changes = profile_edit(user, body)
        if changes:
            await admin.edit_profile(user.id, edit)
            sink.emit(audit_event(request, caller, "profile.updated", user.id, changes))
        user, roles = await asyncio.gather(
            admin.get_user(caller.subject), admin.effective_realm_roles(caller.subject)
        )
        return _profile(caller, user, roles)

    @router.post("/password")
    async def change_password(caller: CurrentIdentity, settings: SettingsDep) -> PasswordChange:
        """The Keycloak URL where the caller sets a new password."""
        _require_person(caller)
        return PasswordChange(url=update_password_url(settings))

    return router
