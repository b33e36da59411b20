"""The user and realm-role representations of Keycloak's admin API that the gateway uses."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SERVICE_ACCOUNT_PREFIX",
    "AdminEvent",
    "KeycloakUser",
    "NewUser",
    "ProfileEdit",
    "RoleRef",
]

SERVICE_ACCOUNT_PREFIX: Final = "service-account-"


class KeycloakUser(BaseModel):
    """The parts of Keycloak's UserRepresentation the gateway uses."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    id: str
    username: str
    email: str | None = None
    email_verified: bool = Field(default=False, alias="emailVerified")
    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")
    enabled: bool = True
    created_timestamp: int | None = Field(default=None, alias="createdTimestamp")
    attributes: dict[str, list[str]] = Field(default_factory=dict)
    required_actions: list[str] = Field(default_factory=list, alias="requiredActions")
    service_account_client_id: str | None = Field(default=None, alias="serviceAccountClientId")

    @property
    def is_service_account(self) -> bool:
        """A client's service account (Keycloak 26 omits serviceAccountClientId when reading)."""
        return self.service_account_client_id is not None or self.username.startswith(
            SERVICE_ACCOUNT_PREFIX
        )

    def attribute(self, name: str) -> str | None:
        """The first value of a user-profile attribute, or None."""
        values = self.attributes.get(name)
        return values[0] if values else None


class ProfileEdit(BaseModel):
    """The names and MRO attributes one edit changes; an attribute set to None is removed.

    It has no place for a standing field (``enabled``, ``emailVerified``, required actions) nor
    for roles: whatever someone else did to those meanwhile stays as they left it.
    """

    model_config = ConfigDict(frozen=True)

    first_name: str | None = None
    last_name: str | None = None
    attributes: dict[str, str | None] = Field(default_factory=dict)

    @property
    def needs_current(self) -> bool:
        """Whether the PUT carries the attributes map, and so needs a fresh read of the user."""
        return bool(self.attributes)

    def representation(self, current: KeycloakUser | None = None) -> dict[str, Any]:
        """The partial representation for a PUT that changes this edit's fields and no other.

        Measured on Keycloak 26: a PUT leaves every top-level field it does not carry as it is
        (``enabled``, ``emailVerified`` and required actions included) and, without
        ``attributes``, every attribute too. A PUT carrying ``attributes`` is the whole user
        profile though: attributes missing from the map are removed, and so are an email or name
        missing from the PUT (the username stays). So names alone go out alone; an attribute
        change carries current's attributes with the edit applied, and current's email and
        names. Raises ValueError when an attribute change comes without current.
        """
        body: dict[str, Any] = {}
        if self.needs_current:
            if current is None:
                raise ValueError("an attribute change needs the user as stored")
            attributes = dict(current.attributes)
            for name, value in self.attributes.items():
                if value is None:
                    attributes.pop(name, None)
                else:
                    attributes[name] = [value]
            body = {
                "email": current.email,
                "firstName": current.first_name,
                "lastName": current.last_name,
                "attributes": attributes,
            }
        if self.first_name is not None:
            body["firstName"] = self.first_name
        if self.last_name is not None:
            body["lastName"] = self.last_name
        return body


class NewUser(BaseModel):
    """A user to create: no credential; Keycloak mails the required actions."""

    model_config = ConfigDict(frozen=True)

    username: str
    email: str
    first_name: str
    last_name: str
    attributes: dict[str, str] = Field(default_factory=dict)
    required_actions: tuple[str, ...] = ()

    def representation(self) -> dict[str, Any]:
        """The representation for the POST that creates the user (enabled, email unverified)."""
        return {
            "username": self.username,
            "email": self.email,
            "emailVerified": False,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "enabled": True,
            "attributes": {name: [value] for name, value in self.attributes.items()},
            "requiredActions": list(self.required_actions),
        }


class RoleRef(BaseModel):
    """A realm role as Keycloak's role-mapping endpoints need it (id and name)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    name: str


class AdminEventAuth(BaseModel):
    """Who made an admin change: the client and user of the admin's token."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    client_id: str | None = Field(default=None, alias="clientId")
    user_id: str | None = Field(default=None, alias="userId")


class AdminEvent(BaseModel):
    """The parts of Keycloak's AdminEventRepresentation the gateway follows."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    id: str | None = None
    time: int
    operation_type: str = Field(default="", alias="operationType")
    resource_type: str = Field(default="", alias="resourceType")
    resource_path: str = Field(default="", alias="resourcePath")
    auth_details: AdminEventAuth | None = Field(default=None, alias="authDetails")

    @property
    def key(self) -> str:
        """An identity for de-duplication (older Keycloaks send no id)."""
        return self.id or f"{self.time}:{self.operation_type}:{self.resource_path}"
