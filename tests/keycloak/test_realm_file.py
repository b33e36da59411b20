"""keycloak/realm-export.json holds the security settings, and the live realm has them.

Each check reads the setting from the file *and* from the running realm through the admin API,
so a setting dropped from the file fails here even though Keycloak's default might look similar.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from keycloak import KeycloakAdmin

from devstack.keycloak import REALM_FILE, load_dev_credentials
from tests.infra.realm_placeholders import resolve

pytestmark = pytest.mark.keycloak

EXPECTED_REALM_SETTINGS: dict[str, Any] = {
    "registrationAllowed": True,
    "registrationEmailAsUsername": False,
    "verifyEmail": True,
    "resetPasswordAllowed": True,
    "loginWithEmailAllowed": True,
    "duplicateEmailsAllowed": False,
    "bruteForceProtected": True,
    "permanentLockout": False,
    "failureFactor": 5,
    "waitIncrementSeconds": 60,
    "maxFailureWaitSeconds": 900,
    "maxDeltaTimeSeconds": 43200,
    "accessTokenLifespan": 300,
    "revokeRefreshToken": True,
    "refreshTokenMaxReuse": 0,
    "ssoSessionIdleTimeout": 1800,
    "ssoSessionMaxLifespan": 36000,
    "eventsEnabled": True,
    "adminEventsEnabled": True,
    "adminEventsDetailsEnabled": True,
    "loginTheme": "mro",
}
PASSWORD_POLICY_PARTS = ("length(12)", "notUsername", "notEmail", "passwordHistory(5)")
MRO_ATTRIBUTES = ("employee_id", "licence_number", "base_station", "department")


@pytest.fixture(scope="module")
def realm_file() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REALM_FILE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def live_realm(keycloak_admin: KeycloakAdmin) -> dict[str, Any]:
    realm: dict[str, Any] = keycloak_admin.get_realm("mro")
    return realm


def _client(realm: dict[str, Any], client_id: str) -> dict[str, Any]:
    return next(c for c in realm["clients"] if c["clientId"] == client_id)


@pytest.mark.parametrize(("setting", "expected"), sorted(EXPECTED_REALM_SETTINGS.items()))
def test_setting_is_in_the_file_and_live(
    realm_file: dict[str, Any], live_realm: dict[str, Any], setting: str, expected: Any
) -> None:
    """Each security setting is written in the realm file and active in the running realm."""
    assert realm_file.get(setting) == expected
    assert live_realm.get(setting) == expected


def test_password_policy_is_in_the_file_and_live(
    realm_file: dict[str, Any], live_realm: dict[str, Any]
) -> None:
    """The password policy demands 12+ characters, not username/email, and a 5-password history."""
    for policy in (realm_file["passwordPolicy"], live_realm["passwordPolicy"]):
        parts = [part.strip() for part in policy.split(" and ")]
        assert set(PASSWORD_POLICY_PARTS) <= set(parts)


def test_events_are_kept_for_a_while(live_realm: dict[str, Any]) -> None:
    """Login and admin events are stored with an expiry of at least 30 days."""
    assert live_realm["eventsExpiration"] >= 30 * 24 * 3600
    assert int(live_realm["attributes"]["adminEventsExpiration"]) >= 30 * 24 * 3600


def test_role_hierarchy_in_the_file(realm_file: dict[str, Any]) -> None:
    """engineer includes technician, manager includes engineer; admin and service include no
    realm role (admin's realm-management roles: tests/keycloak/test_admin_console.py)."""
    roles = {r["name"]: r for r in realm_file["roles"]["realm"]}
    assert roles["engineer"]["composites"]["realm"] == ["technician"]
    assert roles["manager"]["composites"]["realm"] == ["engineer"]
    assert "realm" not in roles["admin"].get("composites", {})
    assert not roles["service"]["composite"]
    assert roles["default-roles-mro"]["composites"]["realm"] == ["technician"]


def test_default_roles_give_new_users_technician_only(keycloak_admin: KeycloakAdmin) -> None:
    """The live default role holds technician and no other realm role (no offline_access)."""
    composites = keycloak_admin.get_composite_realm_roles_of_role("default-roles-mro")
    realm_roles = {r["name"] for r in composites if not r.get("clientRole")}
    assert realm_roles == {"technician"}


def test_no_secret_is_written_in_the_realm_file(realm_file: dict[str, Any]) -> None:
    """Client secrets are ${ENV} placeholders; no dev secret appears in the realm file."""
    text = REALM_FILE.read_text(encoding="utf-8")
    for client in load_dev_credentials()["clients"]:
        assert client["client_secret"] not in text
        secret = _client(realm_file, client["client_id"])["secret"]
        assert secret.startswith("${")
        assert secret.endswith("}")


def test_smtp_comes_from_placeholders_resolved_at_import(
    realm_file: dict[str, Any], live_realm: dict[str, Any]
) -> None:
    """SMTP host, port and sender are placeholders in the file and resolved values in the realm."""
    for key in ("host", "port", "from"):
        assert realm_file["smtpServer"][key].startswith("${MRO_KC_SMTP_")
        assert "${" not in live_realm["smtpServer"][key]


def test_gateway_client_settings(realm_file: dict[str, Any], keycloak_admin: KeycloakAdmin) -> None:
    """mro-gateway: confidential, code flow only, PKCE S256, exact URIs, back-channel logout."""
    client_uuid = keycloak_admin.get_client_id("mro-gateway")
    assert client_uuid is not None
    # The file's gateway URLs are placeholders; without the stack's values they take defaults.
    in_file = _client(resolve(realm_file, {}), "mro-gateway")
    for client in (in_file, keycloak_admin.get_client(client_uuid)):
        attributes = client["attributes"]
        assert client["publicClient"] is False
        assert client["standardFlowEnabled"] is True
        assert client["serviceAccountsEnabled"] is True
        assert client["frontchannelLogout"] is False
        assert set(client["redirectUris"]) == {
            "http://127.0.0.1:8000/auth/callback",
            "http://localhost:8000/auth/callback",
        }
        assert attributes["pkce.code.challenge.method"] == "S256"
        assert (
            attributes["backchannel.logout.url"] == "http://127.0.0.1:8000/auth/backchannel-logout"
        )
        assert attributes["backchannel.logout.session.required"] == "true"
        assert set(attributes["post.logout.redirect.uris"].split("##")) == {
            "http://127.0.0.1:8000/",
            "http://localhost:8000/",
        }


def test_gateway_service_account_is_least_privilege(keycloak_admin: KeycloakAdmin) -> None:
    """The gateway's service account may view, query and manage users and read admin events,
    and nothing else."""
    client_uuid = keycloak_admin.get_client_id("mro-gateway")
    management = keycloak_admin.get_client_id("realm-management")
    assert client_uuid is not None
    assert management is not None
    account = keycloak_admin.get_client_service_account_user(client_uuid)
    direct = keycloak_admin.get_client_roles_of_user(account["id"], management)
    assert {r["name"] for r in direct} == {
        "view-users",
        "manage-users",
        "query-users",
        "view-events",
    }
    assert keycloak_admin.get_realm_roles_of_user(account["id"]) == []


@pytest.mark.parametrize("client_id", ["mro-gateway", "mro-planning-sync", "mro-cli"])
def test_clients_carry_the_gateway_audience_mapper(
    realm_file: dict[str, Any], client_id: str
) -> None:
    """Every MRO client adds mro-gateway to the access token's audience."""
    mappers = _client(realm_file, client_id)["protocolMappers"]
    audiences = [
        m["config"]["included.client.audience"]
        for m in mappers
        if m["protocolMapper"] == "oidc-audience-mapper"
    ]
    assert audiences == ["mro-gateway"]


def test_user_profile_declares_mro_attributes(keycloak_admin: KeycloakAdmin) -> None:
    """The declarative user profile has the MRO attributes with length validation."""
    profile = keycloak_admin.connection.raw_get("admin/realms/mro/users/profile").json()
    attributes = {a["name"]: a for a in profile["attributes"]}
    for name in MRO_ATTRIBUTES:
        assert "length" in attributes[name]["validations"]
    assert attributes["employee_id"]["permissions"]["edit"] == ["admin"]
    assert attributes["licence_number"]["permissions"]["edit"] == ["admin"]
    assert "user" in attributes["base_station"]["permissions"]["edit"]
    assert "user" in attributes["department"]["permissions"]["edit"]
