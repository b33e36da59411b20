"""Reading Kubernetes manifests: pod templates, containers, their env and the Secrets they read."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

Manifest = dict[str, Any]
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})


def workloads(manifests: Iterable[Manifest]) -> list[Manifest]:
    """The manifests that run pods from a template."""
    return [m for m in manifests if m.get("kind") in WORKLOAD_KINDS]


def pod_spec(workload: Manifest) -> dict[str, Any]:
    """The pod spec of a workload's template."""
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Manifest) -> list[dict[str, Any]]:
    """Init and regular containers of a workload."""
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def env_entries(manifests: Iterable[Manifest]) -> Iterator[dict[str, Any]]:
    """Every env entry of every container of the manifests (patches included)."""
    for manifest in manifests:
        template = manifest.get("spec", {}).get("template", {}).get("spec", {})
        for container in [*template.get("initContainers", []), *template.get("containers", [])]:
            yield from container.get("env", [])


def secret_references(manifests: Iterable[Manifest]) -> set[tuple[str, str]]:
    """(Secret, key) pairs read by env entries and by the Keycloak operator's resources."""
    found: set[tuple[str, str]] = set()
    for entry in env_entries(manifests):
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            found.add((ref["name"], ref["key"]))
    for manifest in manifests:
        spec = manifest.get("spec", {})
        if manifest.get("kind") == "Keycloak":
            for field in ("usernameSecret", "passwordSecret"):
                ref = spec.get("db", {}).get(field)
                if ref:
                    found.add((ref["name"], ref["key"]))
        if manifest.get("kind") == "KeycloakRealmImport":
            for placeholder in spec.get("placeholders", {}).values():
                found.add((placeholder["secret"]["name"], placeholder["secret"]["key"]))
    return found


def images(manifests: Iterable[Manifest]) -> list[str]:
    """Container images of the workloads and the image of each Keycloak CR."""
    found = [c["image"] for w in workloads(manifests) for c in containers(w)]
    found += [m["spec"]["image"] for m in manifests if m.get("kind") == "Keycloak"]
    return found


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """True when a matchLabels selector (an empty one selects all) matches labels."""
    wanted = selector.get("matchLabels", {})
    return all(labels.get(key) == value for key, value in wanted.items())
