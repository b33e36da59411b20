"""devstack.supervise: exits are logged and restarted with backoff; crash loops are given up."""

from __future__ import annotations

import io
import signal
import sys
from collections.abc import Callable, Iterator

import pytest

from devstack.procs import Service, StackError, start
from devstack.supervise import Supervisor, exit_reason


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _sleeper() -> Service:
    return start("supervise-test", [sys.executable, "-c", "import time; time.sleep(60)"], url="")


@pytest.fixture
def supervisor() -> Iterator[tuple[Supervisor, Clock, io.StringIO]]:
    clock, out = Clock(), io.StringIO()
    sup = Supervisor(clock=clock, out=out, backoff_first=1, backoff_max=8, give_up_after=3)
    yield sup, clock, out
    sup.stop_all()


def _kill(service: Service) -> None:
    assert service.process is not None
    service.process.send_signal(signal.SIGKILL)
    service.process.wait(timeout=5)


@pytest.mark.parametrize(
    ("code", "reason"),
    [(-9, "killed by SIGKILL"), (137, "killed by SIGKILL"), (1, "exited with status 1")],
)
def test_exit_reason_names_the_signal_or_the_status(code: int, reason: str) -> None:
    """A negative status or a shell's 128+N names the signal; others are the status."""
    assert exit_reason(code) == reason


def test_a_killed_process_is_logged_and_restarted_after_its_backoff(
    supervisor: tuple[Supervisor, Clock, io.StringIO],
) -> None:
    """The exit and its reason are logged; the restart waits for the backoff, then runs."""
    sup, clock, out = supervisor
    first = sup.add("sleeper", _sleeper)
    _kill(first)
    sup.check()
    assert "sleeper killed by SIGKILL; restarting it in 1s" in out.getvalue()
    assert sup.watched[0].service is first
    clock.now = 1.0
    sup.check()
    again = sup.watched[0].service
    assert again is not first
    assert again.process is not None
    assert again.process.poll() is None
    assert "sleeper is back" in out.getvalue()


def test_backoff_doubles_and_a_crash_loop_is_given_up(
    supervisor: tuple[Supervisor, Clock, io.StringIO],
) -> None:
    """Each crash within the window doubles the wait; the third is reported and not restarted."""
    sup, clock, out = supervisor
    sup.add("sleeper", _sleeper)
    for expected in ("1s", "2s"):
        _kill(sup.watched[0].service)
        sup.check()
        assert f"restarting it in {expected}" in out.getvalue()
        clock.now += 10
        sup.check()
    _kill(sup.watched[0].service)
    sup.check()
    assert "giving up on sleeper" in out.getvalue()
    clock.now += 100
    sup.check()
    assert sup.watched[0].given_up
    process = sup.watched[0].service.process
    assert process is not None
    assert process.poll() is not None


def test_a_failed_restart_counts_as_a_crash(
    supervisor: tuple[Supervisor, Clock, io.StringIO],
) -> None:
    """A start that raises StackError is logged and tried again after a longer backoff."""
    sup, clock, out = supervisor
    starts: list[Callable[[], Service]] = [_sleeper, _failing, _sleeper]

    def start_next() -> Service:
        return starts.pop(0)()

    sup.add("flaky", start_next)
    _kill(sup.watched[0].service)
    sup.check()
    clock.now = 1.0
    sup.check()
    assert "flaky did not start again: port taken; restarting it in 2s" in out.getvalue()
    clock.now = 3.0
    sup.check()
    assert "flaky is back" in out.getvalue()


def _failing() -> Service:
    raise StackError("port taken")


def test_reused_services_are_not_watched(
    supervisor: tuple[Supervisor, Clock, io.StringIO],
) -> None:
    """A service this stack did not start (no process) is never restarted."""
    sup, _, out = supervisor
    sup.add("reused", lambda: Service(name="reused", url="redis://127.0.0.1:1"))
    sup.check()
    assert out.getvalue() == ""
