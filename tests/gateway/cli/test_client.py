"""mro-admin's users, audit, usage and health commands against the running stack: a gateway
process in front of the real Keycloak, called with the dev users' real tokens."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import typer
from keycloak import KeycloakAdmin
from typer.testing import CliRunner, Result

from devstack.procs import free_port
from gateway.app import create_app
from gateway.cli.client import moment
from gateway.cli.commands import app
from gateway.settings import GatewaySettings
from tests.fixtures.live import LiveStack
from tests.gateway.idp.test_admin_client import People, unique
from tests.gateway.keys import serve
from tests.keycloak_flows import jwt_claims

TokenSource = Callable[[str], dict[str, Any]]
AUDIT_WAIT_SECONDS = 10.0


def cli(stack: LiveStack, *args: str, token: str | None = None, **env: str) -> Result:
    """Run mro-admin against the live gateway, with token as MRO_ADMIN_TOKEN."""
    environment = {"MRO_ADMIN_GATEWAY_URL": stack.gateway_url, **env}
    if token is not None:
        environment["MRO_ADMIN_TOKEN"] = token
    return CliRunner().invoke(app, list(args), env=environment)


def access(tokens: TokenSource, username: str) -> str:
    return str(tokens(username)["access_token"])


def one_error_line(result: Result) -> str:
    """The single error line a failed command printed (no traceback)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- moment: the time filter's values ------------------------------------------------------


def test_ages_and_times_become_iso_8601_in_utc() -> None:
    """'2h' is two hours before now; a time without a zone is UTC; one with a zone is kept."""
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert moment("2h", now) == (now - timedelta(hours=2)).isoformat()
    assert moment("7d", now) == "2026-04-24T12:00:00+00:00"
    assert moment("2026-05-01T08:00") == "2026-05-01T08:00:00+00:00"
    assert moment("2026-05-01T08:00+02:00") == "2026-05-01T08:00:00+02:00"
    assert moment(None) is None


def test_other_time_values_are_refused() -> None:
    """Anything but ISO 8601 or an age is a usage error, before any request."""
    with pytest.raises(typer.BadParameter):
        moment("yesterday")


# --- health --------------------------------------------------------------------------------


@pytest.mark.keycloak
@pytest.mark.redis
def test_health_of_a_ready_gateway(live_stack: LiveStack) -> None:
    """Every check answers: a table of them, 'ready', exit status 0."""
    result = cli(live_stack, "health")
    assert result.exit_code == 0, result.output
    rows = dict(line.split() for line in result.stdout.splitlines()[1:-1])
    assert rows == {"process": "yes", "jwks": "yes", "redis": "yes", "database": "yes"}
    assert result.stdout.splitlines()[-1] == "ready"


@pytest.fixture(scope="module")
def unready_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real gateway app whose Keycloak and Redis do not answer; yields its URL."""
    state = tmp_path_factory.mktemp("unready")
    settings = GatewaySettings(
        keycloak_url=f"http://127.0.0.1:{free_port()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        database_url=f"sqlite+aiosqlite:///{state / 'gateway.db'}",
        audit_spool_dir=str(state / "spool"),
    )
    with serve(create_app(settings), lifespan=True) as port:
        yield f"http://127.0.0.1:{port}"


def test_health_names_what_is_not_ready_and_fails(unready_gateway: str) -> None:
    """The process is live but Keycloak's keys and Redis fail: exit status 1, JSON says which."""
    result = CliRunner().invoke(app, ["health", "--gateway-url", unready_gateway, "--json"])
    assert result.exit_code == 1, result.output
    state = json.loads(result.stdout)
    assert state == {
        "live": True,
        "ready": False,
        "checks": {"jwks": False, "redis": False, "database": True},
    }
    table = CliRunner().invoke(app, ["health", "--gateway-url", unready_gateway])
    assert table.exit_code == 1
    assert "not ready: 503 not_ready: Not answering: jwks, redis." in table.stdout


def test_health_of_an_unreachable_gateway() -> None:
    """Nothing listening: one error line, exit status 1."""
    result = CliRunner().invoke(app, ["health", "--gateway-url", f"http://127.0.0.1:{free_port()}"])
    assert "Cannot reach the gateway" in one_error_line(result)


# --- users ---------------------------------------------------------------------------------


@pytest.fixture
def people(keycloak_admin: KeycloakAdmin) -> Iterator[People]:
    tracked = People(keycloak_admin)
    yield tracked
    tracked.cleanup()


def realm_roles(admin: KeycloakAdmin, user_id: str) -> set[str]:
    return {role["name"] for role in admin.get_composite_realm_roles_of_user(user_id)}


