"""infra/k8s as written: references resolve, workloads hardened, secrets only by reference.

These checks read the YAML files directly, so they run without kustomize; test_kustomize_build.py
checks what kustomize renders from them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.paths import ROOT
from tests.infra import kustomize
from tests.infra.images import is_pinned
from tests.infra.settings_fields import unknown_settings
from tests.infra.workloads import (
    containers,
    env_entries,
    images,
    pod_spec,
    secret_references,
    selects,
    workloads,
)

K8S = ROOT / "infra" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
DEV = K8S / "overlays" / "dev"
TREES = {"base": BASE, "production": PRODUCTION, "dev": DEV}
# Names whose value is a credential or holds one (database and Redis URLs carry passwords).
SENSITIVE = re.compile(r"SECRET|PASSWORD|PEPPER|API_KEY|SIGNING_KEYS|TOKEN|DATABASE_URL|REDIS_URL")
GATEWAY = {"app.kubernetes.io/name": "mro-gateway"}
ORCHESTRATOR = {"app.kubernetes.io/name": "mro-orchestrator"}


@pytest.fixture(scope="module")
def trees() -> dict[str, kustomize.Tree]:
    return {name: kustomize.load(folder) for name, folder in TREES.items()}


def _manifests(tree: kustomize.Tree) -> list[dict[str, Any]]:
    return [manifest for _, manifest in tree.resources]


def _patch_documents(tree: kustomize.Tree) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for folder, patch in tree.patches:
        if "path" in patch:
            text = (folder / patch["path"]).read_text(encoding="utf-8")
            for loaded in yaml.safe_load_all(text):
                documents.extend(loaded if isinstance(loaded, list) else [loaded])
    return documents


def _deployment(tree: kustomize.Tree, name: str) -> dict[str, Any]:
    found = tree.find("Deployment", name)
    assert found is not None, name
    return found


def _under(path: Path, folder: Path) -> bool:
    return folder in path.parents


@pytest.mark.parametrize("name", sorted(TREES))
def test_kustomization_references_resolve(trees: dict[str, kustomize.Tree], name: str) -> None:
    """Every resource, component and patch file exists, and every patch names a resource."""
    tree = trees[name]
    names = {(m["kind"], m["metadata"]["name"]) for m in _manifests(tree)}
    names |= {(kind, generated) for kind, generated, _ in tree.generated}
    for folder, patch in tree.patches:
        for target in kustomize.patch_targets(folder, patch):
            assert target in names, f"{folder.name}: patch target {target} not found"


def test_every_kustomization_is_reachable(trees: dict[str, kustomize.Tree]) -> None:
    """No kustomization under infra/k8s is orphaned: each is reached from base or an overlay."""
    reached = {path.resolve() for tree in trees.values() for path in tree.kustomizations}
    present = {path.resolve() for path in K8S.rglob(kustomize.KUSTOMIZATION)}
    assert sorted(map(str, present - reached)) == []


@pytest.mark.parametrize("name", ["production", "dev"])
def test_workloads_run_unprivileged_with_limits(
    trees: dict[str, kustomize.Tree], name: str
) -> None:
    """Every pod runs non-root with a read-only root, no capabilities, requests and limits."""
    found = workloads(_manifests(trees[name]))
    assert found
    for workload in found:
        spec = pod_spec(workload)
        label = workload["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, label
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", label
        assert spec.get("automountServiceAccountToken") is False, label
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, label
            assert context["readOnlyRootFilesystem"] is True, label
            assert context["capabilities"]["drop"] == ["ALL"], label
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), label
            assert {"cpu", "memory"} <= set(resources["limits"]), label


@pytest.mark.parametrize(
    ("name", "readiness"),
    [
        # The gateway's probe leaves out Redis and the database, which every replica shares.
        ("mro-gateway", "/readyz?scope=local"),
        ("mro-orchestrator", "/readyz"),
    ],
)
def test_services_probe_readyz_and_healthz(
    trees: dict[str, kustomize.Tree], name: str, readiness: str
) -> None:
    """Readiness asks /readyz (the gateway its replica-local scope) and liveness /healthz, on
    the container's HTTP port."""
    (container,) = containers(_deployment(trees["base"], name))
    assert container["readinessProbe"]["httpGet"]["path"] == readiness
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["port"] in ports


