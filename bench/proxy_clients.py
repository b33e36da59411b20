"""Benchmark the gateway's candidate upstream HTTP clients as minimal reverse proxies.

Measures, on loopback: the upstream directly (the ceiling), nginx (the native floor) and one bare
ASGI proxy per client library, each with wrk. All servers start once; the targets are measured in
interleaved rounds so that a burst of other load on the machine hits one round, not one target,
and the best round per target is reported. Prints Markdown and adds it to RESULTS.md.
Run it through ``bench/run.sh``, which installs wrk, nginx and the scratch virtualenv first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from forwarders import FACTORIES
from loadgen import Workload, run_wrk
from processes import Server, free_port, system_busy_seconds, wait_for_quiet
from report import Measurement, TargetRun, prepend_section, render
from targets import (
    HERE,
    POST_BYTES,
    WORK,
    check_answers,
    labels,
    start_target,
    start_upstream,
    tool_version,
    version,
)

DEFAULT_TARGETS = [
    "nginx",
    "aiohttp",
    "httpx-aiohttp",
    "httpx",
    "httpx-defaults",
    "httpx2",
    "httpx2-aiohttp",
]


@dataclass(frozen=True)
class Pins:
    """CPU lists for taskset: load generator, server under test, upstream behind a proxy."""

    loadgen: str | None
    server: str | None
    upstream: str | None


@dataclass
class Target:
    """A started server, the URL wrk loads, and where its numbers go."""

    run: TargetRun
    server: Server
    url: str


def measure_round(
    target: Target,
    behind: Server | None,
    workloads: list[Workload],
    seconds: dict[str, int],
    pins: Pins,
) -> None:
    """Warm up, then run every workload once, accounting the CPU used by everything else."""
    run_wrk(target.url, workloads[0], seconds["warmup"], pins.loadgen)
    for workload in workloads:
        server = target.server
        cpu, busy = server.cpu_seconds(), system_busy_seconds()
        upstream_cpu, started = (behind.cpu_seconds() if behind else 0.0), time.monotonic()
        result = run_wrk(target.url, workload, seconds[workload.key], pins.loadgen)
        wall = time.monotonic() - started
        cpu = server.cpu_seconds() - cpu
        upstream_cpu = (behind.cpu_seconds() if behind else 0.0) - upstream_cpu
        other = system_busy_seconds() - busy - cpu - upstream_cpu - result.loadgen_cpu_seconds
        share = max(0.0, other) / (wall * (os.cpu_count() or 1))
        target.run.add(workload.key, Measurement(result, cpu, share))
        print(
            f"  {target.run.name:15} {workload.key:7} {result.rps:9,.0f} req/s"
            f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  errors {result.errors}",
            flush=True,
        )


def notes(args: argparse.Namespace, pins: Pins, seconds: dict[str, int], load: str) -> list[str]:
    """The facts a reader needs to judge the numbers."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    pinning = (
        f"taskset: wrk on CPU {pins.loadgen}, server under test on CPU {pins.server}, "
        f"upstream on CPU {pins.upstream} behind a proxy (on CPU {pins.server} when measured "
        "directly)"
        if pins.server
        else "no CPU pinning"
    )
    wrk = tool_version(["wrk", "-v"]).split()[1]
    return [
        f"Machine: {os.cpu_count()} x {cpu}, Linux {platform.release()}, "
        f"Python {platform.python_version()}; load average before the run: {load}.",
        f"Servers: uvicorn {version('uvicorn')} (uvloop {version('uvloop')}, "
        f"httptools {version('httptools')}), one worker each; nginx with one worker; "
        f"wrk {wrk}, 1 thread.",
        f"{pinning}.",
        f"{args.rounds} interleaved rounds; per target and round: {seconds['warmup']} s warm-up, "
        f"GET {seconds['get']} s, POST, SSE and 1-connection GET {seconds['post']} s each. "
        "Each cell is the round with the higher throughput. Before each target and round the run "
        f"waits (at most {args.quiet_wait:g} s in all) until other load is below "
        f"{args.quiet_below:.0%} of the cores.",
        "server CPU µs/req: CPU time of the server under test (proxy or nginx; the upstream in "
        "the direct row) divided by requests served. other CPU: share of both cores busy outside "
        "wrk, the proxy and the upstream (kernel loopback work, other processes on the machine).",
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    choices = ["nginx", *sorted(FACTORIES)]
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help=",".join(choices))
    parser.add_argument("--duration", type=float, default=10.0, help="GET seconds per target")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per target")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-pin", action="store_true", help="let the scheduler place processes")
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=0.2,
        help="before each target and round, wait until other load is below this share of all cores",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=60.0, help="total seconds the run may wait for that"
    )
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--command", help="command line to record (set by run.sh)")
    args = parser.parse_args()
    args.target_list = [name for name in args.targets.split(",") if name]
    unknown = sorted(set(args.target_list) - set(choices))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {choices}")
    return args


