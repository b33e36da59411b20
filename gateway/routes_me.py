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
The field types here are shared with the user administration routes.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    field_validator,
    model_validator,
)

from gateway.audit import AuditEvent
from gateway.context import current_context
from gateway.dependencies import Audit, CurrentIdentity, SettingsDep
from gateway.errors import PermissionDenied
from gateway.identity import Identity
from gateway.keycloak_admin import KeycloakAdminDep
from gateway.keycloak_users import KeycloakUser, ProfileEdit
from gateway.settings import GatewaySettings

__all__ = [
    "MRO_ATTRIBUTES",
    "MRO_ROLES",
    "BaseStation",
    "Department",
    "EmployeeId",
    "LicenceNumber",
    "MroAttributes",
    "PasswordChange",
    "PersonName",
    "Profile",
    "ProfileFields",
    "ProfileUpdate",
    "audit_event",
    "create_router",
    "matching",
    "profile_edit",
    "update_password_url",
    "visible_roles",
]

MRO_ROLES: Final = frozenset({"technician", "engineer", "manager", "admin", "service"})
MRO_ATTRIBUTES: Final = ("employee_id", "licence_number", "base_station", "department")
# Attributes the realm's user profile lets only administrators edit; the gateway's managers and
# admins set them through /api/admin/users/{id}.
ADMIN_MANAGED: Final = {"employee_id": "employee id", "licence_number": "licence number"}
UPDATE_PASSWORD: Final = "UPDATE_PASSWORD"  # noqa: S105 - a Keycloak action name

# Letters of any script, joined by single spaces, hyphens, apostrophes or dots ("Jean-Luc",
# "O'Brien", "J. R."); no digits, markup or control characters.
_NAME: Final = re.compile(r"^[^\W\d_]+(?:(?:[ '\u2019-]|\. ?)[^\W\d_]+)*\.?$")


def _stripped(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def matching(pattern: str, message: str, low: int, high: int) -> AfterValidator:
    """A validator: the whole value matches pattern and its length is within [low, high]."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not low <= len(value) <= high or not compiled.fullmatch(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


PersonName = Annotated[
    str,
    BeforeValidator(_stripped),
    matching(_NAME.pattern, "1-100 letters, spaces, hyphens, apostrophes or dots", 1, 100),
]
BaseStation = Annotated[
    str,
    BeforeValidator(_upper),
    matching(r"[A-Z]{3,4}", "an IATA (3 letters) or ICAO (4 letters) code", 3, 4),
]
Department = Annotated[
    str,
    BeforeValidator(_stripped),
    matching(r"[A-Za-z0-9][A-Za-z0-9 &/.-]*", "2-64 letters, digits, spaces or & / . -", 2, 64),
]
# Licence formats differ by authority (UK.66.123456A, EASA/66/B1/1234): permissive, bounded.
LicenceNumber = Annotated[
    str,
    BeforeValidator(_upper),
    matching(r"[A-Z0-9][A-Z0-9./-]*", "3-32 letters, digits or . / -", 3, 32),
]
EmployeeId = Annotated[
    str,
    BeforeValidator(_upper),
    matching(r"[A-Z0-9][A-Z0-9-]*", "3-20 letters, digits or hyphens", 3, 20),
]


class MroAttributes(BaseModel):
    """Where and how the person works in the maintenance organisation."""

    employee_id: str | None = None
    licence_number: str | None = None
    base_station: str | None = None
    department: str | None = None

    @classmethod
    def of(cls, user: KeycloakUser) -> MroAttributes:
        return cls(**{name: user.attribute(name) for name in MRO_ATTRIBUTES})


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


class ProfileFields(BaseModel):
    """Names and the MRO attributes a person keeps up to date; null clears an attribute."""

    model_config = ConfigDict(extra="forbid")

    first_name: PersonName | None = None
    last_name: PersonName | None = None
    base_station: BaseStation | None = None
    department: Department | None = None

    @field_validator("first_name", "last_name", mode="before")
    @classmethod
    def _names_stay(cls, value: object) -> object:
        if value is None:
            raise ValueError("a name cannot be removed")
        return value


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


def visible_roles(roles: frozenset[str]) -> list[str]:
    """The MRO roles among a user's realm roles (not Keycloak's default composites)."""
    return sorted(roles & MRO_ROLES)


def audit_event(
    request: Request,
    caller: Identity,
    action: str,
    target: str,
    details: dict[str, Any],
    *,
    outcome: Literal["success", "failure", "denied"] = "success",
    reason: str | None = None,
) -> AuditEvent:
    """An audit event with the request's id and client address."""
    context = current_context(request.scope)
    return AuditEvent(
        action=action,
        outcome=outcome,
        actor=caller.subject,
        target=target,
        reason=reason,
        request_id=context.request_id if context else None,
        client_ip=context.client_ip if context else None,
        details=details,
    )


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


def profile_edit(user: KeycloakUser, update: BaseModel) -> tuple[ProfileEdit, dict[str, Any]]:
    """The edit of what update really changes on user, and {field: {"before", "after"}} of it."""
    changes: dict[str, Any] = {}
    names: dict[str, str] = {}
    attributes: dict[str, str | None] = {}
    for field in sorted(update.model_fields_set):
        value = getattr(update, field)
        name = field in ("first_name", "last_name")
        before = getattr(user, field) if name else user.attribute(field)
        if before == value:
            continue
        changes[field] = {"before": before, "after": value}
        if name:
            names[field] = value
        else:
            attributes[field] = value
    return ProfileEdit(**names, attributes=attributes), changes


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
