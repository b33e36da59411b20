"""``mro-admin`` over HTTP: the connection to the gateway, its answers as tables, and the
reports (``audit search``, ``usage report``).

Commands authenticate with the bearer token in ``MRO_ADMIN_TOKEN`` or, given a client id and
secret, with a token obtained once per command by the client-credentials grant from Keycloak.
A problem+json answer becomes one line on stderr (``error: 403 permission_denied: …``) and exit
status 1; so does a gateway or Keycloak that cannot be reached. ``--json`` prints the gateway's
answer as it came, for scripts; without it the answer is a table for people.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import typer

TIMEOUT = httpx.Timeout(10.0)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the gateway's JSON answer.")]


class CliError(Exception):
    """A failure to report on stderr with exit status 1."""


def fail(message: str) -> typer.Exit:
    """Print message as an error line; the Exit(1) to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@dataclass
class Connection:
    """Where the gateway is and how to authenticate to it."""

    gateway_url: str
    token: str | None
    client_id: str | None
    client_secret: str | None
    keycloak_url: str
    realm: str
    _exchanged: str | None = field(default=None, repr=False)

    def bearer(self, http: httpx.Client) -> str:
        """The access token to send: one from the client-credentials grant, or MRO_ADMIN_TOKEN.

        Raises CliError when there is neither, or Keycloak refuses the client.
        """
        if self.client_id and self.client_secret:
            if self._exchanged is None:
                self._exchanged = _client_credentials(http, self)
            return self._exchanged
        if self.token:
            return self.token
        raise CliError("Set MRO_ADMIN_TOKEN, or give --client-id and --client-secret.")

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call the gateway at path; the decoded JSON answer (None for 204).

        Raises CliError for an error answer (as one line) or an unreachable server.
        """
        query = {name: value for name, value in (params or {}).items() if value is not None}
        with httpx.Client(timeout=TIMEOUT, trust_env=False) as http:
            headers = {"Authorization": f"Bearer {self.bearer(http)}"}
            url = f"{self.gateway_url.rstrip('/')}{path}"
            try:
                response = http.request(method, url, json=body, params=query, headers=headers)
            except httpx.HTTPError as exc:
                raise CliError(f"Cannot reach the gateway at {self.gateway_url}: {exc}") from exc
        if response.status_code >= 400:
            raise CliError(problem_line(response))
        if response.status_code == 204 or not response.content:
            return None
        return response.json()


def problem_line(response: httpx.Response) -> str:
    """An error answer in one line: status, code, detail, invalid fields and request id."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return f"{response.status_code} {response.reason_phrase}"
    line = f"{response.status_code} {body.get('code', '')}: {body.get('detail', '')}".rstrip()
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        fields = [
            f"{'.'.join(str(part) for part in error.get('loc', []))}: {error.get('msg', '')}"
            for error in errors
            if isinstance(error, dict)
        ]
        line += " (" + "; ".join(fields) + ")"
    if request_id := body.get("request_id"):
        line += f" [request {request_id}]"
    return line


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


