"""Authorisation: the permissions an identity holds, and the check a route rule makes.

Permissions are what the policy grants the identity's roles; an API key's identity is further
limited to the scopes the key was created with. A missing identity is never a 403 (that is the
authenticator's 401), and a missing permission is never a 401.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from gateway.audit.events import AuditEvent, AuditSink
from gateway.edge.request_context import RequestContext
from gateway.errors import PermissionDenied
from gateway.identity import Identity

__all__ = ["Authorizer"]


class _Grants(Protocol):
    def permissions_for(self, roles: Iterable[str]) -> frozenset[str]: ...


class Authorizer:
    """Grants permissions from the policy and checks them against route rules."""

    def __init__(self, policy: _Grants, audit: AuditSink) -> None:
        self._policy = policy
        self._audit = audit
        self._by_roles: dict[frozenset[str], frozenset[str]] = {}

    def grant(self, identity: Identity) -> Identity:
        """identity carrying the permissions its roles (and scopes, and an API key's owner's
        current roles) allow."""
        granted = self._for_roles(identity.roles)
        if identity.scopes is not None:
            granted = granted & identity.scopes
        if identity.owner_roles is not None:
            granted = granted & self._for_roles(identity.owner_roles)
        return identity.with_permissions(granted)

    def _for_roles(self, roles: frozenset[str]) -> frozenset[str]:
        granted = self._by_roles.get(roles)
        if granted is None:
            granted = self._by_roles[roles] = self._policy.permissions_for(roles)
        return granted

    def authorise(self, identity: Identity, permission: str, context: RequestContext) -> None:
        """Raise PermissionDenied (and audit it) unless identity holds permission."""
        if permission in identity.permissions:
            return
        self._audit.emit(
            AuditEvent(
                action="auth.permission_denied",
                outcome="denied",
                actor=identity.subject,
                target=context.route,
                reason=permission,
                request_id=context.request_id,
                client_ip=context.client_ip,
            )
        )
        raise PermissionDenied(f"This needs the permission {permission}.")
