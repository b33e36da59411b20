"""axe-core in the browser: the pinned release from the npm registry, cached under .cache/.

``npm pack`` fetches the release the first time (checking it against the registry's digest); the
tarball's digest is checked again against the pin here before ``axe.min.js`` is taken from it.
The script is added to a browser context as an init script, which the pages' Content-Security-
Policy does not apply to, so the pages themselves stay exactly as served.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from devstack.paths import ROOT

VERSION = "4.14.1"
# The registry's dist.integrity of that release (npm view axe-core@4.14.1 dist.integrity).
INTEGRITY = "sha512-" + (
    "FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
)
CACHED = ROOT / ".cache" / f"axe-core-{VERSION}" / "axe.min.js"
# WCAG 2.1 A and AA plus axe's best practices; label-content-name-mismatch is experimental in
# axe but is exactly what speech-input users trip over, so it runs too.
OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"],
    },
    "rules": {"label-content-name-mismatch": {"enabled": True}},
}
BLOCKING = frozenset({"serious", "critical"})


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def axe_script() -> Path:
    """The path of axe.min.js of the pinned release, fetched with npm on first use."""
    if CACHED.is_file():
        return CACHED
    if shutil.which("npm") is None:
        raise RuntimeError(f"fetching axe-core {VERSION} needs npm once: apt-get install npm")
    with tempfile.TemporaryDirectory() as folder:
        packed = subprocess.run(
            ["npm", "pack", f"axe-core@{VERSION}", "--json", "--pack-destination", folder],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        tarball = Path(folder) / json.loads(packed.stdout)[0]["filename"]
        data = tarball.read_bytes()
        if _integrity(data) != INTEGRITY:
            raise RuntimeError(f"axe-core {VERSION} from the registry does not match its pin")
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/axe.min.js")
            if member is None:
                raise RuntimeError(f"axe-core {VERSION} has no axe.min.js")
            script = member.read()
    CACHED.parent.mkdir(parents=True, exist_ok=True)
    CACHED.write_bytes(script)
    return CACHED


def violations(page: Page) -> list[dict[str, Any]]:
    """The serious and critical violations axe finds on the page as it is now."""
    result = page.evaluate("options => axe.run(document, options)", OPTIONS)
    return [
        {
            "rule": violation["id"],
            "impact": violation["impact"],
            "nodes": [node["target"] for node in violation["nodes"]][:5],
        }
        for violation in result["violations"]
        if violation["impact"] in BLOCKING
    ]
