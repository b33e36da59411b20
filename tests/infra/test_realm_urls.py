"""The realm's gateway client points at the gateway of every shape: devstack, compose, k8s.

Browsers are sent to the gateway's public URL; Keycloak's back-channel logout calls the
gateway at an address Keycloak can reach, never a loopback address inside a container or pod.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from devstack.keycloak import REALM_FILE, keycloak_env
from devstack.paths import ROOT
from tests.infra import kustomize
from tests.infra.compose_file import load_compose, read_env_file
from tests.infra.realm_placeholders import (
    backchannel_url,
    browser_urls,
    gateway_client,
    resolve,
)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
BACKCHANNEL_PATH = "/auth/backchannel-logout"


def _realm_client(env: dict[str, str]) -> dict[str, Any]:
    realm = resolve(json.loads(REALM_FILE.read_text(encoding="utf-8")), env)
    return gateway_client(realm)


def _on(url: str, bases: list[str]) -> bool:
    return any(url == base + "/" or url.startswith(base + "/") for base in bases)


def test_the_realm_file_names_no_gateway_address_outside_its_placeholders() -> None:
    """Every gateway URL of the client comes from a placeholder the stack sets."""
    client = gateway_client(json.loads(REALM_FILE.read_text(encoding="utf-8")))
    for url in [*browser_urls(client), backchannel_url(client)]:
        assert url.startswith("${MRO_KC_GATEWAY_"), url


@pytest.mark.parametrize("gateway_url", ["http://127.0.0.1:8000", "http://127.0.0.1:18765"])
def test_devstack_realm_points_at_its_gateway(gateway_url: str) -> None:
    """`make dev` (and a gateway on another port) gets its own URLs, localhost included."""
    client = _realm_client(keycloak_env(gateway_url=gateway_url))
    alias = gateway_url.replace("127.0.0.1", "localhost")
    assert all(_on(url, [gateway_url, alias]) for url in browser_urls(client))
    assert f"{gateway_url}/auth/callback" in client["redirectUris"]
    assert f"{alias}/auth/callback" in client["redirectUris"]
    assert backchannel_url(client) == gateway_url + BACKCHANNEL_PATH


def _compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def test_compose_realm_points_at_its_gateway() -> None:
    """In compose, browsers go to the published gateway and Keycloak calls it by service name."""
    compose = load_compose(ROOT / "compose.yaml", read_env_file(ROOT / ".env.example"))
    services = compose["services"]
    gateway = _compose_environment(services["gateway"])
    client = _realm_client(_compose_environment(services["keycloak"]))
    public = gateway["MRO_GATEWAY_PUBLIC_URL"]
    published = [p.rsplit(":", 2) for p in services["gateway"]["ports"]]
    aliases = [f"http://{host}:{port}" for host, port, _ in published]
    assert all(_on(url, [public, *aliases]) for url in browser_urls(client))
    assert f"{public}/auth/callback" in client["redirectUris"]
    backchannel = urlsplit(backchannel_url(client))
    assert backchannel.hostname == "gateway"
    assert backchannel.port == int(gateway["MRO_GATEWAY_PORT"])
    assert backchannel.path == BACKCHANNEL_PATH


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    command = kustomize.binary()
    if command is None:
        pytest.fail("no kustomize: scripts/bootstrap.sh builds one (needs Go), or install kubectl")
    overlays = ROOT / "infra" / "k8s" / "overlays"
    return {name: kustomize.build(command, overlays / name) for name in ("dev", "production")}


def _one(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_kubernetes_realm_points_at_its_gateway(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """Each overlay's realm sends browsers to the gateway's public URL and calls the gateway
    (its public URL or its Service) for back-channel logout, never a loopback address."""
    manifests = rendered[overlay]
    deployment = _one(manifests, "Deployment", "mro-gateway")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    public = env["MRO_GATEWAY_PUBLIC_URL"]
    # The operator fills only secret placeholders: URL placeholders take their defaults.
    realm = resolve(_one(manifests, "KeycloakRealmImport", "mro-realm")["spec"]["realm"], {})
    client = gateway_client(realm)
    loopback_public = urlsplit(public).hostname in LOOPBACK
    for url in browser_urls(client):
        # A port-forwarded dev cluster is reached on loopback, as 127.0.0.1 or localhost.
        assert _on(url, [public]) or (loopback_public and urlsplit(url).hostname in LOOPBACK), url
    assert f"{public}/auth/callback" in client["redirectUris"]
    backchannel = urlsplit(backchannel_url(client))
    assert backchannel.hostname not in LOOPBACK
    assert backchannel.path == BACKCHANNEL_PATH
    service = _one(manifests, "Service", "mro-gateway")
    service_ports = {p["port"] for p in service["spec"]["ports"]}
    assert backchannel.hostname == urlsplit(public).hostname or (
        backchannel.hostname == "mro-gateway" and backchannel.port in service_ports
    ), backchannel_url(client)
