"""The audit spool: JSON lines on local disk, fsync'd, holding events the database did not take.

New events are appended to ``current.jsonl``. To replay, ``take_pending`` renames it to
``replay-<ns>.jsonl`` (so appends during a replay go to a fresh file) and lists every replay
file; a file is removed only after all its events were stored. ``adopt`` moves in a file of
the same shape from elsewhere (a crashed run's audit journal) as one more replay file. Appends
from the event loop and from worker threads are serialised by a lock.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["AuditSpool"]

logger = logging.getLogger(__name__)

_CURRENT = "current.jsonl"


class AuditSpool:
    """Append-only spool files in one directory (created with owner-only permissions)."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._lock = threading.Lock()

    @property
    def directory(self) -> Path:
        return self._dir

    def _ensure_dir(self) -> None:
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Append records and fsync before returning. Raises OSError when the disk refuses."""
        data = "".join(
            json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in records
        ).encode()
        with self._lock:
            self._ensure_dir()
            fd = os.open(self._dir / _CURRENT, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)

    def has_pending(self) -> bool:
        """True when some spooled events wait for a replay."""
        if not self._dir.is_dir():
            return False
        return any(p.suffix == ".jsonl" for p in self._dir.iterdir())

    def take_pending(self) -> list[Path]:
        """Close the current file for appends and list every file to replay, oldest first."""
        with self._lock:
            current = self._dir / _CURRENT
            if current.exists():
                current.rename(self._replay_path())
            if not self._dir.is_dir():
                return []
            return sorted(self._dir.glob("replay-*.jsonl"))

    def adopt(self, path: Path) -> None:
        """Move path (JSON lines of events, on the spool's file system) in for a replay.
        Raises OSError, FileNotFoundError when path is gone."""
        with self._lock:
            self._ensure_dir()
            path.rename(self._replay_path())

    def _replay_path(self) -> Path:
        # Names sort by the time they were taken; the loop only guards against a coarse clock.
        while (path := self._dir / f"replay-{time.time_ns():020d}.jsonl").exists():
            pass
        return path

    def read(self, path: Path) -> list[dict[str, Any]]:
        """The records in a spool file; a torn line (crash mid-write) is logged and skipped."""
        records: list[dict[str, Any]] = []
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                logger.error(
                    "unreadable audit spool line", extra={"file": path.name, "line": number}
                )
        return records

    def remove(self, path: Path) -> None:
        """Delete a replayed file."""
        path.unlink(missing_ok=True)
