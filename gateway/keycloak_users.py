"""The user and realm-role representations of Keycloak's admin API that the gateway uses."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SERVICE_ACCOUNT_PREFIX", "KeycloakUser", "NewUser", "RoleRef"]

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

    def representation(self) -> dict[str, Any]:
        """The full representation for a PUT.

        Keycloak's user profile treats a PUT carrying ``attributes`` as the whole profile: a
        name or email left out would be erased, so updates always send everything.
        """
        return {
            "username": self.username,
            "email": self.email,
            "emailVerified": self.email_verified,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "enabled": self.enabled,
            "attributes": self.attributes,
            "requiredActions": self.required_actions,
        }


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