def call(
    ctx: typer.Context,
    method: str,
    path: str,
    body: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> Any:
    """Connection.request with the command's connection; CliError ends the command (exit 1)."""
    conn: Connection = ctx.obj
    try:
        return conn.request(method, path, body, params)
    except CliError as exc:
        raise fail(str(exc)) from None


def connection_options(
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


@dataclass(frozen=True)
class Column:
    """A table column: its heading and how to get the cell from a row."""

    heading: str
    value: Callable[[Mapping[str, Any]], Any]

    @classmethod
    def of(cls, key: str, heading: str | None = None) -> Column:
        return cls(heading or key.upper().replace("_", " "), lambda row: row.get(key))


def cell(value: Any) -> str:
    """A value as table text: '-' for nothing, lists joined, timestamps to the second."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(cell(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    text = str(value)
    # ISO 8601 timestamps from the gateway: seconds are precise enough for people.
    if len(text) > 20 and text[4:5] == "-" and text[10:11] == "T":
        return text[:19] + "Z"
    return text


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> None:
    """Rows under a heading line, columns aligned (the last one is not padded)."""
    cells = [[column.heading for column in columns]]
    cells += [[cell(column.value(row)) for column in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        padded = [text.ljust(width) for text, width in zip(line[:-1], widths, strict=False)]
        typer.echo("  ".join([*padded, line[-1]]))


def print_json(data: Any) -> None:
    """The gateway's answer as indented JSON (nothing for an empty answer)."""
    if data is not None:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


# --- read-only commands -------------------------------------------------------------------

audit_app = typer.Typer(help="Search the audit log.", no_args_is_help=True)
usage_app = typer.Typer(help="Token usage of callers and agents.", no_args_is_help=True)
audit_app.callback()(connection_options)
usage_app.callback()(connection_options)

_RELATIVE = re.compile(r"^(\d{1,6})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def moment(value: str | None, now: datetime | None = None) -> str | None:
    """ISO 8601 for the gateway: a time as given (UTC when it has no zone), or an age (2h, 7d).

    Raises typer.BadParameter for anything else.
    """
    if value is None:
        return None
    if match := _RELATIVE.match(value.strip()):
        amount, unit = int(match.group(1)), _UNITS[match.group(2)]
        return ((now or datetime.now(UTC)) - timedelta(**{unit: amount})).isoformat()
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            "use ISO 8601 (2026-05-01T08:00) or an age (15m, 2h, 7d)"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()


def _moment_option(value: str | None) -> str | None:
    return moment(value)


AUDIT_COLUMNS = [
    *(Column.of(key) for key in ("at", "action", "outcome", "actor", "target", "reason")),
    Column.of("request_id", "REQUEST"),
]


@audit_app.command("search")
def audit_search(
    ctx: typer.Context,
    actor: Annotated[str | None, typer.Option(help="Subject who acted.")] = None,
    action: Annotated[
        str | None, typer.Option(help="An action, or a family such as 'users.*'.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(callback=_moment_option, help="From this time on (or an age: 2h).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(callback=_moment_option, help="Before this time (or an age).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Audit events, newest first."""
    params = {"actor": actor, "action": action, "since": since, "until": until, "limit": limit}
    page = call(ctx, "GET", "/api/admin/audit", params=params)
    if as_json:
        print_json(page)
    else:
        print_table(page["items"], AUDIT_COLUMNS)


_GROUPS = ("subject", "kind", "label", "agent", "day", "tier")
_COUNTS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "charged_tokens")


@usage_app.command("report")
def usage_report(
    ctx: typer.Context,
    first: Annotated[
        str | None, typer.Option("--from", help="First day, YYYY-MM-DD (UTC); default: the 1st.")
    ] = None,
    last: Annotated[str | None, typer.Option("--to", help="Last day (included); today.")] = None,
    group_by: Annotated[
        list[str] | None,
        typer.Option(help="subject, agent, day, kind, tier (repeat or comma-separate)."),
    ] = None,
    subject: Annotated[str | None, typer.Option(help="Only this caller.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only user, service or api_key.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Tokens spent, summed per group (default: subject and agent), largest first."""
    groups = ",".join(part for value in group_by or [] for part in value.split(",") if part)
    filters = {"subject": subject, "agent": agent, "kind": kind}
    params = {"from": first, "to": last, "group_by": groups or None, **filters}
    report = call(ctx, "GET", "/api/admin/usage", params=params)
    if as_json:
        print_json(report)
        return
    rows: list[dict[str, Any]] = report["items"]
    shown = [key for key in _GROUPS if any(row.get(key) is not None for row in rows)]
    print_table(rows, [Column.of(key) for key in (*shown, *_COUNTS)])
    typer.echo(
        f"{report['from']} to {report['to']}: {report['requests']} requests, "
        f"{report['total_tokens']} tokens ({report['charged_tokens']} charged)"
    )
