"""The kustomize tree under infra/k8s: its files as written, and rendered by kustomize itself.

``load`` follows a kustomization's resources and components without running kustomize and
fails on any reference that does not resolve; ``build`` renders with a ``kustomize`` or
``kubectl`` binary when one is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devstack.paths import CACHE

KUSTOMIZATION = "kustomization.yaml"
Manifest = dict[str, Any]


@dataclass
class Tree:
    """Resources reachable from one kustomization, and what its generators and patches name."""

    root: Path
    resources: list[tuple[Path, Manifest]] = field(default_factory=list)
    generated: list[tuple[str, str, list[str]]] = field(default_factory=list)
    patches: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    kustomizations: list[Path] = field(default_factory=list)

    def find(self, kind: str, name: str) -> Manifest | None:
        """The resource of that kind and name, or None."""
        for _, manifest in self.resources:
            if manifest.get("kind") == kind and manifest["metadata"]["name"] == name:
                return manifest
        return None


class BrokenReference(Exception):
    """A kustomization names a file, folder or patch target that does not exist."""


def read_yaml_documents(path: Path) -> list[Manifest]:
    """The non-empty YAML documents of a file."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def _kustomization(folder: Path) -> dict[str, Any]:
    file = folder / KUSTOMIZATION
    if not file.is_file():
        raise BrokenReference(f"{folder} has no {KUSTOMIZATION}")
    document: dict[str, Any] = yaml.safe_load(file.read_text(encoding="utf-8"))
    return document


def _existing(base: Path, relative: str, owner: Path) -> Path:
    path = (base / relative).resolve()
    if not path.exists():
        raise BrokenReference(f"{owner} refers to {relative}, which does not exist")
    return path


def load(folder: Path, tree: Tree | None = None) -> Tree:
    """Every resource reachable from folder's kustomization; raises BrokenReference."""
    tree = tree if tree is not None else Tree(root=folder)
    document = _kustomization(folder)
    owner = folder / KUSTOMIZATION
    tree.kustomizations.append(owner)
    for entry in [*document.get("resources", []), *document.get("components", [])]:
        path = _existing(folder, entry, owner)
        if path.is_dir():
            load(path, tree)
        else:
            tree.resources.extend((path, doc) for doc in read_yaml_documents(path))
    for kind, key in (("Secret", "secretGenerator"), ("ConfigMap", "configMapGenerator")):
        for generator in document.get(key, []):
            keys = [literal.split("=", 1)[0] for literal in generator.get("literals", [])]
            for file in generator.get("files", []):
                _existing(folder, file.split("=", 1)[-1], owner)
                keys.append(file.split("=", 1)[0].rsplit("/", 1)[-1])
            tree.generated.append((kind, generator["name"], keys))
    for patch in document.get("patches", []):
        if "path" in patch:
            _existing(folder, patch["path"], owner)
        tree.patches.append((folder, patch))
    return tree


def patch_targets(folder: Path, patch: dict[str, Any]) -> list[tuple[str, str]]:
    """The (kind, name) pairs a patch entry applies to."""
    if "target" in patch:
        return [(patch["target"]["kind"], patch["target"]["name"])]
    if "path" in patch:
        documents = read_yaml_documents(folder / patch["path"])
    else:
        documents = [doc for doc in yaml.safe_load_all(patch["patch"]) if doc]
    return [(doc["kind"], doc["metadata"]["name"]) for doc in documents]


def binary() -> list[str] | None:
    """The command that renders a kustomization folder, or None when none is installed: the
    kustomize scripts/bootstrap.sh pins in .cache/bin, else kustomize or kubectl from PATH."""
    pinned = CACHE / "bin" / "kustomize"
    if pinned.is_file():
        return [str(pinned), "build"]
    if kustomize := shutil.which("kustomize"):
        return [kustomize, "build"]
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize"]
    return None


def build(command: list[str], folder: Path) -> list[Manifest]:
    """The manifests kustomize renders for folder; raises CalledProcessError on failure."""
    result = subprocess.run(
        [*command, str(folder)], capture_output=True, text=True, check=True, timeout=120
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
