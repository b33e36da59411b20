"""The audit journal: every event on local disk before the answer it belongs to leaves.

``append`` writes one JSON line with a single ``os.write`` to the process's current segment
file and does not fsync: the line is in the kernel's page cache when ``append`` returns, so it
survives the process being killed (SIGKILL, out of memory) but not the machine losing power or
its kernel crashing before the page is written back (within about 30 s by default). An fsync
per event would cost milliseconds on the request path.

The journal is only read after a crash. The audit writer releases segments once their events
are stored (or fsync'd to the spool): older segments are deleted, and the current one is
truncated whenever nothing is left waiting. A clean stop deletes the whole run.

Layout, in one directory: each process (a *run*) holds ``<run>.lock`` locked (``flock``) while
it lives and writes ``<run>-<segment>.jsonl``, starting a new segment past ``segment_bytes``.
The kernel drops the lock when the process dies however it dies, so ``recover`` can tell a
crashed run's segments from those of a live process sharing the directory, and hands them over
(to the spool, which replays them by event id). Segments not yet released when the process
died may hold events that were stored already: the replay skips those.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["AuditJournal"]

logger = logging.getLogger(__name__)

SEGMENT_BYTES = 8 * 1024 * 1024
# Built once: json.dumps with options builds an encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


def _run_id() -> str:
    # Sorts by start time, so recovered segments replay oldest first.
    return f"{time.time_ns():020d}-{os.getpid()}"


def _run_of(segment: Path) -> str:
    return segment.stem.rpartition("-")[0]


def _held(lock: Path) -> bool:
    """True while a live process holds the lock file (gone or unlocked: its run ended)."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the lock if this call took it
    return False


class AuditJournal:
    """This process's append-only journal segments in one directory (owner-only permissions).

    Used from the event loop's thread only; ``recover`` touches other runs' files only.
    """

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self._dir = directory
        self._segment_bytes = segment_bytes
        self._run = _run_id()
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._segment = 0
        self._size = 0
        self._segments: list[int] = []  # this run's segments on disk, oldest first
        self._failing = False

    @property
    def directory(self) -> Path:
        return self._dir

    def append(self, record: dict[str, Any]) -> int | None:
        """Write record as one line; the number of the segment it went to, or None when the
        disk refused it (logged once per failure spell, never raised)."""
        line = (_ENCODER.encode(record) + "\n").encode()
        try:
            fd = self._fd
            if fd is None or self._size >= self._segment_bytes:
                fd = self._next_segment()
            written = os.write(fd, line)
            if written != len(line):
                # A short write (disk full) would glue the next line to this torn one.
                os.ftruncate(fd, self._size)
                raise OSError("short write to the audit journal")
        except OSError as exc:
            if not self._failing:
                logger.error("audit journal not writable", extra={"error": type(exc).__name__})
            self._failing = True
            return None
        self._failing = False
        self._size += written
        return self._segment

    def release(self, before: int) -> None:
        """Delete this run's segments numbered below before (their events are stored)."""
        while self._segments and self._segments[0] < before:
            self._unlink(self._segments.pop(0))

    def clear(self) -> None:
        """Every event appended so far is stored: delete the older segments, empty the current."""
        self.release(self._segment)
        if self._fd is not None and self._size:
            try:
                os.ftruncate(self._fd, 0)
            except OSError as exc:
                logger.warning("audit journal not truncated", extra={"error": type(exc).__name__})
            else:
                self._size = 0

    def close(self, *, remove: bool) -> None:
        """Stop writing; with remove, delete this run's files (only when all events are stored)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is None:
            return  # nothing of this run is on disk
        if remove:
            for segment in self._segments:
                self._unlink(segment)
            self._segments = []
            try:
                (self._dir / f"{self._run}.lock").unlink(missing_ok=True)
            except OSError as exc:
                logger.warning(
                    "audit journal lock not removed", extra={"error": type(exc).__name__}
                )
        os.close(self._lock_fd)  # a run left on disk is recovered by the next start
        self._lock_fd = None

    def recover(self, adopt: Callable[[Path], None]) -> int:
        """Hand every segment of runs that ended without clearing up (crashed) to adopt,
        oldest first, then forget those runs; the number of segments handed over.
        Raises OSError when the directory cannot be read."""
        if not self._dir.is_dir():
            return 0
        # Segments first, locks second: a run locks its lock file before its first segment, so
        # a segment listed here belongs to a run whose lock is held for as long as it lives.
        segments = sorted(self._dir.glob("*.jsonl"))
        ended: dict[str, bool] = {}
        adopted = 0
        for segment in segments:
            run = _run_of(segment)
            if run == self._run:
                continue
            if run not in ended:
                ended[run] = not _held(self._dir / f"{run}.lock")
            if not ended[run]:
                continue
            try:
                adopt(segment)
            except FileNotFoundError:
                continue  # another process starting at the same time took it
            adopted += 1
        for lock in [*self._dir.glob("*.lock"), *self._dir.glob(".*.lock.new")]:
            if not lock.name.startswith((self._run, f".{self._run}")) and not _held(lock):
                lock.unlink(missing_ok=True)
        return adopted

    def _next_segment(self) -> int:
        if self._lock_fd is None:
            self._lock_fd = self._take_lock()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        segment = self._segment + 1
        fd = os.open(self._path(segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        self._fd, self._segment, self._size = fd, segment, 0
        self._segments.append(segment)
        return fd

    def _take_lock(self) -> int:
        """Create this run's lock file already locked (locked under a hidden name, then renamed),
        so that an unlocked lock file always means a run that ended."""
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        new = self._dir / f".{self._run}.lock.new"
        fd = os.open(new, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            new.rename(self._dir / f"{self._run}.lock")
        except OSError:
            os.close(fd)
            new.unlink(missing_ok=True)
            raise
        return fd

    def _path(self, segment: int) -> Path:
        return self._dir / f"{self._run}-{segment:06d}.jsonl"

    def _unlink(self, segment: int) -> None:
        try:
            self._path(segment).unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("audit journal segment not removed", extra={"error": type(exc).__name__})
