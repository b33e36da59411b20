"""Drive wrk against one URL and read back its summary (throughput, latency percentiles, errors)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path

from processes import BenchError, pinned

SCRIPT = Path(__file__).resolve().parent / "wrk_report.lua"
MARKER = "BENCH_JSON "


@dataclass(frozen=True)
class Workload:
    """One kind of wrk run: which path, how many connections, and a POST body size if any."""

    key: str
    path: str
    connections: int
    post_bytes: int = 0


@dataclass(frozen=True)
class WrkResult:
    """What wrk measured, plus the CPU time wrk itself used."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    loadgen_cpu_seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(base_url: str, workload: Workload, seconds: float, cpus: str | None) -> WrkResult:
    """Run wrk (one thread, ``--latency``) for ``seconds`` and parse its JSON summary line."""
    argv = [
        "wrk",
        "-t1",
        f"-c{workload.connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-s",
        str(SCRIPT),
        base_url + workload.path,
    ]
    env = {**os.environ, "BENCH_POST_BYTES": str(workload.post_bytes)}
    return wrk(argv, env, seconds, cpus)


def wrk(argv: list[str], env: dict[str, str], seconds: float, cpus: str | None) -> WrkResult:
    """Run a wrk command line whose script prints the JSON summary line; the parsed result."""
    before = _children_cpu_seconds()
    done = subprocess.run(
        pinned(argv, cpus), env=env, capture_output=True, text=True, timeout=seconds + 30
    )
    loadgen_cpu = _children_cpu_seconds() - before
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    data = json.loads(lines[-1][len(MARKER) :])
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=sum(data["errors"].values()),
        loadgen_cpu_seconds=loadgen_cpu,
    )