def test_every_workload_has_health_probes(trees: dict[str, kustomize.Tree]) -> None:
    """Every container of every workload has a readiness and a liveness probe."""
    for workload in workloads(_manifests(trees["dev"])):
        for container in containers(workload):
            assert "readinessProbe" in container, workload["metadata"]["name"]
            assert "livenessProbe" in container, workload["metadata"]["name"]


def test_gateway_is_replicated_spread_autoscaled_and_protected(
    trees: dict[str, kustomize.Tree],
) -> None:
    """Three gateway replicas spread over zones, a CPU HPA from three up, a PDB over them."""
    tree = trees["base"]
    gateway = _deployment(tree, "mro-gateway")
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert gateway["spec"]["replicas"] == 3
    spread = pod_spec(gateway)["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} >= {"topology.kubernetes.io/zone"}
    assert all(selects(c["labelSelector"], labels) for c in spread)
    hpa = tree.find("HorizontalPodAutoscaler", "mro-gateway")
    assert hpa is not None
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "mro-gateway",
    }
    assert hpa["spec"]["minReplicas"] >= 3
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    pdb = tree.find("PodDisruptionBudget", "mro-gateway")
    assert pdb is not None
    assert selects(pdb["spec"]["selector"], labels)


def test_orchestrator_is_reachable_only_from_gateway_pods(
    trees: dict[str, kustomize.Tree],
) -> None:
    """Ingress is denied by default; the orchestrator admits gateway pods on its port only."""
    policies = [m for m in _manifests(trees["base"]) if m["kind"] == "NetworkPolicy"]
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and p["spec"]["policyTypes"] == ["Ingress"]
        and not p["spec"].get("ingress")
    ]
    assert deny, "no default-deny ingress policy"
    orchestrator_labels = _deployment(trees["base"], "mro-orchestrator")["spec"]["template"][
        "metadata"
    ]["labels"]
    rules = [
        rule
        for p in policies
        if p["spec"]["podSelector"] != {} and selects(p["spec"]["podSelector"], orchestrator_labels)
        for rule in p["spec"].get("ingress", [])
    ]
    assert rules
    for rule in rules:
        assert rule["from"] == [{"podSelector": {"matchLabels": GATEWAY}}]
        assert rule["ports"] == [{"protocol": "TCP", "port": 8001}]
    service = trees["base"].find("Service", "mro-orchestrator")
    assert service is not None
    assert service["spec"]["type"] == "ClusterIP"


@pytest.mark.parametrize("folder", [BASE, PRODUCTION], ids=["base", "production"])
def test_no_secret_values_in_base_or_production(folder: Path) -> None:
    """No Secret, no secret generator, and credentials only through secretKeyRef."""
    tree = kustomize.load(folder)
    own = [m for path, m in tree.resources if path.parent == folder or _under(path, folder)]
    assert [m["metadata"]["name"] for m in own if m["kind"] == "Secret"] == []
    assert [g for g in tree.generated if g[0] == "Secret"] == []
    for entry in env_entries([*_manifests(tree), *_patch_documents(tree)]):
        if SENSITIVE.search(entry["name"]):
            assert "value" not in entry, entry["name"]
            assert "secretKeyRef" in entry["valueFrom"], entry["name"]