@pytest.mark.keycloak
@pytest.mark.redis
def test_a_manager_invites_promotes_disables_and_logs_out_a_person(
    live_stack: LiveStack,
    user_tokens: TokenSource,
    keycloak_admin: KeycloakAdmin,
    people: People,
) -> None:
    """Each users command changes the account in Keycloak; people are named by username."""
    token = access(user_tokens, "mgr1")
    username = unique("cli")
    created = cli(
        live_stack,
        "users",
        "create",
        "--username",
        username,
        "--email",
        f"{username}@mro.test",
        "--first-name",
        "Carla",
        "--last-name",
        "Commandline",
        "--base-station",
        "ams",
        "--json",
        token=token,
    )
    assert created.exit_code == 0, created.output
    user = json.loads(created.stdout)
    people.track(user["id"])
    assert user["roles"] == ["technician"]
    assert user["attributes"]["base_station"] == "AMS"
    assert keycloak_admin.get_credentials(user["id"]) == []

    listed = cli(live_stack, "users", "list", "-q", username, token=token)
    assert listed.exit_code == 0, listed.output
    heading, row, footer = listed.stdout.splitlines()
    assert heading.split()[:3] == ["ID", "USERNAME", "EMAIL"]
    assert row.split()[:2] == [user["id"], username]
    assert "VERIFY_EMAIL,UPDATE_PASSWORD" in row
    assert footer == "1 of 1 (from 0)"

    granted = cli(live_stack, "users", "grant", username, "engineer", token=token)
    assert granted.exit_code == 0, granted.output
    assert "engineer,technician" in granted.stdout
    assert "engineer" in realm_roles(keycloak_admin, user["id"])

    revoked = cli(live_stack, "users", "revoke", f"{username}@mro.test", "engineer", token=token)
    assert revoked.exit_code == 0, revoked.output
    assert "engineer" not in realm_roles(keycloak_admin, user["id"])

    disabled = cli(live_stack, "users", "disable", username, "--json", token=token)
    assert json.loads(disabled.stdout)["enabled"] is False
    assert keycloak_admin.get_user(user["id"])["enabled"] is False
    enabled = cli(live_stack, "users", "enable", user["id"], token=token)
    assert enabled.exit_code == 0, enabled.output
    assert keycloak_admin.get_user(user["id"])["enabled"] is True

    logged_out = cli(live_stack, "users", "logout", username, token=token)
    assert logged_out.exit_code == 0, logged_out.output
    assert logged_out.stdout.strip() == f"Every session of {username} has ended."

    events = audit_events(live_stack, token, user["id"])
    assert {"users.created", "users.role_granted", "users.role_revoked"} <= set(events)
    assert {"users.disabled", "users.enabled", "users.logged_out"} <= set(events)


def audit_events(stack: LiveStack, token: str, target: str) -> list[str]:
    """Actions about target found by `audit search` (waits for the gateway's audit queue)."""
    deadline = time.monotonic() + AUDIT_WAIT_SECONDS
    while True:
        found = cli(
            stack, "audit", "search", "--action", "users.*", "--since", "1h", "--json", token=token
        )
        assert found.exit_code == 0, found.output
        actions = [e["action"] for e in json.loads(found.stdout)["items"] if e["target"] == target]
        if "users.logged_out" in actions or time.monotonic() > deadline:
            return actions
        time.sleep(0.2)  # the audit queue writes in the gateway process; nothing to inject


@pytest.mark.keycloak
@pytest.mark.redis
def test_a_refusal_is_one_line_with_the_gateways_code(
    live_stack: LiveStack, user_tokens: TokenSource, people: People
) -> None:
    """A manager may not grant manager: exit 1, '403 privileged_role' and the request id."""
    person = people.create("technician")
    result = cli(
        live_stack, "users", "grant", person.username, "manager", token=access(user_tokens, "mgr1")
    )
    line = one_error_line(result)
    assert line.startswith("error: 403 privileged_role: ")
    assert "[request " in line


@pytest.mark.keycloak
@pytest.mark.redis
def test_invalid_fields_are_named_in_the_error_line(
    live_stack: LiveStack, user_tokens: TokenSource
) -> None:
    """A 422 names each refused field, still on one line."""
    result = cli(
        live_stack,
        "users",
        "create",
        "--username",
        "no spaces allowed",
        "--email",
        "not-an-email",
        "--first-name",
        "Val",
        "--last-name",
        "Idation",
        token=access(user_tokens, "mgr1"),
    )
    line = one_error_line(result)
    assert line.startswith("error: 422 validation_failed: ")
    assert "body.username: " in line
    assert "body.email: " in line


