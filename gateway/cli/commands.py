"""``mro-admin``: operators' command line for API keys, users, audit, usage and health.

``api-keys`` and ``users`` change things through the gateway's admin API, ``audit`` and
``usage`` read it (``gateway.cli.client``, which also holds the connection and the output),
``health`` asks the gateway's probes, ``keys`` and ``policy`` work offline. Secrets are best
passed through the environment (``MRO_ADMIN_TOKEN``, ``MRO_ADMIN_CLIENT_SECRET``) rather than on
the command line, where other users of the machine can see them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer

from gateway.auth.api_keys import Peppers
from gateway.cli.client import (
    TIMEOUT,
    Column,
    JsonOption,
    audit_app,
    call,
    connection_options,
    fail,
    print_json,
    print_table,
    problem_line,
    usage_app,
)
from gateway.policy.policy_file import Policy, PolicyError
from gateway.proxy.assertion import generate_signing_key_pem

__all__ = ["app", "policy_markdown"]

app = typer.Typer(help="Administer the MRO gateway.", no_args_is_help=True)
api_keys_app = typer.Typer(help="Create, list, rotate and revoke API keys.", no_args_is_help=True)
users_app = typer.Typer(help="Invite people, give and take roles.", no_args_is_help=True)
keys_app = typer.Typer(
    help="Keys that sign the gateway's identity assertions, and the API-key pepper.",
    no_args_is_help=True,
)
policy_app = typer.Typer(help="The authorisation policy.", no_args_is_help=True)
api_keys_app.callback()(connection_options)
users_app.callback()(connection_options)
app.add_typer(api_keys_app, name="api-keys")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
app.add_typer(usage_app, name="usage")
app.add_typer(keys_app, name="keys")
app.add_typer(policy_app, name="policy")

KEYS = "/api/admin/api-keys"
USERS = "/api/admin/users"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

KEY_COLUMNS = [
    Column.of(name) for name in ("id", "status", "name", "owner_sub", "expires_at", "last_used_at")
]
USER_COLUMNS = [
    *(Column.of(key) for key in ("id", "username", "email")),
    Column("NAME", lambda row: " ".join(filter(None, (row["first_name"], row["last_name"])))),
    *(Column.of(key) for key in ("roles", "enabled")),
    Column.of("required_actions", "PENDING"),
]


def _show(answer: Any, rows: list[dict[str, Any]], columns: list[Column], as_json: bool) -> None:
    if as_json:
        print_json(answer)
    else:
        print_table(rows, columns)


def _show_created_key(created: dict[str, Any], note: str, as_json: bool) -> None:
    if as_json:
        print_json(created)
        return
    typer.echo(f"id:      {created['id']}{note}\nexpires: {created['expires_at']}")
    typer.echo(f"key:     {created['key']}\nStore the key now: it is not shown again.")


@api_keys_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="What the key is for.")],
    permission: Annotated[
        list[str], typer.Option("--permission", "-p", help="A permission (repeat).")
    ],
    role: Annotated[list[str] | None, typer.Option("--role", help="A role (repeat).")] = None,
    expires_in_days: Annotated[int, typer.Option(min=1, max=365)] = 90,
    as_json: JsonOption = False,
) -> None:
    """Create a key; it is printed once and cannot be shown again."""
    body = {"name": name, "permissions": permission, "expires_in_days": expires_in_days}
    roles = {"roles": role} if role else {}
    _show_created_key(call(ctx, "POST", KEYS, {**body, **roles}), "", as_json)


@api_keys_app.command("list")
def list_keys(
    ctx: typer.Context,
    owner: Annotated[str | None, typer.Option(help="Only this owner's keys (subject).")] = None,
    as_json: JsonOption = False,
) -> None:
    """List keys (never their secrets)."""
    page = call(ctx, "GET", KEYS, params={"owner": owner})
    _show(page, page["items"], KEY_COLUMNS, as_json)


@api_keys_app.command("rotate")
def rotate(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    grace_hours: Annotated[int, typer.Option(min=0, max=168)] = 24,
    as_json: JsonOption = False,
) -> None:
    """Replace a key; the old one keeps working for the grace period."""
    created = call(ctx, "POST", f"{KEYS}/{key_id}/rotate", {"grace_hours": grace_hours})
    _show_created_key(created, f" (replaces {key_id} after {grace_hours} h)", as_json)


@api_keys_app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a key now."""
    key = call(ctx, "POST", f"{KEYS}/{key_id}/revoke")
    _show(key, [key], KEY_COLUMNS, as_json)


