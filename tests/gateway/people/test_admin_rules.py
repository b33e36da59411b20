"""Who may act on whom in user administration, checked without Keycloak."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError, NotFound, PermissionDenied
from gateway.identity import AuthMethod, Identity
from gateway.idp.users import KeycloakUser
from gateway.people.admin_rules import check_role, not_self, require, snapshot


def caller(*permissions: str) -> Identity:
    """A user-manager caller holding permissions."""
    return Identity(
        "mgr-1", AuthMethod.JWT, frozenset({"manager"}), permissions=frozenset(permissions)
    )


MANAGER = caller("users:manage")
ADMIN = caller("users:manage", "users:manage:privileged")


def test_managing_users_needs_users_manage() -> None:
    """Without users:manage every action is refused; with it the check passes."""
    with pytest.raises(PermissionDenied):
        require(caller("usage:read"))
    require(MANAGER)


@pytest.mark.parametrize(
    ("who", "role", "error", "code"),
    [
        (ADMIN, "service", PermissionDenied, "role_not_manageable"),
        (ADMIN, "pilot", NotFound, "role_not_found"),
        (MANAGER, "manager", PermissionDenied, "privileged_role"),
        (MANAGER, "admin", PermissionDenied, "privileged_role"),
    ],
)
def test_roles_out_of_reach_are_refused(
    who: Identity, role: str, error: type[GatewayError], code: str
) -> None:
    """service is never handled here, unknown roles do not exist, privileged ones need more."""
    with pytest.raises(error) as caught:
        check_role(who, role)
    assert caught.value.code == code


def test_grantable_roles_pass_for_the_right_caller() -> None:
    """Engineers are any manager's to grant; admins only a privileged caller's."""
    check_role(MANAGER, "engineer")
    check_role(ADMIN, "admin")


def test_nobody_acts_on_their_own_account() -> None:
    """The caller's own subject is refused as self_modification; anyone else passes."""
    with pytest.raises(PermissionDenied) as caught:
        not_self(MANAGER, "mgr-1")
    assert caught.value.code == "self_modification"
    not_self(MANAGER, "tech-1")


def test_snapshot_shows_mro_roles_and_enabled() -> None:
    """The audited state keeps MRO roles only, sorted, with the enabled flag."""
    user = KeycloakUser(id="u1", username="tech1", enabled=False)
    roles = frozenset({"technician", "offline_access", "default-roles-mro"})
    assert snapshot(user, roles) == {"roles": ["technician"], "enabled": False}
