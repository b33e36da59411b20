"""The bodies of the user administration API: validation and the shape of a user."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from gateway.idp.users import KeycloakUser
from gateway.people.admin_models import NewUserRequest, UserOut

INVITE = {"username": "  Tech.One ", "email": "Tech1@MRO.test", "first_name": "T", "last_name": "O"}


def test_invitation_names_are_normalised() -> None:
    """Username and email are trimmed and lower-cased; the role defaults to technician."""
    body = NewUserRequest.model_validate(INVITE)
    assert (body.username, body.email, body.role) == ("tech.one", "tech1@mro.test", "technician")


@pytest.mark.parametrize(
    "change",
    [
        {"username": "service-account-erp"},
        {"username": "x"},
        {"email": "not-an-address"},
        {"role": "manager"},
        {"password": "secret"},
    ],
)
def test_invalid_invitations_are_refused(change: dict[str, str]) -> None:
    """Reserved or short names, bad addresses, privileged roles and unknown fields fail."""
    with pytest.raises(ValidationError):
        NewUserRequest.model_validate({**INVITE, **change})


def test_a_user_is_shown_with_mro_roles_and_creation_time() -> None:
    """Keycloak's millisecond timestamp becomes a UTC time; only MRO roles are listed."""
    user = KeycloakUser.model_validate(
        {"id": "u1", "username": "tech1", "createdTimestamp": 1_700_000_000_000}
    )
    shown = UserOut.of(user, frozenset({"engineer", "offline_access"}))
    assert shown.roles == ["engineer"]
    assert shown.created_at == datetime.fromtimestamp(1_700_000_000, UTC)
