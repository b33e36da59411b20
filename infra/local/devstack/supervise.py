"""Keep the local stack's processes running: restart what exits, give up on what keeps crashing.

``Supervisor`` watches the processes ``python -m devstack up`` started. A process that exits
while the stack runs is logged (exit status or signal, the tail of its log) and started again
after a backoff that doubles with each crash (``BACKOFF_FIRST`` up to ``BACKOFF_MAX``); the
other processes keep serving meanwhile. A process that crashed ``GIVE_UP_AFTER`` times within
``CRASH_WINDOW`` seconds is reported and left stopped. Services that were reused (already
running before the stack started) are not this stack's to restart.

Restarts run the same start function as the first start, which waits until the service is
ready again; a start that fails counts as one more crash.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from devstack.procs import Service, StackError

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
GIVE_UP_AFTER = 5
CRASH_WINDOW = 300.0


def exit_reason(returncode: int) -> str:
    """'killed by SIGKILL' for a negative status (or a shell's 128+N), else 'exited with N'."""
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if number:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(number).name}"
    return f"exited with status {returncode}"


@dataclass
class Watched:
    """One supervised service: how to start it, its current run, its recent crashes."""

    name: str
    start: Callable[[], Service]
    service: Service
    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    given_up: bool = False


class Supervisor:
    """Start services, restart the ones that exit, stop them all at the end."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        out: TextIO | None = None,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        give_up_after: int = GIVE_UP_AFTER,
        crash_window: float = CRASH_WINDOW,
    ) -> None:
        self._clock = clock
        self._out = out
        self._backoff_first = backoff_first
        self._backoff_max = backoff_max
        self._give_up_after = give_up_after
        self._crash_window = crash_window
        self.watched: list[Watched] = []

    def _say(self, message: str) -> None:
        print(f"devstack: {message}", file=self._out or sys.stderr, flush=True)

    def add(self, name: str, start: Callable[[], Service]) -> Service:
        """Start a service once (raises StackError as its start does) and watch it."""
        service = start()
        self.watched.append(Watched(name=name, start=start, service=service))
        return service

    def check(self) -> None:
        """One round: note the services that exited, restart those whose backoff has passed."""
        for watched in self.watched:
            if watched.given_up:
                continue
            if watched.restart_at is None:
                self._note_exit(watched)
            elif self._clock() >= watched.restart_at:
                self._restart(watched)

    def _note_exit(self, watched: Watched) -> None:
        process = watched.service.process
        if process is None or process.poll() is None:
            return
        _kill_group(process.pid)  # a wrapper's child (Keycloak's java) may outlive it
        tail = "\n".join(f"    {line}" for line in watched.service.log_tail(10).splitlines())
        self._crashed(watched, f"{watched.name} {exit_reason(process.returncode)}", tail)

    def _crashed(self, watched: Watched, what: str, tail: str) -> None:
        now = self._clock()
        watched.crashes.append(now)
        while watched.crashes and watched.crashes[0] < now - self._crash_window:
            watched.crashes.popleft()
        count = len(watched.crashes)
        if count >= self._give_up_after:
            watched.given_up = True
            watched.restart_at = None
            self._say(
                f"{what}; it crashed {count} times in {self._crash_window:.0f}s: giving up on "
                f"{watched.name}, the rest of the stack keeps running (see its log)"
                + (f"\n{tail}" if tail else "")
            )
            return
        delay = min(self._backoff_first * 2 ** (count - 1), self._backoff_max)
        watched.restart_at = now + delay
        self._say(
            f"{what}; restarting it in {delay:.0f}s (crash {count} of {self._give_up_after} "
            f"allowed in {self._crash_window:.0f}s)" + (f"\n{tail}" if tail else "")
        )

    def _restart(self, watched: Watched) -> None:
        started = self._clock()
        try:
            service = watched.start()
        except StackError as exc:
            watched.restart_at = None
            self._crashed(watched, f"{watched.name} did not start again: {exc}", "")
            return
        watched.service = service
        watched.restart_at = None
        if service.process is None:
            # Something else serves the port now: not ours to restart any more.
            watched.given_up = True
            self._say(f"{watched.name} is served by another process now; not supervised")
            return
        self._say(f"{watched.name} is back ({self._clock() - started:.1f}s to ready)")

    def stop_all(self) -> None:
        """Stop every service this supervisor started, the last started first."""
        for watched in reversed(self.watched):
            watched.service.stop()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
