"""Write docs/configuration.md from the services' settings classes and mro-admin's options.

    uv run python scripts/gen_config_docs.py           # rewrite the page
    uv run python scripts/gen_config_docs.py --check   # exit status 1 when the page is stale

Names, types and defaults come from the classes themselves; the descriptions are kept here, keyed
by environment variable (the settings modules carry none). tests/test_config_docs.py fails when
a field has no description, a description names no field, or the page differs from this output.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
import typer.main
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from gateway.browser.sessions import SessionSettings
from gateway.cli.commands import app as admin_app
from gateway.settings import GatewaySettings
from orchestrator.fake_azure.settings import FakeAzureSettings
from orchestrator.settings import OrchestratorSettings

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "configuration.md"

# What each variable does, by variable; one sentence or two, for the page's last column.
DESCRIPTIONS: dict[str, str] = {
    # gateway/settings.py
    "MRO_GATEWAY_ENVIRONMENT": "`production` refuses development secrets and hides `/docs` "
    "and `/openapi.json`.",
    "MRO_GATEWAY_HOST": "Address `mro-gateway` listens on (`0.0.0.0` in a container).",
    "MRO_GATEWAY_PORT": "Port `mro-gateway` listens on.",
    "MRO_GATEWAY_PUBLIC_URL": "The gateway's URL as browsers see it: login callback, HSTS when "
    "https, `X-Forwarded-Proto`/`-Host` sent upstream, origin of CSRF checks.",
    "MRO_GATEWAY_LOG_LEVEL": "Level of the JSON log lines on stderr.",
    "MRO_GATEWAY_KEYCLOAK_URL": "Keycloak's base URL; with the realm it makes the issuer that "
    "tokens must carry, so it must be the URL browsers use too.",
    "MRO_GATEWAY_KEYCLOAK_REALM": "The realm whose tokens are accepted.",
    "MRO_GATEWAY_CLIENT_ID": "The gateway's confidential client: browser login and its service "
    "account for user administration.",
    "MRO_GATEWAY_CLIENT_SECRET": "That client's secret. Required in production.",
    "MRO_GATEWAY_AUDIENCE": "Value a bearer token's `aud` must contain.",
    "MRO_GATEWAY_JWT_ALGORITHMS": "Signature algorithms accepted on bearer tokens (asymmetric "
    "only; `none` and `HS*` are always refused).",
    "MRO_GATEWAY_JWT_LEEWAY_SECONDS": "Clock skew allowed on `exp`, `nbf` and `iat` of tokens.",
    "MRO_GATEWAY_JWKS_CACHE_SECONDS": "How long Keycloak's signing keys are used before they are "
    "fetched again.",
    "MRO_GATEWAY_JWKS_REFETCH_COOLDOWN_SECONDS": "At most one refetch of Keycloak's keys per "
    "this many seconds when a token names an unknown `kid`.",
    "MRO_GATEWAY_ORCHESTRATOR_URL": "Where orchestrator routes are proxied to.",
    "MRO_GATEWAY_UPSTREAM_CONNECT_TIMEOUT_SECONDS": "Connect and pool timeout towards the "
    "orchestrator (503 when exceeded).",
    "MRO_GATEWAY_UPSTREAM_READ_TIMEOUT_SECONDS": "Read and write timeout towards the "
    "orchestrator (504 when exceeded); long, for streamed model answers.",
    "MRO_GATEWAY_UPSTREAM_POOL_SIZE": "Pooled connections to the orchestrator.",
    "MRO_GATEWAY_ASSERTION_ISSUER": "`iss` of the identity assertions sent to the orchestrator.",
    "MRO_GATEWAY_ASSERTION_AUDIENCE": "`aud` of the identity assertions.",
    "MRO_GATEWAY_ASSERTION_LIFETIME_SECONDS": "Lifetime of one identity assertion.",
    "MRO_GATEWAY_ASSERTION_REUSE_SECONDS": "How long one signed assertion is sent again for the "
    "same identity (same claims); unset: a sixth of the lifetime; 0: a signature per request; at "
    "most half the lifetime.",
    "MRO_GATEWAY_ASSERTION_SIGNING_KEYS": "ES256 private keys (PEM, from `mro-admin keys "
    "generate`): the first signs, all are published at `/.well-known/jwks.json`. Required in "
    "production; in development an ephemeral key is made at start.",
    "MRO_GATEWAY_DATABASE_URL": "API keys, audit and token usage: `sqlite+aiosqlite:///…` or "
    "`postgresql+asyncpg://user:password@host:5432/db`.",
    "MRO_GATEWAY_REDIS_URL": "Sessions, rate limits, token budgets, revoked sessions "
    "(`rediss://` for TLS).",
    "MRO_GATEWAY_API_KEY_PEPPER": "HMAC key under which API-key secrets are stored. Required in "
    "production (the development value is refused).",
    "MRO_GATEWAY_API_KEY_PREVIOUS_PEPPERS": "Earlier peppers, still accepted; keys are re-hashed "
    "with the current pepper when next used.",
    "MRO_GATEWAY_API_KEY_CACHE_SECONDS": "How long a verified API key is cached per process (a "
    "key revoked on another replica works here for up to this long).",
    "MRO_GATEWAY_API_KEY_OWNER_FRESH_SECONDS": "How long an API key owner's standing read from "
    "Keycloak (enabled, roles) is trusted before it is read again; any change to the owner that "
    "the gateway hears of drops it at once.",
    "MRO_GATEWAY_ADMIN_EVENTS_POLL_SECONDS": "How often one replica reads the realm's admin "
    "events, so that changes made in Keycloak's console revoke people's credentials (`0`: never).",
    "MRO_GATEWAY_POLICY_FILE": "Roles, permissions, routes, rate limits and budgets; unset: the "
    "packaged `gateway/policy/policy.toml`.",
    "MRO_GATEWAY_TRUSTED_PROXIES": "CIDRs of proxies whose `X-Forwarded-For` and `X-Request-ID` "
    "are believed.",
    "MRO_GATEWAY_MAX_BODY_BYTES": "Largest request body (413 beyond).",
    "MRO_GATEWAY_MAX_HEADER_BYTES": "Largest total of request header field names and values "
    "(431 beyond). The server buffers the head before the gateway sees it: bound it at the "
    "ingress too.",
    "MRO_GATEWAY_MAX_HEADER_FIELDS": "Most request header fields (431 beyond).",
    "MRO_GATEWAY_CORS_ALLOWED_ORIGINS": "Exact origins allowed to call cross-origin.",
    "MRO_GATEWAY_AUDIT_SPOOL_DIR": "Folder of the audit journal (each event is written there "
    "before its answer goes out) and of the spool where events wait while the database is down; "
    "keep it on a volume that outlives the process.",
    # gateway/browser/sessions.py
    "MRO_GATEWAY_SESSION_COOKIE_SECURE": "`false` only for plain http on loopback in "
    "development (drops `Secure` and the `__Host-` prefix); refused in production.",
    "MRO_GATEWAY_SESSION_IDLE_SECONDS": "A browser session ends after this long without a request.",
    "MRO_GATEWAY_SESSION_MAX_SECONDS": "A browser session ends this long after login, however "
    "active.",
    "MRO_GATEWAY_SESSION_TOUCH_SECONDS": "How often a session's last-seen time is written.",
    "MRO_GATEWAY_REFRESH_MARGIN_SECONDS": "Refresh a session's access token when it expires "
    "within this.",
    "MRO_GATEWAY_REFRESH_LOCK_SECONDS": "Lifetime of the per-session refresh lock in Redis.",
    "MRO_GATEWAY_REFRESH_WAIT_SECONDS": "How long a request waits for another process's refresh.",
    "MRO_GATEWAY_LOGIN_STATE_SECONDS": "How long a started login may take.",
    "MRO_GATEWAY_ACCESS_TOKEN_LIFETIME_SECONDS": "Keycloak's access token lifespan: how long a "
    "logged-out session id or a person's revocation is remembered.",
    "MRO_GATEWAY_REVOCATION_CACHE_SECONDS": "How long a replica trusts its last look at the "
    "revocations of one person and session, and at an API key owner's standing (`0` turns it "
    "off).",
    "MRO_GATEWAY_LOGOUT_TOKEN_MAX_AGE_SECONDS": "Oldest `iat` a back-channel logout token may "
    "have.",
    "MRO_GATEWAY_POST_LOGOUT_REDIRECT_PATH": "Where Keycloak sends the browser after logout.",
    "MRO_GATEWAY_REDIS_PREFIX": "Prefix of the session, login, revocation, standing and "
    "admin-event keys in Redis.",
    # orchestrator/settings.py
    "MRO_ORCHESTRATOR_ENVIRONMENT": "`production` requires a real model credential and hides "
    "`/docs`.",
    "MRO_ORCHESTRATOR_HOST": "Address `mro-orchestrator` listens on.",
    "MRO_ORCHESTRATOR_PORT": "Port `mro-orchestrator` listens on.",
    "MRO_ORCHESTRATOR_LOG_LEVEL": "Level of the JSON log lines on stderr.",
    "MRO_ORCHESTRATOR_DATABASE_URL": "Conversations: `sqlite+aiosqlite:///…` or "
    "`postgresql+asyncpg://…`.",
    "MRO_ORCHESTRATOR_MIGRATE_ON_STARTUP": "Run the database migrations (`upgrade head`) at start.",
    "MRO_ORCHESTRATOR_GATEWAY_JWKS_URL": "The gateway's `/.well-known/jwks.json`: the keys "
    "identity assertions must be signed with.",
    "MRO_ORCHESTRATOR_GATEWAY_JWKS_FILE": "A JWKS file to trust instead of the URL "
    "(air-gapped installations).",
    "MRO_ORCHESTRATOR_JWKS_CACHE_SECONDS": "How long fetched gateway keys are used before they "
    "are fetched again (a removed key is trusted up to this long).",
    "MRO_ORCHESTRATOR_JWKS_REFETCH_COOLDOWN_SECONDS": "At most one refetch per this many seconds "
    "when an assertion names an unknown `kid`.",
    "MRO_ORCHESTRATOR_JWKS_FETCH_TIMEOUT_SECONDS": "Timeout of one JWKS fetch.",
    "MRO_ORCHESTRATOR_ASSERTION_ISSUER": "Required `iss` of identity assertions.",
    "MRO_ORCHESTRATOR_ASSERTION_AUDIENCE": "Required `aud` of identity assertions.",
    "MRO_ORCHESTRATOR_ASSERTION_LEEWAY_SECONDS": "Clock skew allowed on `exp`, `nbf`, `iat`.",
    "MRO_ORCHESTRATOR_ASSERTION_ALGORITHMS": "Accepted assertion algorithms, asymmetric only "
    "(ES256, ES384, RS256, PS256, EdDSA, Ed25519).",
    "MRO_ORCHESTRATOR_AZURE_ENDPOINT": "Azure OpenAI resource URL (the local server by default).",
    "MRO_ORCHESTRATOR_AZURE_DEPLOYMENT": "Deployment name of the model.",
    "MRO_ORCHESTRATOR_AZURE_API_VERSION": "Azure OpenAI REST API version.",
    "MRO_ORCHESTRATOR_AZURE_API_KEY": "Key of the Azure OpenAI resource; in development a "
    "dev-only key the local server accepts. This or `AZURE_ENTRA_TOKEN` is required in "
    "production.",
    "MRO_ORCHESTRATOR_AZURE_ENTRA_TOKEN": "Microsoft Entra ID access token instead of a key.",
    "MRO_ORCHESTRATOR_AZURE_TIMEOUT_SECONDS": "Longest model call (or wait for the next "
    "streamed chunk); 504 beyond.",
    "MRO_ORCHESTRATOR_AZURE_CONNECT_TIMEOUT_SECONDS": "Connect timeout towards Azure OpenAI.",
    "MRO_ORCHESTRATOR_AZURE_MAX_RETRIES": "Retries of 408/409/429/5xx answers and connection "
    "failures.",
    "MRO_ORCHESTRATOR_AZURE_RETRY_BACKOFF_SECONDS": "First backoff before a retry, doubled each "
    "time.",
    "MRO_ORCHESTRATOR_AZURE_RETRY_MAX_WAIT_SECONDS": "Longest wait before a retry; a longer "
    "`Retry-After` is passed on as a 503.",
    "MRO_ORCHESTRATOR_CLASSIFIER_MIN_CONFIDENCE": "Below this confidence the agent is chosen by "
    "keywords instead of the model's routing.",
    "MRO_ORCHESTRATOR_CLASSIFIER_TIMEOUT_SECONDS": "Time allowed for the routing call.",
    "MRO_ORCHESTRATOR_MAX_HISTORY_MESSAGES": "Earlier messages of a conversation sent with a "
    "question.",
    # orchestrator/fake_azure/settings.py
    "MRO_FAKE_AZURE_HOST": "Address the local server listens on.",
    "MRO_FAKE_AZURE_PORT": "Port the local server listens on.",
    "MRO_FAKE_AZURE_LOG_LEVEL": "Uvicorn log level.",
    "MRO_FAKE_AZURE_API_KEY": "Unset: any non-empty key or bearer token is accepted; set: the "
    "`api-key` must match.",
    "MRO_FAKE_AZURE_CONTROL": "Serve the `/_control` API that scripts answers and records calls "
    "(tests).",
    "MRO_FAKE_AZURE_MODEL": "The `model` field of its answers.",
    "MRO_FAKE_AZURE_CHUNK_DELAY_SECONDS": "Pause between streamed chunks.",
    # mro-admin
    "MRO_ADMIN_GATEWAY_URL": "The gateway `mro-admin` talks to.",
    "MRO_ADMIN_TOKEN": "A manager's or admin's access token "
    "(`MRO_ADMIN_TOKEN=$(make -s token AS=mgr1)` in development).",
    "MRO_ADMIN_CLIENT_ID": "Instead of a token: a Keycloak client whose service account has the "
    "roles needed; its token is fetched by the client-credentials grant.",
    "MRO_ADMIN_CLIENT_SECRET": "That client's secret.",
    "MRO_ADMIN_KEYCLOAK_URL": "Keycloak's base URL for the client-credentials grant.",
}


@dataclass(frozen=True)
class Section:
    """One table of the page: the settings classes read under one prefix."""

    title: str
    source: str
    classes: tuple[type[BaseSettings], ...]
    intro: str


SECTIONS = (
    Section(
        "Gateway",
        "gateway/settings.py",
        (GatewaySettings,),
        "The gateway refuses to start with `ENVIRONMENT=production` unless `API_KEY_PEPPER` "
        "(not the development value), `ASSERTION_SIGNING_KEYS` and `CLIENT_SECRET` are set.",
    ),
    Section(
        "Gateway: browser sessions",
        "gateway/browser/sessions.py",
        (SessionSettings,),
        "Read by the same gateway process, with the same prefix (`ENVIRONMENT` is the one above). "
        "Keys in Redis and the login flow are described in [sessions.md](sessions.md).",
    ),
    Section(
        "Orchestrator",
        "orchestrator/settings.py",
        (OrchestratorSettings,),
        "With `ENVIRONMENT=production` the orchestrator refuses to start without "
        "`AZURE_API_KEY` or `AZURE_ENTRA_TOKEN`, and refuses placeholder values "
        "(containing `dev-only`, `change-me`, `placeholder`, `example`).",
    ),
    Section(
        "Local Azure OpenAI server (development and tests only)",
        "orchestrator/fake_azure/settings.py",
        (FakeAzureSettings,),
        "The offline model server `mro-fake-azure`; never part of a production installation.",
    ),
)


def prefix_of(cls: type[BaseSettings]) -> str:
    return str(cls.model_config.get("env_prefix", ""))


def settings_fields() -> Iterator[tuple[Section, str, FieldInfo]]:
    """(section, environment variable, field) for every field, each variable once."""
    seen: set[str] = set()
    for section in SECTIONS:
        for cls in section.classes:
            for name, info in cls.model_fields.items():
                variable = f"{prefix_of(cls)}{name.upper()}"
                if variable not in seen:
                    seen.add(variable)
                    yield section, variable, info


def admin_options() -> dict[str, Any]:
    """mro-admin's options read from MRO_ADMIN_* variables, by variable."""
    found: dict[str, Any] = {}

    def walk(command: Any) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str) and envvar.startswith("MRO_ADMIN_"):
                found.setdefault(envvar, param)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(admin_app))
    return dict(sorted(found.items()))