@pytest.mark.keycloak
@pytest.mark.redis
def test_an_unknown_username_is_reported(live_stack: LiveStack, user_tokens: TokenSource) -> None:
    """A name that matches nobody is an error before anything is changed."""
    result = cli(live_stack, "users", "disable", unique("ghost"), token=access(user_tokens, "mgr1"))
    assert "No user with the username or email" in one_error_line(result)


# --- audit ---------------------------------------------------------------------------------


@pytest.mark.keycloak
@pytest.mark.redis
def test_audit_search_shows_a_refused_request(
    live_stack: LiveStack, user_tokens: TokenSource
) -> None:
    """A technician's refused admin request appears in the manager's audit table."""
    tech = access(user_tokens, "tech1")
    refused = cli(live_stack, "audit", "search", token=tech)
    assert one_error_line(refused).startswith("error: 403 permission_denied: ")
    tech_sub = str(jwt_claims(tech)["sub"])
    deadline = time.monotonic() + AUDIT_WAIT_SECONDS
    while True:
        found = cli(
            live_stack,
            "audit",
            "search",
            "--actor",
            tech_sub,
            "--action",
            "auth.permission_denied",
            "--since",
            "10m",
            token=access(user_tokens, "mgr1"),
        )
        assert found.exit_code == 0, found.output
        rows = found.stdout.splitlines()[1:]
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # the audit queue writes in the gateway process; nothing to inject
    assert found.stdout.split()[:7] == [
        "AT",
        "ACTION",
        "OUTCOME",
        "ACTOR",
        "TARGET",
        "REASON",
        "REQUEST",
    ]
    assert any("auth.permission_denied" in row and "audit:read" in row for row in rows), rows


@pytest.mark.keycloak
@pytest.mark.redis
def test_a_service_account_gets_its_token_from_keycloak_and_is_refused(
    live_stack: LiveStack, dev_credentials: dict[str, Any]
) -> None:
    """--client-id exchanges the secret at the real Keycloak; the service may not read audit."""
    secret = next(
        c["client_secret"]
        for c in dev_credentials["clients"]
        if c["client_id"] == "mro-planning-sync"
    )
    result = cli(
        live_stack,
        "audit",
        "--client-id",
        "mro-planning-sync",
        "--keycloak-url",
        live_stack.keycloak_url,
        "search",
        MRO_ADMIN_CLIENT_SECRET=secret,
    )
    assert "403 permission_denied: This needs the permission audit:read." in one_error_line(result)


# --- usage ---------------------------------------------------------------------------------


@pytest.mark.keycloak
@pytest.mark.redis
def test_usage_report_sums_a_technicians_question(
    live_stack: LiveStack, user_tokens: TokenSource
) -> None:
    """After one answered question the manager's report has tech1's tokens on that agent."""
    tech = access(user_tokens, "tech1")
    tech_sub = str(jwt_claims(tech)["sub"])
    with live_stack.client(headers={"Authorization": f"Bearer {tech}"}) as client:
        conversation = client.post("/api/conversations", json={"title": "usage"}).json()
        answer = client.post(
            f"/api/conversations/{conversation['id']}/messages",
            json={"content": "Where is the APU starter in the IPC?", "agent": "documentation"},
        )
        assert answer.status_code == 201, answer.text
    spent = answer.json()["assistant_message"]["usage"]["total_tokens"]
    manager = access(user_tokens, "mgr1")
    report = cli(
        live_stack, "usage", "report", "--subject", tech_sub, "--group-by", "subject,agent",
        "--json", token=manager,
    )  # fmt: skip
    assert report.exit_code == 0, report.output
    items = json.loads(report.stdout)["items"]
    documentation = next(item for item in items if item["agent"] == "documentation")
    assert documentation["label"] == "tech1"
    assert documentation["total_tokens"] >= spent > 0

    table = cli(
        live_stack, "usage", "report", "--subject", tech_sub, "--group-by", "agent", token=manager
    )
    assert table.exit_code == 0, table.output
    heading, *rows, summary = table.stdout.splitlines()
    assert heading.split() == [
        "AGENT", "REQUESTS", "PROMPT", "TOKENS", "COMPLETION", "TOKENS", "TOTAL", "TOKENS",
        "CHARGED", "TOKENS",
    ]  # fmt: skip
    assert any(row.split()[0] == "documentation" for row in rows)
    assert " requests, " in summary


@pytest.mark.keycloak
@pytest.mark.redis
def test_usage_report_refuses_a_bad_grouping(
    live_stack: LiveStack, user_tokens: TokenSource
) -> None:
    """An unknown group name is the gateway's 400 bad_group_by, on one line."""
    result = cli(
        live_stack, "usage", "report", "--group-by", "colour", token=access(user_tokens, "mgr1")
    )
    assert one_error_line(result).startswith("error: 400 bad_group_by: ")
