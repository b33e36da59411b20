"""``mro-admin``: operators' command line for API keys, assertion keys and the policy.

``api-keys`` commands call the gateway's admin API over HTTP. They authenticate with the bearer
token in ``MRO_ADMIN_TOKEN`` or, given a client id and secret, with a token obtained by the
client-credentials grant from Keycloak. Secrets are best passed through the environment
(``MRO_ADMIN_CLIENT_SECRET``) rather than on the command line, where other users can see them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from gateway.assertion import generate_signing_key_pem
from gateway.policy import Policy, PolicyError

__all__ = ["app", "policy_markdown"]

app = typer.Typer(help="Administer the MRO gateway.", no_args_is_help=True)
api_keys_app = typer.Typer(help="Create, list, rotate and revoke API keys.", no_args_is_help=True)
keys_app = typer.Typer(
    help="Keys that sign the gateway's identity assertions.", no_args_is_help=True
)
policy_app = typer.Typer(help="The authorisation policy.", no_args_is_help=True)
app.add_typer(api_keys_app, name="api-keys")
app.add_typer(keys_app, name="keys")
app.add_typer(policy_app, name="policy")

TIMEOUT = httpx.Timeout(10.0)


class CliError(Exception):
    """A failure to report on stderr with a non-zero exit status."""


@dataclass
class Connection:
    """Where the gateway is and how to authenticate to it."""

    gateway_url: str
    token: str | None
    client_id: str | None
    client_secret: str | None
    keycloak_url: str
    realm: str

    def bearer(self, http: httpx.Client) -> str:
        """The access token to send: MRO_ADMIN_TOKEN, or one from the client-credentials grant."""
        if self.client_id and self.client_secret:
            return _client_credentials(http, self)
        if self.token:
            return self.token
        raise CliError("Set MRO_ADMIN_TOKEN, or give --client-id and --client-secret.")

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the admin API; the decoded JSON answer (None for 204)."""
        with httpx.Client(timeout=TIMEOUT) as http:
            headers = {"Authorization": f"Bearer {self.bearer(http)}"}
            url = f"{self.gateway_url.rstrip('/')}/api/admin/api-keys{path}"
            try:
                response = http.request(method, url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                raise CliError(f"Cannot reach the gateway at {self.gateway_url}: {exc}") from exc
        if response.status_code >= 400:
            raise CliError(_problem(response))
        return None if response.status_code == 204 else response.json()


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{response.status_code} {body.get('code', '')}: {body.get('detail', '')}"
    except ValueError:
        return f"{response.status_code} {response.reason_phrase}"


def _client_credentials(http: httpx.Client, conn: Connection) -> str:
    issuer = f"{conn.keycloak_url.rstrip('/')}/realms/{conn.realm}"
    try:
        discovery = http.get(f"{issuer}/.well-known/openid-configuration")
        discovery.raise_for_status()
        response = http.post(
            discovery.json()["token_endpoint"],
            data={"grant_type": "client_credentials"},
            auth=(conn.client_id or "", conn.client_secret or ""),
        )
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise CliError(f"Cannot reach Keycloak at {conn.keycloak_url}: {exc}") from exc
    if response.status_code != 200:
        raise CliError(f"Keycloak refused the client credentials ({response.status_code}).")
    token = response.json().get("access_token")
    if not isinstance(token, str):
        raise CliError("Keycloak's answer carries no access token.")
    return token


def _run(conn: Connection, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    try:
        return conn.request(method, path, body)
    except CliError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _print(data: Any, as_json: bool, fields: tuple[str, ...]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    rows = data.get("items", [data])
    for row in rows:
        typer.echo("  ".join(str(row.get(name) or "-") for name in fields))


@api_keys_app.callback()
def connection(
    ctx: typer.Context,
    gateway_url: Annotated[
        str, typer.Option(envvar="MRO_ADMIN_GATEWAY_URL", help="The gateway's base URL.")
    ] = "http://127.0.0.1:8000",
    client_id: Annotated[
        str | None, typer.Option(envvar="MRO_ADMIN_CLIENT_ID", help="Keycloak client id.")
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(envvar="MRO_ADMIN_CLIENT_SECRET", help="Client secret (prefer the env var)."),
    ] = None,
    keycloak_url: Annotated[
        str, typer.Option(envvar="MRO_ADMIN_KEYCLOAK_URL", help="Keycloak's base URL.")
    ] = "http://127.0.0.1:8080",
    realm: Annotated[str, typer.Option(help="Keycloak realm.")] = "mro",
    token: Annotated[
        str | None, typer.Option(envvar="MRO_ADMIN_TOKEN", hidden=True, show_default=False)
    ] = None,
) -> None:
    """Where the gateway is and which credential to use."""
    ctx.obj = Connection(gateway_url, token, client_id, client_secret, keycloak_url, realm)


LIST_FIELDS = ("id", "status", "name", "owner_sub", "expires_at", "last_used_at")
JsonOption = Annotated[bool, typer.Option("--json", help="Print the gateway's JSON answer.")]


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
    body: dict[str, Any] = {
        "name": name,
        "permissions": permission,
        "expires_in_days": expires_in_days,
    }
    if role:
        body["roles"] = role
    created = _run(ctx.obj, "POST", "", body)
    if as_json:
        _print(created, True, ())
        return
    typer.echo(f"id:      {created['id']}\nexpires: {created['expires_at']}")
    typer.echo(f"key:     {created['key']}\nStore the key now: it is not shown again.")


@api_keys_app.command("list")
def list_keys(
    ctx: typer.Context,
    owner: Annotated[str | None, typer.Option(help="Only this owner's keys (subject).")] = None,
    as_json: JsonOption = False,
) -> None:
    """List keys (never their secrets)."""
    suffix = f"?{httpx.QueryParams(owner=owner)}" if owner else ""
    _print(_run(ctx.obj, "GET", suffix), as_json, LIST_FIELDS)


@api_keys_app.command("rotate")
def rotate(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    grace_hours: Annotated[int, typer.Option(min=0, max=168)] = 24,
    as_json: JsonOption = False,
) -> None:
    """Replace a key; the old one keeps working for the grace period."""
    created = _run(ctx.obj, "POST", f"/{key_id}/rotate", {"grace_hours": grace_hours})
    if as_json:
        _print(created, True, ())
        return
    typer.echo(f"id:      {created['id']} (replaces {key_id} after {grace_hours} h)")
    typer.echo(f"key:     {created['key']}\nStore the key now: it is not shown again.")


@api_keys_app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a key now."""
    _print(_run(ctx.obj, "POST", f"/{key_id}/revoke"), as_json, LIST_FIELDS)


@keys_app.command("generate")
def generate() -> None:
    """Print a new ES256 (P-256) private key as PEM for MRO_GATEWAY_ASSERTION_SIGNING_KEYS."""
    sys.stdout.write(generate_signing_key_pem())


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
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(policy_markdown(policy), nl=False)
