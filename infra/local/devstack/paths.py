"""Well-known folders of the local stack (all ignored by git)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CACHE = ROOT / ".cache"
VAR = ROOT / "var"
LOGS = VAR / "log"


def ensure_dirs() -> None:
    """Create the cache, state and log folders."""
    for path in (CACHE, VAR, LOGS):
        path.mkdir(parents=True, exist_ok=True)


def state_dir() -> Path:
    """Where the dev stack keeps its data across restarts: ``MRO_DEVSTACK_STATE``, else var/.

    Keycloak's database, Redis's append-only file, the gateway's and orchestrator's databases
    and the audit spool; ``python -m devstack reset`` (``make dev-reset``) empties it.
    """
    return Path(os.environ.get("MRO_DEVSTACK_STATE") or VAR)
