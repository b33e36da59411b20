"""The bodies of ``/api/admin/users…``: users as administrators see them, invitations, updates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from gateway.idp.users import SERVICE_ACCOUNT_PREFIX, KeycloakUser
from gateway.people.profile import (
    BaseStation,
    Department,
    EmployeeId,
    LicenceNumber,
    MroAttributes,
    PersonName,
    ProfileFields,
    matching,
    visible_roles,
)

__all__ = ["CreatedUser", "NewUserRequest", "UserOut", "UserPage", "UserUpdate"]


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
        """user with their MRO roles among roles (Keycloak's default composites left out)."""
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


class UserUpdate(ProfileFields):
    """What a manager or admin may change on someone's profile: what the person may change
    themselves, plus the employee id and the Part-66 licence number, which only they set."""

    employee_id: EmployeeId | None = None
    licence_number: LicenceNumber | None = None


class CreatedUser(UserOut):
    """The new user; ``invitation_sent`` is False when Keycloak could not send the email."""

    invitation_sent: bool
