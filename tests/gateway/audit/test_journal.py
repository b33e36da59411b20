"""The audit journal: lines on disk at once, segments released once stored, a crashed run's
segments recovered and a live run's never."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devstack.paths import ROOT
from gateway.audit.journal import AuditJournal

# A process that journals three records and is then killed: nothing of its own cleans up.
KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from gateway.audit.journal import AuditJournal

journal = AuditJournal(Path(sys.argv[1]))
for n in range(3):
    journal.append({"n": n})
os.kill(os.getpid(), signal.SIGKILL)
"""


def _lines(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(line) for path in paths for line in path.read_text("utf-8").splitlines()]


def _segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jsonl"))


def test_an_appended_record_is_in_the_file_when_append_returns(tmp_path: Path) -> None:
    """Each append is one line another reader sees at once (nothing buffered in the process)."""
    journal = AuditJournal(tmp_path / "journal")
    assert journal.append({"n": 1, "at": "2030-01-01T00:00:00+00:00"}) == 1
    assert _lines(_segments(tmp_path / "journal")) == [{"n": 1, "at": "2030-01-01T00:00:00+00:00"}]
    journal.close(remove=True)


def test_segments_rotate_by_size_and_release_deletes_the_older_ones(tmp_path: Path) -> None:
    """Past segment_bytes a new segment starts; release(before=n) deletes segments below n."""
    journal = AuditJournal(tmp_path, segment_bytes=20)
    segments = [journal.append({"n": n, "pad": "x" * 10}) for n in range(4)]
    assert segments == [1, 2, 3, 4]
    journal.release(before=3)
    assert [record["n"] for record in _lines(_segments(tmp_path))] == [2, 3]
    journal.close(remove=True)


def test_clear_keeps_only_an_empty_current_segment(tmp_path: Path) -> None:
    """clear() deletes the older segments and empties the current one, which keeps taking lines."""
    journal = AuditJournal(tmp_path, segment_bytes=20)
    for n in range(3):
        journal.append({"n": n, "pad": "x" * 10})
    journal.clear()
    (current,) = _segments(tmp_path)
    assert current.read_bytes() == b""
    journal.append({"n": 9})
    assert _lines([current]) == [{"n": 9}]
    journal.close(remove=True)


def test_a_clean_close_removes_the_run(tmp_path: Path) -> None:
    """close(remove=True) leaves nothing of the run behind."""
    journal = AuditJournal(tmp_path, segment_bytes=20)
    for n in range(3):
        journal.append({"n": n, "pad": "x" * 10})
    journal.close(remove=True)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_process_leaves_its_lines_for_the_next_start(tmp_path: Path) -> None:
    """After SIGKILL the next run recovers every line the dead one appended, and its lock."""
    folder = tmp_path / "journal"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(folder)], cwd=ROOT, check=False, timeout=60
    )
    assert killed.returncode == -9
    adopted: list[Path] = []

    def adopt(path: Path) -> None:
        adopted.append(path.rename(tmp_path / f"adopted-{len(adopted)}.jsonl"))

    assert AuditJournal(folder).recover(adopt) == 1
    assert _lines(adopted) == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert list(folder.iterdir()) == []


def test_a_live_run_is_never_recovered(tmp_path: Path) -> None:
    """Segments of a run whose process lives (its lock is held) stay where they are."""
    live = AuditJournal(tmp_path)
    live.append({"n": 1})
    starting = AuditJournal(tmp_path)
    assert starting.recover(lambda path: pytest.fail(f"adopted a live segment: {path}")) == 0
    assert _lines(_segments(tmp_path)) == [{"n": 1}]
    live.close(remove=True)


def test_a_run_closed_without_removal_is_recovered(tmp_path: Path) -> None:
    """close(remove=False) (events left unwritten) hands the run to the next start's recover."""
    stopped = AuditJournal(tmp_path)
    stopped.append({"n": 1})
    stopped.close(remove=False)
    adopted: list[dict[str, Any]] = []
    assert AuditJournal(tmp_path).recover(lambda path: adopted.extend(_lines([path]))) == 1
    assert adopted == [{"n": 1}]


def test_an_unwritable_folder_never_raises_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When the folder cannot be made, append returns None (the event still goes to the queue)
    and logs one error for the spell, not one per event."""
    (tmp_path / "file").write_text("not a folder")
    journal = AuditJournal(tmp_path / "file" / "journal")
    with caplog.at_level(logging.ERROR, logger="gateway.audit.journal"):
        assert [journal.append({"n": n}) for n in range(3)] == [None, None, None]
    assert [r.getMessage() for r in caplog.records] == ["audit journal not writable"]
    journal.close(remove=True)
