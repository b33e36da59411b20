"""A person's profile fields as the gateway keeps them: types, validators and what an edit changes.

Shared by ``/api/me`` (a person's own profile) and ``/api/admin/users…`` (user administration):
the field types and their rules, the MRO attributes read from a Keycloak user, the MRO roles a
caller sees, and the edit that writes only the fields an update really changes.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, field_validator

from gateway.idp.users import KeycloakUser, ProfileEdit

__all__ = [
    "MRO_ATTRIBUTES",
    "MRO_ROLES",
    "BaseStation",
    "Department",
    "EmployeeId",
    "LicenceNumber",
    "MroAttributes",
    "PersonName",
    "ProfileFields",
    "matching",
    "profile_edit",
    "visible_roles",
]

MRO_ROLES: Final = frozenset({"technician", "engineer", "manager", "admin", "service"})
MRO_ATTRIBUTES: Final = ("employee_id", "licence_number", "base_station", "department")

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


def visible_roles(roles: frozenset[str]) -> list[str]:
    """The MRO roles among a user's realm roles (not Keycloak's default composites)."""
    return sorted(roles & MRO_ROLES)


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
