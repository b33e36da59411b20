"""Well-known folders of the local stack (all ignored by git)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CACHE = ROOT / ".cache"
VAR = ROOT / "var"
LOGS = VAR / "log"


def ensure_dirs() -> None:
    """Create the cache, state and log folders."""
    for path in (CACHE, VAR, LOGS):
        path.mkdir(parents=True, exist_ok=True)