@pytest.mark.parametrize("name", sorted(TREES))
def test_env_names_are_settings_fields(trees: dict[str, kustomize.Tree], name: str) -> None:
    """Every MRO_GATEWAY_/MRO_ORCHESTRATOR_/MRO_FAKE_AZURE_ variable names a settings field."""
    tree = trees[name]
    names = {e["name"] for e in env_entries([*_manifests(tree), *_patch_documents(tree)])}
    assert any(n.startswith("MRO_GATEWAY_") for n in names)
    assert unknown_settings(names) == []


@pytest.mark.parametrize("name", sorted(TREES))
def test_images_are_pinned(trees: dict[str, kustomize.Tree], name: str) -> None:
    """Every container image and the Keycloak image name a version."""
    found = images(_manifests(trees[name]))
    assert found
    assert [image for image in found if not is_pinned(image)] == []


def test_production_pins_the_images_it_renames() -> None:
    """The production overlay's image overrides carry a version tag or digest."""
    document = yaml.safe_load((PRODUCTION / kustomize.KUSTOMIZATION).read_text())
    overrides = document["images"]
    assert {o["name"] for o in overrides} == {"mro-gateway", "mro-orchestrator"}
    for override in overrides:
        reference = override["newName"] + (
            "@" + override["digest"] if "digest" in override else ":" + override["newTag"]
        )
        assert is_pinned(reference), reference


def test_keycloak_resources_use_the_operator_api(trees: dict[str, kustomize.Tree]) -> None:
    """The Keycloak and realm-import CRs use the operator's API group and name each other."""
    keycloak = trees["base"].find("Keycloak", "mro-keycloak")
    realm = trees["base"].find("KeycloakRealmImport", "mro-realm")
    assert keycloak is not None
    assert realm is not None
    assert keycloak["apiVersion"].startswith("k8s.keycloak.org/")
    assert realm["apiVersion"] == keycloak["apiVersion"]
    assert realm["spec"]["keycloakCRName"] == "mro-keycloak"
    assert realm["spec"]["realm"]["realm"] == "mro"


def test_dev_overlay_generates_every_secret_key_it_reads(trees: dict[str, kustomize.Tree]) -> None:
    """Each (Secret, key) the dev overlay's workloads and CRs read is generated by it."""
    tree = trees["dev"]
    generated = {
        (name, key) for kind, name, keys in tree.generated if kind == "Secret" for key in keys
    }
    wanted = secret_references([*_manifests(tree), *_patch_documents(tree)])
    assert wanted
    assert sorted(wanted - generated) == []


def test_dev_overlay_secrets_are_marked_fake() -> None:
    """Every generated dev secret value says it is development-only (URLs and names aside)."""
    document = yaml.safe_load((DEV / kustomize.KUSTOMIZATION).read_text())
    for generator in document["secretGenerator"]:
        for literal in generator["literals"]:
            key, value = literal.split("=", 1)
            if key.endswith(("password", "secret", "pepper", "api-key")):
                assert "dev-only" in value, key


def test_secrets_production_needs_are_documented(trees: dict[str, kustomize.Tree]) -> None:
    """docs/deploy.md names every Secret and key that base and production read."""
    tree = trees["production"]
    wanted = secret_references([*_manifests(tree), *_patch_documents(tree)])
    for document in _patch_documents(tree):
        if isinstance(document, dict) and document.get("op") == "add":
            secret = document.get("value", {}).get("secret")
            if secret:
                wanted.add((secret["name"], secret["key"]))
    docs = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    missing = [
        f"{n}/{k}" for n, k in sorted(wanted) if f"`{n}`" not in docs or f"`{k}`" not in docs
    ]
    assert missing == []


def test_cluster_init_script_is_the_one_compose_mounts() -> None:
    """The in-cluster PostgreSQL creates the databases with the same script as compose."""
    component = K8S / "components" / "in-cluster-datastores" / "init-databases.sh"
    services = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))["services"]
    mounted = [v.split(":")[0] for v in services["postgres"]["volumes"] if v.endswith(".sh:ro")]
    assert [(ROOT / m).resolve() for m in mounted] == [component.resolve()]
