"""Permissions from roles, narrowed by API-key scopes, checked against route rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.edge.request_context import RequestContext
from gateway.errors import PermissionDenied
from gateway.policy.authorizer import Authorizer
from gateway.policy.policy_file import Policy
from tests.gateway.harness import TECH, ListAuditSink

CONTEXT = RequestContext(request_id="r" * 32, client_ip="198.51.100.1", route="/api/x")


def test_roles_grant_the_policy_permissions() -> None:
    """A technician holds what the policy gives technicians, and nothing of a manager's."""
    granted = Authorizer(Policy.load(), ListAuditSink()).grant(TECH)
    assert "messages:create" in granted.permissions
    assert "audit:read" not in granted.permissions


def test_scopes_narrow_an_api_key() -> None:
    """An API key keeps only the permissions its scopes list."""
    key = replace(TECH, scopes=frozenset({"agents:read", "audit:read"}))
    granted = Authorizer(Policy.load(), ListAuditSink()).grant(key)
    assert granted.permissions == frozenset({"agents:read"})


def test_denial_is_audited_and_raised() -> None:
    """A missing permission raises PermissionDenied and emits auth.permission_denied."""
    audit = ListAuditSink()
    authorizer = Authorizer(Policy.load(), audit)
    with pytest.raises(PermissionDenied):
        authorizer.authorise(authorizer.grant(TECH), "audit:read", CONTEXT)
    (event,) = audit.events
    assert (event.action, event.actor, event.reason) == (
        "auth.permission_denied",
        "tech-1",
        "audit:read",
    )
