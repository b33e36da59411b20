"""What kustomize renders from infra/k8s: it builds, and the overlays fit together.

Renders with the kustomize that scripts/bootstrap.sh pins in .cache/bin (or kustomize or kubectl
from PATH); without one these tests fail, they do not skip.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from devstack.paths import ROOT
from gateway.settings import GatewaySettings
from orchestrator.settings import OrchestratorSettings
from tests.infra import kustomize
from tests.infra.images import is_pinned
from tests.infra.realm_placeholders import gateway_client, resolve
from tests.infra.settings_fields import settings_from_env
from tests.infra.workloads import containers, images

K8S = ROOT / "infra" / "k8s"
FOLDERS = {
    "base": K8S / "base",
    "production": K8S / "overlays" / "production",
    "dev": K8S / "overlays" / "dev",
}
Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    command = kustomize.binary()
    if command is None:
        pytest.fail("no kustomize: scripts/bootstrap.sh builds one (needs Go), or install kubectl")
    return {name: kustomize.build(command, folder) for name, folder in FOLDERS.items()}


def _one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def _env(manifests: list[Manifest], deployment: str) -> list[dict[str, Any]]:
    (container,) = containers(_one(manifests, "Deployment", deployment))
    env: list[dict[str, Any]] = container["env"]
    return env


def _plain(env: list[dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in env if "value" in e}


def _secret_values(manifests: list[Manifest]) -> dict[tuple[str, str], str]:
    values = {}
    for secret in (m for m in manifests if m["kind"] == "Secret"):
        for key, encoded in secret.get("data", {}).items():
            values[(secret["metadata"]["name"], key)] = base64.b64decode(encoded).decode()
    return values


def _resolved(env: list[dict[str, Any]], secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    values = _plain(env)
    for entry in env:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            values[entry["name"]] = secrets[(ref["name"], ref["key"])]
    return values


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_renders_into_one_namespace(rendered: dict[str, list[Manifest]], name: str) -> None:
    """Each kustomization builds and puts every resource in the overlay's namespace."""
    namespaces = {m["metadata"].get("namespace") for m in rendered[name]}
    assert len(namespaces) == 1
    assert None not in namespaces


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_rendered_images_are_pinned(rendered: dict[str, list[Manifest]], name: str) -> None:
    """After image overrides, every image still names a version."""
    assert [i for i in images(rendered[name]) if not is_pinned(i)] == []


def test_production_pulls_service_images_from_a_registry(
    rendered: dict[str, list[Manifest]],
) -> None:
    """Production runs the gateway and orchestrator images from a registry, not local names."""
    for deployment in ("mro-gateway", "mro-orchestrator"):
        (container,) = containers(_one(rendered["production"], "Deployment", deployment))
        assert "/" in container["image"].split(":")[0], container["image"]


def test_production_renders_no_secret(rendered: dict[str, list[Manifest]]) -> None:
    """No Secret object comes out of the production build: they are created per cluster."""
    assert [m["metadata"]["name"] for m in rendered["production"] if m["kind"] == "Secret"] == []


@pytest.mark.parametrize("name", ["production", "dev"])
def test_keycloak_hostname_is_the_issuer_the_gateway_checks(
    rendered: dict[str, list[Manifest]], name: str
) -> None:
    """Keycloak's hostname is exactly the Keycloak URL the gateway derives the issuer from."""
    keycloak = _one(rendered[name], "Keycloak", "mro-keycloak")
    gateway = _plain(_env(rendered[name], "mro-gateway"))
    assert keycloak["spec"]["hostname"]["hostname"] == gateway["MRO_GATEWAY_KEYCLOAK_URL"]


@pytest.mark.parametrize("name", ["production", "dev"])
def test_gateway_client_redirects_to_the_gateway(
    rendered: dict[str, list[Manifest]], name: str
) -> None:
    """The imported realm's gateway client redirects and logs out at the gateway's public URL."""
    public_url = _plain(_env(rendered[name], "mro-gateway"))["MRO_GATEWAY_PUBLIC_URL"]
    realm = _one(rendered[name], "KeycloakRealmImport", "mro-realm")["spec"]["realm"]
    # URL placeholders take their defaults (the operator fills only secret ones).
    client = gateway_client(resolve(realm, {}))
    assert f"{public_url}/auth/callback" in client["redirectUris"]
    if name == "production":
        urls = [*client["redirectUris"], client["attributes"]["backchannel.logout.url"]]
        assert all(url.startswith(public_url + "/") for url in urls), urls


def test_production_ingress_serves_both_public_hosts_over_tls(
    rendered: dict[str, list[Manifest]],
) -> None:
    """The Ingress routes the gateway's and Keycloak's hosts, each covered by a TLS entry."""
    manifests = rendered["production"]
    gateway = _plain(_env(manifests, "mro-gateway"))
    wanted = {
        urlsplit(gateway["MRO_GATEWAY_PUBLIC_URL"]).hostname: "mro-gateway",
        urlsplit(gateway["MRO_GATEWAY_KEYCLOAK_URL"]).hostname: "mro-keycloak-service",
    }
    assert gateway["MRO_GATEWAY_PUBLIC_URL"].startswith("https://")
    assert gateway["MRO_GATEWAY_KEYCLOAK_URL"].startswith("https://")
    (ingress,) = [m for m in manifests if m["kind"] == "Ingress"]
    routes = {
        rule["host"]: path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert routes == wanted
    tls_hosts = {host for entry in ingress["spec"]["tls"] for host in entry["hosts"]}
    assert set(wanted) <= tls_hosts


def test_production_environment_passes_production_settings_checks(
    rendered: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its Secrets filled, production's env parses and passes the production validators."""
    manifests = rendered["production"]
    secrets = {
        ("mro-gateway", "client-secret"): "s3cr3t-from-the-cluster",
        ("mro-gateway", "api-key-pepper"): "pepper-from-the-cluster",
        ("mro-gateway", "assertion-signing-keys"): json.dumps(["-----BEGIN PRIVATE KEY-----"]),
        ("mro-gateway", "database-url"): "postgresql+asyncpg://gw:pw@db.internal/gateway",
        ("mro-gateway", "redis-url"): "rediss://:pw@redis.internal:6380/0",
        ("mro-orchestrator", "azure-api-key"): "0123456789abcdef",
        ("mro-orchestrator", "database-url"): "postgresql+asyncpg://or:pw@db.internal/orch",
    }
    gateway = settings_from_env(
        GatewaySettings, _resolved(_env(manifests, "mro-gateway"), secrets), monkeypatch
    )
    assert isinstance(gateway, GatewaySettings)
    assert gateway.environment == "production"
    assert gateway.trusted_proxies
    orchestrator = settings_from_env(
        OrchestratorSettings, _resolved(_env(manifests, "mro-orchestrator"), secrets), monkeypatch
    )
    assert isinstance(orchestrator, OrchestratorSettings)
    assert orchestrator.environment == "production"


def test_dev_environment_is_accepted_by_the_settings(
    rendered: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dev overlay's env, with its generated fake Secrets, builds both settings classes."""
    manifests = rendered["dev"]
    secrets = _secret_values(manifests)
    for deployment, cls in (
        ("mro-gateway", GatewaySettings),
        ("mro-orchestrator", OrchestratorSettings),
    ):
        settings = settings_from_env(
            cls, _resolved(_env(manifests, deployment), secrets), monkeypatch
        )
        assert settings.environment == "development"