def documented_variables() -> set[str]:
    """Every variable the page lists (and so needs a description)."""
    return {variable for _, variable, _ in settings_fields()} | set(admin_options())


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in typing.get_args(annotation))


def _bounds(info: FieldInfo) -> str:
    parts = []
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            parts.append(f"≥ {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            parts.append(f"≤ {item.le}")
        elif isinstance(item, annotated_types.Lt):
            parts.append(f"< {item.lt}")
    return ", ".join(parts)


def type_text(annotation: Any) -> str:
    """A field's type in words."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return " or ".join(type_text(kind) for kind in kinds)
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return "JSON list of secrets" if item is SecretStr else f"JSON list of {type_text(item)}s"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " or ".join(f"`{member.value}`" for member in annotation)
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
    return names.get(annotation, "secret" if annotation is SecretStr else str(annotation))


def default_text(info: FieldInfo) -> str:
    """A field's default as it would be written in the environment."""
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if _is_secret(info.annotation):
        return "unset *(secret)*" if not value else "development value *(secret)*"
    if value is None:
        return "unset"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def row(*cells: str) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def render() -> str:
    """The whole page."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by scripts/gen_config_docs.py from the settings classes; do not edit. -->",
        "",
        "Every service reads environment variables with its own prefix (pydantic-settings, names",
        'are case-insensitive). Lists are JSON (`["a", "b"]`), booleans `true`/`false`.',
        "Secrets (marked *(secret)*) are never logged; set them from a secret store",
        "([deploy.md](deploy.md#secrets)); rotating keys and peppers: [rotation.md](rotation.md).",
    ]
    current: Section | None = None
    for section, variable, info in settings_fields():
        if section is not current:
            current = section
            lines += ["", f"## {section.title}", "", f"`{section.source}`. {section.intro}", ""]
            lines += [row("variable", "type", "default", "what it does"), row(*["---"] * 4)]
        bounds = _bounds(info)
        kind = type_text(info.annotation) + (f" ({bounds})" if bounds else "")
        lines.append(row(f"`{variable}`", kind, default_text(info), DESCRIPTIONS[variable]))
    lines += [
        "",
        "## mro-admin",
        "",
        "`gateway/cli/commands.py`, `gateway/cli/client.py`. Each variable is also a command-line "
        "option (`mro-admin users --help`); pass secrets through the environment.",
        "",
        row("variable", "type", "default", "what it does"),
        row(*["---"] * 4),
    ]
    for variable, option in admin_options().items():
        secret = variable.endswith(("_SECRET", "_TOKEN"))
        default = "unset" if option.default is None else f"`{option.default}`"
        kind, default = ("secret", f"{default} *(secret)*") if secret else ("string", default)
        lines.append(row(f"`{variable}`", kind, default, DESCRIPTIONS[variable]))
    lines += [
        "",
        "## Elsewhere",
        "",
        "- The local stack (`make dev`, the test fixtures) reads `MRO_GATEWAY_PORT`,",
        "  `MRO_KEYCLOAK_PORT`, `MRO_ORCHESTRATOR_PORT`, `MRO_FAKE_AZURE_PORT`, `MRO_REDIS_PORT`,",
        "  `MRO_KEYCLOAK_URL` and `MRO_REDIS_URL` ([README](../README.md)).",
        "- Keycloak's realm import fills `MRO_KC_*` placeholders (client secrets, SMTP)",
        "  ([keycloak.md](keycloak.md#secrets-in-the-realm-file)).",
        "- Roles, routes, rate limits and token budgets are in the policy file",
        "  (`MRO_GATEWAY_POLICY_FILE`, [authorization.md](authorization.md)).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the page is stale")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        if PAGE.read_text(encoding="utf-8") != page:
            print(f"{PAGE.relative_to(ROOT)} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
