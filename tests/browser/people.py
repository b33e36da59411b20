"""Throwaway Keycloak accounts for browser tests, so no shared dev user is ever changed."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from keycloak import KeycloakAdmin

# Roles the gateway maps to permissions; Keycloak's own defaults (offline_access, …) are not here.
APP_ROLES = frozenset({"technician", "engineer", "manager", "admin", "service"})


@dataclass(frozen=True)
class Person:
    """A Keycloak user the test made: how to sign in as them and where to find them."""

    id: str
    username: str
    email: str
    password: str
    first_name: str
    last_name: str

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


def new_password() -> str:
    """A password the realm's policy accepts (length 12+, neither username nor email)."""
    return f"Dev-only-{secrets.token_hex(6)}-Pw"


def app_roles(admin: KeycloakAdmin, user_id: str) -> set[str]:
    """The user's effective realm roles that mean something to the gateway."""
    effective = admin.get_composite_realm_roles_of_user(user_id)
    return {role["name"] for role in effective} & APP_ROLES


@contextmanager
def throwaway_user(
    admin: KeycloakAdmin, prefix: str, first_name: str, last_name: str
) -> Iterator[Person]:
    """A verified, enabled user with the realm's default roles (technician); deleted afterwards."""
    username = f"{prefix}{secrets.token_hex(4)}"
    email = f"{username}@mro.test"
    password = new_password()
    user_id = admin.create_user(
        {
            "username": username,
            "email": email,
            "emailVerified": True,
            "firstName": first_name,
            "lastName": last_name,
            "enabled": True,
            "credentials": [{"type": "password", "value": password, "temporary": False}],
        }
    )
    try:
        yield Person(user_id, username, email, password, first_name, last_name)
    finally:
        admin.delete_user(user_id)


def delete_by_username(admin: KeycloakAdmin, username: str) -> None:
    """Delete the user of that exact username if there is one (users made through a form)."""
    for user in admin.get_users({"username": username, "exact": True}):
        admin.delete_user(user["id"])
