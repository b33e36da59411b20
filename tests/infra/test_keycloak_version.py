"""Every place that pins Keycloak names the release of the local stack (devstack.keycloak).

An upgrade bumps them all at once (docs/operations.md, "Upgrading Keycloak"): the server image
(compose, the Kubernetes CR, the docs), the operator's manifests (docs/deploy.md) and the
distribution the local stack fetches. These checks read the files as text, so a pin added in a
new place is checked too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from devstack.keycloak import KEYCLOAK_VERSION
from devstack.paths import ROOT

# The forms a Keycloak release is pinned in; group "version" is the release.
PINS = {
    "server image": re.compile(r"quay\.io/keycloak/keycloak:(?P<version>[\w.-]+)"),
    "operator manifests": re.compile(r"keycloak-k8s-resources/(?P<version>[\w.-]+)/"),
    "distribution": re.compile(r"keycloak-quarkus-dist:(?P<version>[\w.-]+):"),
    "unpacked distribution": re.compile(r"\.cache/keycloak-(?P<version>\d[\w.-]*)/"),
}
# Where pins live: deployment files, the local stack and the docs (tests build theirs from
# KEYCLOAK_VERSION).
SCANNED = ("compose.yaml", "README.md", "docs/*.md", "docker/**/*", "infra/**/*")
# Places that must pin the server, each in its own way: an upgrade that forgets one fails here.
REQUIRED = {
    "compose.yaml": "server image",
    "infra/k8s/base/keycloak/keycloak.yaml": "server image",
    "docs/deploy.md": "operator manifests",
}


def scanned_files(root: Path, patterns: Iterable[str]) -> list[Path]:
    """The text files under root that match the patterns, without caches."""
    found = {path for pattern in patterns for path in root.glob(pattern) if path.is_file()}
    return sorted(p for p in found if "__pycache__" not in p.parts and p.suffix != ".pyc")


def pins(text: str) -> Iterator[tuple[str, str, int]]:
    """(kind of pin, release, line) for every Keycloak pin in the text."""
    for kind, pattern in PINS.items():
        for match in pattern.finditer(text):
            yield kind, match.group("version"), text.count("\n", 0, match.start()) + 1


def disagreements(root: Path, version: str) -> list[str]:
    """'file:line kind release' for every pin under root that names another release."""
    wrong = []
    for path in scanned_files(root, SCANNED):
        text = path.read_text(encoding="utf-8", errors="replace")
        for kind, found, line in pins(text):
            if found != version:
                wrong.append(f"{path.relative_to(root)}:{line} {kind} {found}")
    return wrong


def test_every_keycloak_pin_names_the_local_stack_release() -> None:
    """Images, operator manifests and distributions all name KEYCLOAK_VERSION."""
    assert disagreements(ROOT, KEYCLOAK_VERSION) == []


@pytest.mark.parametrize(("relative", "kind"), sorted(REQUIRED.items()))
def test_each_deployment_pins_keycloak(relative: str, kind: str) -> None:
    """Compose, the Keycloak CR and the operator install each pin the release."""
    text = (ROOT / relative).read_text(encoding="utf-8")
    assert (kind, KEYCLOAK_VERSION) in {(k, v) for k, v, _ in pins(text)}


def test_a_forgotten_pin_is_reported(tmp_path: Path) -> None:
    """A compose file left on the old release is named with its line."""
    (tmp_path / "compose.yaml").write_text(
        "services:\n  keycloak:\n    image: quay.io/keycloak/keycloak:26.4.0\n", encoding="utf-8"
    )
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "deploy.md").write_text(
        "KC=https://raw.githubusercontent.com/keycloak/keycloak-k8s-resources/26.5.6/kubernetes\n",
        encoding="utf-8",
    )
    assert disagreements(tmp_path, "26.5.6") == ["compose.yaml:3 server image 26.4.0"]


@pytest.mark.parametrize(
    ("text", "kind", "version"),
    [
        ("image: quay.io/keycloak/keycloak:26.5.6", "server image", "26.5.6"),
        ("keycloak-k8s-resources/26.6.0/kubernetes/kubernetes.yml", "operator manifests", "26.6.0"),
        ("org.keycloak:keycloak-quarkus-dist:26.5.6:tar.gz", "distribution", "26.5.6"),
        ("unpacked to `.cache/keycloak-26.5.6/`", "unpacked distribution", "26.5.6"),
        ("image: quay.io/keycloak/keycloak:latest", "server image", "latest"),
    ],
)
def test_each_form_of_pin_is_recognised(text: str, kind: str, version: str) -> None:
    """Every way the repository writes a Keycloak release is read, moving tags included."""
    assert list(pins(text)) == [(kind, version, 1)]
