"""Keycloak's realm-import placeholders (``${NAME}``, ``${NAME:default}``) and the gateway
client's URLs, as an import with a given environment would store them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Upper-case names only: ${profileScopeConsentText} and the like are Keycloak's message keys.
_PLACEHOLDER = re.compile(r"\$\{(?P<name>[A-Z][A-Z0-9_]*)(?::(?P<default>[^}]*))?\}")


def resolve(value: Any, env: Mapping[str, str]) -> Any:
    """value with every placeholder replaced from env, else by its default (kept when neither)."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group("name"), match.group("default")
            if name in env:
                return env[name]
            return default if default is not None else match.group(0)

        return _PLACEHOLDER.sub(replace, value)
    if isinstance(value, list):
        return [resolve(item, env) for item in value]
    if isinstance(value, dict):
        return {key: resolve(item, env) for key, item in value.items()}
    return value


def gateway_client(realm: Mapping[str, Any]) -> dict[str, Any]:
    """The realm's mro-gateway client."""
    (client,) = [c for c in realm["clients"] if c["clientId"] == "mro-gateway"]
    found: dict[str, Any] = client
    return found


def browser_urls(client: Mapping[str, Any]) -> list[str]:
    """The URLs a browser is sent to: base URL, redirect URIs, post-logout redirect URIs."""
    attributes = client["attributes"]
    return [
        client["baseUrl"],
        *client["redirectUris"],
        *attributes["post.logout.redirect.uris"].split("##"),
    ]


def backchannel_url(client: Mapping[str, Any]) -> str:
    """The URL Keycloak itself calls to tell the gateway a session ended."""
    return str(client["attributes"]["backchannel.logout.url"])
