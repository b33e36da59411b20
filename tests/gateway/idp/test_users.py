"""Keycloak user representations: what is read, and what a create or update sends."""

from __future__ import annotations

import pytest

from gateway.idp.users import KeycloakUser, NewUser, ProfileEdit

STORED = KeycloakUser.model_validate(
    {
        "id": "u1",
        "username": "tech1",
        "email": "tech1@mro.test",
        "emailVerified": False,
        "firstName": "Ada",
        "lastName": "Lee",
        "enabled": False,
        "requiredActions": ["CONFIGURE_TOTP"],
        "attributes": {"base_station": ["LHR"], "department": ["Stores"], "employee_id": ["E1"]},
        "access": {"manage": True},
    }
)
STANDING = {"enabled", "emailVerified", "requiredActions", "username", "id"}


def test_a_user_reads_its_attributes() -> None:
    """An attribute reads as its first value, a missing one as None."""
    assert STORED.attribute("base_station") == "LHR"
    assert STORED.attribute("department") == "Stores"
    assert STORED.attribute("licence_number") is None


def test_names_alone_are_sent_alone() -> None:
    """A name change is a PUT of that name only: Keycloak keeps everything it is not sent."""
    assert ProfileEdit(first_name="Nia").representation() == {"firstName": "Nia"}
    both = ProfileEdit(first_name="Nia", last_name="Ng").representation(STORED)
    assert both == {"firstName": "Nia", "lastName": "Ng"}


def test_an_attribute_edit_carries_the_stored_profile_but_no_standing() -> None:
    """Attributes go out merged into the stored map with the stored email and names, and no
    enabled flag, email verification, required actions or username."""
    edit = ProfileEdit(last_name="Ng", attributes={"licence_number": "UK.66.1", "department": None})
    sent = edit.representation(STORED)
    assert sent == {
        "email": "tech1@mro.test",
        "firstName": "Ada",
        "lastName": "Ng",
        "attributes": {
            "base_station": ["LHR"],
            "employee_id": ["E1"],
            "licence_number": ["UK.66.1"],
        },
    }
    assert not STANDING & sent.keys()


def test_an_attribute_edit_needs_the_stored_user() -> None:
    """Without a fresh read an attribute edit cannot be sent (it would erase the rest)."""
    edit = ProfileEdit(attributes={"department": "Stores"})
    assert edit.needs_current
    assert not ProfileEdit(first_name="Nia").needs_current
    with pytest.raises(ValueError, match="needs the user as stored"):
        edit.representation()


def test_service_accounts_are_known_by_client_or_name() -> None:
    """A user is a service account when Keycloak names its client or its username says so."""
    named = KeycloakUser(id="a", username="service-account-erp")
    linked = KeycloakUser.model_validate(
        {"id": "b", "username": "erp", "serviceAccountClientId": "erp"}
    )
    person = KeycloakUser(id="c", username="tech1")
    assert (named.is_service_account, linked.is_service_account) == (True, True)
    assert person.is_service_account is False


def test_a_new_user_is_created_enabled_with_unverified_email() -> None:
    """Attributes become single-value lists; the required actions are passed on."""
    new = NewUser(
        username="x1",
        email="x1@mro.test",
        first_name="X",
        last_name="Y",
        attributes={"employee_id": "E1"},
        required_actions=("VERIFY_EMAIL",),
    )
    sent = new.representation()
    assert (sent["enabled"], sent["emailVerified"]) == (True, False)
    assert sent["attributes"] == {"employee_id": ["E1"]}
    assert sent["requiredActions"] == ["VERIFY_EMAIL"]
