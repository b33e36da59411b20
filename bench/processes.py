"""Start, pin, watch and stop the benchmark's server processes (Linux /proc only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A server could not be started, did not answer, or answered wrongly."""


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_call(url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET (or a POST of ``body``), never through an environment proxy."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"the benchmark only talks to loopback over http, not {url!r}")
    request = urllib.request.Request(url, data=body)  # noqa: S310 - loopback http, checked above
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """``argv`` prefixed by ``taskset`` when ``cpus`` (a list such as "0" or "0,1") is given."""
    return ["taskset", "-c", cpus, *argv] if cpus else list(argv)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def system_busy_seconds() -> float:
    """CPU time spent by the whole machine outside idle and iowait since boot, all cores."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def wait_for_quiet(threshold: float, budget: float, sample: float = 0.5) -> tuple[float, float]:
    """Wait (at most ``budget`` seconds) until the machine's busy share drops below ``threshold``.

    Call it while the benchmark's own processes are idle: what is busy then is someone else.
    Returns the last busy share seen (0-1 of all cores) and the seconds waited.
    """
    cores = os.cpu_count() or 1
    started = time.monotonic()
    while True:
        before = system_busy_seconds()
        time.sleep(sample)
        share = (system_busy_seconds() - before) / (sample * cores)
        waited = time.monotonic() - started
        if share < threshold or waited >= budget:
            return share, waited


@dataclass
class Server:
    """A server process this benchmark started, with its worker children (nginx) if any."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def pids(self) -> list[int]:
        return [self.process.pid, *_children(self.process.pid)]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its children, all threads."""
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / CLOCK_TICKS

    def rss_kib(self, peak: bool = False) -> int:
        """Resident memory now (or its high-water mark), summed over master and workers."""
        return sum(_status_kib(pid, "VmHWM" if peak else "VmRSS") for pid in self.pids())

    def pin(self, cpus: set[int]) -> None:
        """Move every thread of every process of this server onto ``cpus``."""
        for pid in self.pids():
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.sched_setaffinity(int(task.name), cpus)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process group; kill it if it does not exit in time."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


def start(name: str, argv: Sequence[str], log_dir: Path, ready_url: str) -> Server:
    """Start ``argv`` in its own process group and wait until ``ready_url`` answers 200."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name, process, log_path)
    try:
        _wait_ready(server, ready_url)
    except BaseException:  # also Ctrl-C or SIGTERM: never leave a half-started server behind
        server.stop()
        raise
    return server


def _wait_ready(server: Server, ready_url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            code = server.process.returncode
            raise BenchError(f"{server.name} exited with {code}:\n{server.log_tail()}")
        try:
            if http_call(ready_url, timeout=1)[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise BenchError(f"{server.name} did not answer within {timeout:g} s:\n{server.log_tail()}")
