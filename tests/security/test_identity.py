"""Who a caller is comes from claims Keycloak controls, never from a name a person chose.

Attack: register (or be created) with a username such as ``service-account-planning`` and be
treated by the gateway as a machine client: a service cannot be disabled by managers and has no
profile to audit. The realm refuses the name; and the gateway would not believe it anyway, since
it recognises a service only by the client id the client-credentials grant adds, no session and
the ``service`` role (``tests/gateway/auth/test_bearer.py`` forges every other combination).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakPostError

pytestmark = pytest.mark.keycloak


def test_the_realm_refuses_a_person_named_like_a_service_account(
    keycloak_admin: KeycloakAdmin,
) -> None:
    """Even the admin API cannot create a person whose username starts with service-account-
    (self-registration is refused the same way: tests/keycloak/test_registration.py)."""
    with pytest.raises(KeycloakPostError) as refused:
        keycloak_admin.create_user(
            {
                "username": "service-account-planning-spoof",
                "email": "spoof@mro.test",
                "firstName": "Spoof",
                "lastName": "Person",
                "enabled": True,
            }
        )
    assert refused.value.response_code == 400
    assert keycloak_admin.get_user_id("service-account-planning-spoof") is None


def test_the_running_gateway_tells_people_from_services_by_their_grant(
    gateway: httpx.Client, manager_token: Callable[[], str], service_token: Callable[[], str]
) -> None:
    """A person's token is a person (auth_method jwt, a profile); the client-credentials token
    of a service client is not, and services have no profile (403)."""
    person = gateway.get("/api/me", headers={"Authorization": f"Bearer {manager_token()}"})
    service = gateway.get("/api/me", headers={"Authorization": f"Bearer {service_token()}"})
    assert person.status_code == 200, person.text
    assert (person.json()["service"], person.json()["auth_method"]) == (False, "jwt")
    assert service.status_code == 403, service.text
    assert service.json()["code"] == "permission_denied"