UserArg = Annotated[str, typer.Argument(help="The user's id, username or email.")]


def _user_id(ctx: typer.Context, reference: str) -> str:
    """The Keycloak id of a user named by id, username or email (exact, case-insensitive)."""
    if _UUID.match(reference):
        return reference
    wanted = reference.strip().lower()
    page = call(ctx, "GET", USERS, params={"q": wanted, "limit": 100})
    for user in page["items"]:
        if wanted in (user["username"], (user.get("email") or "").lower()):
            return str(user["id"])
    raise fail(f"No user with the username or email {reference!r}.")


@users_app.command("list")
def users_list(
    ctx: typer.Context,
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="Start of username, email or name.")
    ] = None,
    role: Annotated[str | None, typer.Option(help="Only holders of this role.")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="Only enabled (disabled) users.")
    ] = None,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    as_json: JsonOption = False,
) -> None:
    """Users with their effective roles."""
    params = {"q": query, "role": role, "enabled": enabled, "offset": offset, "limit": limit}
    page = call(ctx, "GET", USERS, params=params)
    _show(page, page["items"], USER_COLUMNS, as_json)
    if not as_json and page.get("total") is not None:
        typer.echo(f"{len(page['items'])} of {page['total']} (from {offset})")


@users_app.command("create")
def users_create(
    ctx: typer.Context,
    username: Annotated[str, typer.Option(help="3-64 of a-z 0-9 . _ @ -")],
    email: Annotated[str, typer.Option(help="Where Keycloak sends the invitation.")],
    first_name: Annotated[str, typer.Option()],
    last_name: Annotated[str, typer.Option()],
    role: Annotated[str, typer.Option(help="technician or engineer.")] = "technician",
    employee_id: Annotated[str | None, typer.Option()] = None,
    licence_number: Annotated[str | None, typer.Option()] = None,
    base_station: Annotated[str | None, typer.Option(help="IATA or ICAO code.")] = None,
    department: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOption = False,
) -> None:
    """Invite a person: no password is set, Keycloak mails them how to set one."""
    body = {
        "username": username,
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "role": role,
        "employee_id": employee_id,
        "licence_number": licence_number,
        "base_station": base_station,
        "department": department,
    }
    created = call(ctx, "POST", USERS, {k: v for k, v in body.items() if v is not None})
    _show(created, [created], USER_COLUMNS, as_json)
    if not as_json and not created["invitation_sent"]:
        typer.echo("The invitation mail was not sent: resend it from Keycloak's admin console.")


def _act(ctx: typer.Context, method: str, reference: str, suffix: str, as_json: bool) -> None:
    user_id = _user_id(ctx, reference)
    user = call(ctx, method, f"{USERS}/{user_id}{suffix}")
    _show(user, [user], USER_COLUMNS, as_json)


@users_app.command("grant")
def users_grant(ctx: typer.Context, user: UserArg, role: str, as_json: JsonOption = False) -> None:
    """Give a role (manager and admin need users:manage:privileged)."""
    _act(ctx, "PUT", user, f"/roles/{quote(role, safe='')}", as_json)


@users_app.command("revoke")
def users_revoke(ctx: typer.Context, user: UserArg, role: str, as_json: JsonOption = False) -> None:
    """Take a role away; the user's sessions end."""
    _act(ctx, "DELETE", user, f"/roles/{quote(role, safe='')}", as_json)


@users_app.command("disable")
def users_disable(ctx: typer.Context, user: UserArg, as_json: JsonOption = False) -> None:
    """Disable an account; its sessions end at once."""
    _act(ctx, "POST", user, "/disable", as_json)


