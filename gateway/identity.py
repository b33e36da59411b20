"""Who is calling: the result of authentication, whatever the credential was."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol


class AuthMethod(StrEnum):
    """How the caller proved who they are (the assertion's `auth` claim)."""

    SESSION = "session"
    JWT = "jwt"
    CLIENT_CREDENTIALS = "client_credentials"
    API_KEY = "api_key"


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller. ``permissions`` is filled in by the policy after authentication."""

    subject: str
    method: AuthMethod
    roles: frozenset[str]
    username: str = ""
    name: str = ""
    email: str = ""
    session_id: str | None = None
    client_id: str | None = None
    api_key_id: str | None = None
    expires_at: float | None = None
    # When the credential was issued (a token's ``iat``); revocations refuse what came before.
    issued_at: float | None = None
    # The person or service account an API key acts for (its owner's Keycloak id), and the
    # owner's realm roles now: a key never gets a permission its owner's roles do not give.
    owner: str | None = None
    owner_roles: frozenset[str] | None = None
    permissions: frozenset[str] = field(default_factory=frozenset)
    # Permissions an API key was limited to at creation; None means "whatever the roles grant".
    scopes: frozenset[str] | None = None

    @property
    def is_service(self) -> bool:
        return self.method in (AuthMethod.CLIENT_CREDENTIALS, AuthMethod.API_KEY)

    def with_permissions(self, permissions: frozenset[str]) -> Identity:
        """A copy carrying the permissions the policy granted."""
        return replace(self, permissions=permissions)


class Authenticator(Protocol):
    """One way of authenticating a request (session cookie, bearer JWT, API key).

    ``authenticate`` returns None when the request carries no credential of this kind, an
    Identity when it carries a valid one, and raises ``gateway.errors.AuthenticationError``
    when it carries an invalid one.
    """

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | None: ...
