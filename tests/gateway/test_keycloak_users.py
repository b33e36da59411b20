"""Keycloak user representations: what is read, and what a create or update sends."""

from __future__ import annotations

from gateway.keycloak_users import KeycloakUser, NewUser


def test_an_update_sends_the_whole_profile() -> None:
    """The PUT representation keeps names, email and attributes so that none is erased."""
    user = KeycloakUser.model_validate(
        {
            "id": "u1",
            "username": "tech1",
            "email": "tech1@mro.test",
            "firstName": "Ada",
            "lastName": "Lee",
            "attributes": {"base_station": ["LHR"]},
            "access": {"manage": True},
        }
    )
    sent = user.representation()
    assert sent["firstName"] == "Ada"
    assert sent["email"] == "tech1@mro.test"
    assert sent["attributes"] == {"base_station": ["LHR"]}
    assert user.attribute("base_station") == "LHR"
    assert user.attribute("department") is None


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