def main() -> None:
    """Start every server, measure them in rounds, print the report and add it to RESULTS.md."""
    args = parse_args()
    pins = Pins(None, None, None) if args.no_pin else Pins("0", "1", "0")
    command = args.command or shlex.join(["python", "bench/proxy_clients.py", *sys.argv[1:]])
    per_round = {
        "warmup": math.ceil(args.warmup / args.rounds),
        "get": math.ceil(args.duration / args.rounds),
        "other": math.ceil(0.4 * args.duration / args.rounds),
    }
    seconds = {**per_round, "post": per_round["other"], "sse": per_round["other"]}
    seconds["get-c1"] = per_round["other"]
    workloads = [
        Workload("get", "/json", args.connections),
        Workload("post", "/echo", args.connections, post_bytes=POST_BYTES),
        Workload("sse", "/sse", args.connections),
        Workload("get-c1", "/json", 1),
    ]
    signal.signal(signal.SIGTERM, _terminate)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    names = labels()
    began = dt.datetime.now(dt.UTC)
    with ExitStack() as stack:
        upstream_port = free_port()
        upstream = start_upstream(upstream_port, pins.server)
        stack.callback(upstream.stop)
        targets = [Target(TargetRun("direct", names["direct"]), upstream, "")]
        targets[0].url = f"http://127.0.0.1:{upstream_port}"
        for name in args.target_list:
            port = free_port()
            server = start_target(name, port, upstream_port, pins.server)
            stack.callback(server.stop)
            check_answers(f"http://127.0.0.1:{port}")
            targets.append(Target(TargetRun(name, names[name]), server, f"http://127.0.0.1:{port}"))
        for target in targets:
            target.run.idle_rss_kib = target.server.rss_kib()
        quiet_budget = args.quiet_wait
        for index in range(args.rounds):
            print(f"round {index + 1}/{args.rounds}", flush=True)
            for target in targets:
                busy, waited = wait_for_quiet(args.quiet_below, quiet_budget)
                quiet_budget = max(0.0, quiet_budget - waited)
                if waited >= 1:
                    print(f"  waited {waited:.0f} s for other load to drop ({busy:.0%})")
                direct = target.server is upstream
                if pins.server and pins.upstream:
                    upstream.pin(_cpus(pins.server if direct else pins.upstream))
                measure_round(target, None if direct else upstream, workloads, seconds, pins)
        for target in targets:
            target.run.peak_rss_kib = target.server.rss_kib(peak=True)
    runs = [target.run for target in targets]
    minutes = (dt.datetime.now(dt.UTC) - began).total_seconds() / 60
    heading = f"## {began:%Y-%m-%d %H:%M} UTC — `{command}`"
    waited = args.quiet_wait - quiet_budget
    run_notes = [
        *notes(args, pins, seconds, load),
        f"Whole run took {minutes:.1f} min, {waited:.0f} s of it waiting for other load to drop.",
    ]
    section = render(runs, heading, run_notes, args.connections, POST_BYTES)
    print("\n" + section)
    prepend_section(args.results, section)
    raw = WORK / f"results-{began:%Y%m%dT%H%M%S}.json"
    raw.write_text(json.dumps([asdict(run) for run in runs], indent=2))
    print(f"Added to {args.results}; every round in {raw}")


def _cpus(spec: str) -> set[int]:
    return {int(cpu) for cpu in spec.split(",")}


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    main()