@users_app.command("enable")
def users_enable(ctx: typer.Context, user: UserArg, as_json: JsonOption = False) -> None:
    """Enable an account again."""
    _act(ctx, "POST", user, "/enable", as_json)


@users_app.command("logout")
def users_logout(ctx: typer.Context, user: UserArg) -> None:
    """End all of a user's sessions."""
    call(ctx, "POST", f"{USERS}/{_user_id(ctx, user)}/logout")
    typer.echo(f"Every session of {user} has ended.")


@app.command("health")
def health(
    gateway_url: Annotated[
        str, typer.Option(envvar="MRO_ADMIN_GATEWAY_URL", help="The gateway's base URL.")
    ] = "http://127.0.0.1:8000",
    as_json: JsonOption = False,
) -> None:
    """Ask /healthz and /readyz; exit status 1 unless the gateway is ready."""
    base = gateway_url.rstrip("/")
    try:
        with httpx.Client(timeout=TIMEOUT, trust_env=False) as http:
            live = http.get(f"{base}/healthz")
            ready = http.get(f"{base}/readyz")
            checks = ready.json().get("checks", {})
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise fail(f"Cannot reach the gateway at {gateway_url}: {exc}") from None
    state = {"live": live.status_code == 200, "ready": ready.status_code == 200, "checks": checks}
    if as_json:
        print_json(state)
    else:
        rows = [{"check": "process", "ok": state["live"]}]
        rows += [{"check": name, "ok": ok} for name, ok in checks.items()]
        print_table(rows, [Column.of("check"), Column.of("ok")])
        typer.echo("ready" if state["ready"] else f"not ready: {problem_line(ready)}")
    if not state["ready"]:
        raise typer.Exit(1)


@keys_app.command("generate")
def generate() -> None:
    """Print a new ES256 (P-256) private key as PEM for MRO_GATEWAY_ASSERTION_SIGNING_KEYS."""
    sys.stdout.write(generate_signing_key_pem())


@keys_app.command("pepper-version")
def pepper_version(
    pepper: Annotated[
        str, typer.Option(envvar="MRO_GATEWAY_API_KEY_PEPPER", prompt=True, hide_input=True)
    ],
) -> None:
    """Print a pepper's fingerprint, as stored in api_keys.pepper_version (docs/rotation.md)."""
    typer.echo(Peppers(pepper).current_version)


def policy_markdown(policy: Policy) -> str:
    """The role/permission matrix and the route table as Markdown (docs/authorization.md)."""
    roles = list(policy.roles)
    lines = [
        "| permission | " + " | ".join(roles) + " | what |",
        "| --- | " + " | ".join(":-:" for _ in roles) + " | --- |",
    ]
    for row in policy.policy_matrix():
        marks = " | ".join("✓" if role in row.roles else "" for role in roles)
        lines.append(f"| `{row.permission}` | {marks} | {row.description} |")
    lines += ["", "| methods | path | needs | upstream | notes |", "| --- " * 5 + "|"]
    for rule in policy.routes:
        needs = "public" if rule.public else f"`{rule.permission}`"
        notes = ["LLM limits"] if rule.llm else []
        if rule.environments is not None:
            notes.append("only in " + ", ".join(sorted(rule.environments)))
        cells = (", ".join(sorted(rule.methods)), f"`{rule.path}`", needs, rule.upstream)
        lines.append("| " + " | ".join((*cells, "; ".join(notes))) + " |")
    return "\n".join(lines) + "\n"


@policy_app.command("matrix")
def matrix(
    policy_file: Annotated[
        Path | None, typer.Option(help="A policy file (default: the packaged one).")
    ] = None,
) -> None:
    """Print the role/permission matrix and the route table as Markdown."""
    try:
        policy = Policy.load(policy_file)
    except (PolicyError, OSError) as exc:
        raise fail(str(exc)) from None
    typer.echo(policy_markdown(policy), nl=False)
