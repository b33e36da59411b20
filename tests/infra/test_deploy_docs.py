"""docs/deploy.md against the manifests: its kubectl and docker commands create the Secrets and
namespaces, push and load the images, and wait for the resources that the overlays name."""

from __future__ import annotations

import re

import pytest
import yaml

from devstack.paths import ROOT
from tests.docs_shell import SHELL, Command, commands, fenced_blocks, shell_blocks
from tests.infra import kustomize
from tests.infra.workloads import images, secret_references

K8S = ROOT / "infra" / "k8s" / "overlays"
KINDS = {
    "deploy": "Deployment",
    "keycloak": "Keycloak",
    "keycloakrealmimport": "KeycloakRealmImport",
}
OPERATOR = {("deploy", "keycloak-operator")}  # from the operator's manifests, not the overlays


def _namespace(tree: kustomize.Tree) -> str:
    return str(yaml.safe_load((tree.root / kustomize.KUSTOMIZATION).read_text())["namespace"])


def secrets_read(tree: kustomize.Tree) -> set[tuple[str, str]]:
    """(Secret, key) pairs the tree's workloads, Keycloak CRs, patches and Ingresses read."""
    manifests = [manifest for _, manifest in tree.resources]
    for folder, patch in ((f, p) for f, p in tree.patches if "path" in p):
        for document in kustomize.read_yaml_documents(folder / patch["path"]):
            manifests += document if isinstance(document, list) else [document]
    found = secret_references([m for m in manifests if "kind" in m])
    found |= {
        (op["value"]["secret"]["name"], op["value"]["secret"]["key"])
        for op in manifests
        if op.get("op") == "add" and "secret" in (op.get("value") or {})
    }
    return found | {
        (tls["secretName"], key)
        for manifest in manifests
        if manifest.get("kind") == "Ingress"
        for tls in manifest["spec"].get("tls", [])
        for key in ("tls.crt", "tls.key")
    }


def secrets_created(found: list[Command], namespace: str) -> set[tuple[str, str]]:
    """(Secret, key) pairs that `kubectl -n namespace create secret` commands create."""
    created = set()
    for words in (c.words for c in found if c.words[0] == "kubectl" and "secret" in c.words):
        if "create" not in words or words[words.index("-n") + 1] != namespace:
            continue
        kind, name = words[words.index("secret") + 1 : words.index("secret") + 3]
        keys = {w.split("=")[1] for w in words if w.startswith(("--from-literal=", "--from-file="))}
        created |= {(name, key) for key in ({"tls.crt", "tls.key"} if kind == "tls" else keys)}
    return created


def expanded(word: str, text: str) -> str:
    """A word with the page's simple `NAME=value` assignments substituted."""
    for name, value in re.findall(r"\b([A-Z_]+)=([^\s;$]+)", text):
        word = word.replace(f"${name}", value)
    return word


@pytest.fixture(scope="module")
def found() -> list[Command]:
    return commands(shell_blocks())


@pytest.fixture(scope="module")
def deploy() -> tuple[list[Command], str]:
    page = ROOT / "docs" / "deploy.md"
    blocks = [block for block in fenced_blocks(page) if block.lang in SHELL]
    return commands(blocks), page.read_text(encoding="utf-8")


def test_deploy_creates_every_secret_production_reads(deploy: tuple[list[Command], str]) -> None:
    """The `kubectl create secret` commands create exactly the Secrets and keys production reads."""
    tree = kustomize.load(K8S / "production")
    assert secrets_created(deploy[0], _namespace(tree)) == secrets_read(tree)


def test_deploy_creates_the_namespaces_the_overlays_use(deploy: tuple[list[Command], str]) -> None:
    """`kubectl create namespace` makes the production and the dev overlay's namespaces."""
    created = {c.words[3] for c in deploy[0] if c.words[:3] == ("kubectl", "create", "namespace")}
    overlays = {_namespace(kustomize.load(K8S / name)) for name in ("production", "dev")}
    assert created == overlays


def test_deploy_pushes_the_images_production_pulls(deploy: tuple[list[Command], str]) -> None:
    """The images built and pushed are the ones production's `images:` names."""
    found, text = deploy
    pushed = {expanded(c.words[2], text) for c in found if c.words[:2] == ("docker", "push")}
    overrides = yaml.safe_load((K8S / "production" / kustomize.KUSTOMIZATION).read_text())
    assert {f"{o['newName']}:{o['newTag']}" for o in overrides["images"]} <= pushed


def test_dev_cluster_loads_the_images_it_runs(deploy: tuple[list[Command], str]) -> None:
    """kind gets every image of this repository the dev overlay runs, each built first."""
    found = deploy[0]
    built = {c.words[c.words.index("-t") + 1] for c in found if c.words[:2] == ("docker", "build")}
    loaded = {w for c in found if c.words[:3] == ("kind", "load", "docker-image") for w in c.words}
    overrides = yaml.safe_load((K8S / "production" / kustomize.KUSTOMIZATION).read_text())
    names = {override["name"] for override in overrides["images"]}  # the images built here
    tree = kustomize.load(K8S / "dev")
    ours = {i for i in images([m for _, m in tree.resources]) if i.split(":")[0] in names}
    assert ours
    assert ours <= loaded & built


def test_kubectl_waits_for_resources_that_exist(found: list[Command]) -> None:
    """`kubectl wait` and `rollout` name resources the overlay of their namespace creates."""
    trees = {_namespace(t): t for t in (kustomize.load(K8S / n) for n in ("production", "dev"))}
    named = []
    for words in (c.words for c in found if c.words[0] == "kubectl"):
        if "wait" in words or "rollout" in words:
            tree = trees.get(words[words.index("-n") + 1] if "-n" in words else "default")
            named += [(tree, *w.split("/")) for w in words if w.split("/")[0] in KINDS]
    assert named
    missing = [(k, n) for t, k, n in named if t is None or t.find(KINDS[k], n) is None]
    assert sorted(set(missing) - OPERATOR) == []
