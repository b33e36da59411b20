"""Benchmark the gateway itself: the cost of its pipeline over a bare hop, on loopback.

Rows: the upstream directly, nginx in front of it (the native floor), and the real gateway app
(uvicorn, ``gateway_app:app``) proxying ``GET /json`` to the upstream, authenticated with a
Keycloak-shaped RS256 bearer token or with an API key; Redis (a throw-away ``redis-server``)
backs the rate limiter, whose limits are set so high that it never refuses. A static file server
publishes the OIDC discovery document and JWKS in Keycloak's place.

Per row: 32 connections (saturation), 1 connection (one hop's latency), and a paced run at half
the row's saturation throughput, with the upstream measured directly at the same rate so that
"added" is the gateway's own share. Prints Markdown and adds it to RESULTS.md.
Run it through ``bench/run_gateway.sh``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

from gateway_setup import (
    access_token,
    seed_api_keys,
    seed_owner_standing,
    write_oidc,
    write_policy,
)
from joserfc.jwk import RSAKey
from loadgen import WrkResult, wrk
from processes import (
    BenchError,
    Server,
    free_port,
    pinned,
    start,
    system_busy_seconds,
    wait_for_quiet,
)
from report import prepend_section
from targets import HERE, WORK, start_target, start_upstream, tool_version, version

ROOT = HERE.parent
SCRIPT = HERE / "wrk_gateway.lua"
GW = WORK / "gateway"
PEPPER = "bench-only-api-key-pepper"
PACED_CONNECTIONS = 16


@dataclass
class Row:
    """One measured target and credential."""

    label: str
    sat: dict[str, float] = field(default_factory=dict)
    c1: dict[str, float] = field(default_factory=dict)
    paced: dict[str, float] = field(default_factory=dict)


def run_wrk(
    url: str,
    connections: int,
    seconds: float,
    cpus: str | None,
    header: tuple[str, str] | None = None,
    delay_ms: float = 0.0,
) -> WrkResult:
    """wrk, one thread, with the gateway script (credential header, optional pacing)."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    argv += ["-s", str(SCRIPT), url]
    env = {**os.environ, "BENCH_DELAY_MS": f"{delay_ms:.3f}"}
    if header:
        env["BENCH_HEADER_NAME"], env["BENCH_HEADER_VALUE"] = header
    return wrk(argv, env, seconds, cpus)


def measured(
    server: Server,
    behind: Server | None,
    url: str,
    connections: int,
    seconds: float,
    cpus: str | None,
    header: tuple[str, str] | None = None,
    delay_ms: float = 0.0,
) -> dict[str, float]:
    """One wrk run with the server's CPU per request and the other load on the machine."""
    cpu, busy, up = (
        server.cpu_seconds(),
        system_busy_seconds(),
        behind.cpu_seconds() if behind else 0,
    )
    started = time.monotonic()
    result = run_wrk(url, connections, seconds, cpus, header, delay_ms)
    wall = time.monotonic() - started
    cpu = server.cpu_seconds() - cpu
    up = (behind.cpu_seconds() if behind else 0) - up
    other = system_busy_seconds() - busy - cpu - up - result.loadgen_cpu_seconds
    return {
        "rps": result.rps,
        "p50": result.p50_ms,
        "p99": result.p99_ms,
        "errors": result.errors,
        "cpu_us": cpu / max(1, result.requests) * 1e6,
        "other": max(0.0, other) / (wall * (os.cpu_count() or 1)),
        "rss_mib": server.rss_kib() / 1024,
    }


def start_redis(port: int) -> Server:
    """A throw-away redis-server on loopback, without persistence."""
    log = WORK / "logs" / "redis.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(GW)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server("redis", process, log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise BenchError(f"redis-server did not start:\n{server.log_tail()}")


@dataclass
class Backends:
    """What a gateway under test talks to: the upstream, a stand-in OIDC provider, Redis."""

    upstream: Server
    upstream_port: int
    oidc_port: int
    redis_port: int
    oidc_base: str
    key: RSAKey

    def gateway_env(self, name: str, policy: Path) -> dict[str, str]:
        return gateway_env(name, self.upstream_port, self.oidc_port, self.redis_port, policy)


def start_backends(stack: ExitStack, oidc_folder: str, upstream_cpus: str) -> Backends:
    """Start the upstream, the OIDC file server (keys in GW/oidc_folder) and Redis; stack
    stops them."""
    up_port, oidc_port, redis_port = free_port(), free_port(), free_port()
    upstream = start_upstream(up_port, upstream_cpus)
    stack.callback(upstream.stop)
    oidc_base = f"http://127.0.0.1:{oidc_port}"
    key = write_oidc(GW / oidc_folder, oidc_base)
    oidc_argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1"]
    oidc_argv += ["--directory", str(GW / oidc_folder), str(oidc_port)]
    discovery = f"{oidc_base}/realms/mro/.well-known/openid-configuration"
    oidc = start("oidc", oidc_argv, WORK / "logs", discovery)
    stack.callback(oidc.stop)
    redis = start_redis(redis_port)
    stack.callback(redis.stop)
    seed_owner_standing(redis_port)
    return Backends(upstream, up_port, oidc_port, redis_port, oidc_base, key)


def start_gateway(
    name: str, port: int, env: dict[str, str], workers: int, cpus: str | None, profile: Path | None
) -> Server:
    """The gateway app under uvicorn, as ``python -m gateway`` configures it."""
    argv = [sys.executable, "-m", "uvicorn", "gateway_app:app", "--factory", "--app-dir", str(HERE)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    argv += ["--no-access-log", "--no-server-header", "--no-proxy-headers", "--lifespan", "on"]
    argv += ["--ws", "none", "--log-level", "warning"]
    previous = dict(os.environ)
    os.environ.update({**env, "MRO_GATEWAY_PORT": str(port), "PYTHONPATH": str(ROOT)})
    if profile:
        os.environ["BENCH_PROFILE_FILE"] = str(profile)
    try:
        return start(name, pinned(argv, cpus), WORK / "logs", f"http://127.0.0.1:{port}/healthz")
    finally:
        os.environ.clear()
        os.environ.update(previous)


def gateway_env(name: str, upstream: int, oidc: int, redis: int, policy: Path) -> dict[str, str]:
    database = GW / f"{name}.db"
    return {
        "MRO_GATEWAY_ORCHESTRATOR_URL": f"http://127.0.0.1:{upstream}",
        "MRO_GATEWAY_KEYCLOAK_URL": f"http://127.0.0.1:{oidc}",
        "MRO_GATEWAY_REDIS_URL": f"redis://127.0.0.1:{redis}/0",
        "MRO_GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "MRO_GATEWAY_POLICY_FILE": str(policy),
        "MRO_GATEWAY_API_KEY_PEPPER": PEPPER,
        "MRO_GATEWAY_AUDIT_SPOOL_DIR": str(GW / f"{name}-spool"),
        "MRO_GATEWAY_LOG_LEVEL": "INFO",
    }


def check(url: str, header: tuple[str, str] | None) -> None:
    """Refuse to measure a target that does not answer 200 with the upstream's body."""
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*", url]
    if header:
        argv += ["-H", f"{header[0]}: {header[1]}"]
    code = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    if code != "200":
        raise BenchError(f"GET {url} answered {code}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per saturation run")
    parser.add_argument("--short", type=float, default=3.0, help="seconds per 1-conn/paced run")
    parser.add_argument("--workers", default="1,2,4", help="gateway worker counts to measure")
    parser.add_argument("--many-keys", type=int, default=10_000, help="API keys, large-DB row")
    parser.add_argument("--extra-routes", type=int, default=1_000, help="routes, large row")
    parser.add_argument("--profile", action="store_true", help="cProfile the JWT path at the end")
    parser.add_argument("--quiet-wait", type=float, default=30.0)
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--command", help="command line to record (set by run_gateway.sh)")
    return parser.parse_args()


@dataclass
class Target:
    """A started server, the URL wrk loads, the credential it sends."""

    row: Row
    server: Server
    url: str
    header: tuple[str, str] | None
    pinned_server: bool


def measure(target: Target, upstream: Server, args: argparse.Namespace) -> None:
    """Warm up; saturation, 1 connection, then paced at half saturation (and direct alike)."""
    row, server = target.row, target.server
    upstream.pin({0})
    run_wrk(target.url, 32, 1, "0", target.header)
    row.sat = measured(server, upstream, target.url, 32, args.duration, "0", target.header)
    row.c1 = measured(server, upstream, target.url, 1, args.short, "0", target.header)
    rate = row.sat["rps"] / 2
    delay = max(0.0, PACED_CONNECTIONS / rate * 1000 - row.c1["p50"])
    paced = measured(
        server, upstream, target.url, PACED_CONNECTIONS, args.short, "0", target.header, delay
    )
    upstream.pin({1})
    direct_url = target.url.rsplit(":", 1)[0] + f":{upstream_port(upstream)}/json"
    direct = measured(upstream, None, direct_url, PACED_CONNECTIONS, args.short, "0", None, delay)
    row.paced = {
        "target_rps": rate,
        "rps": paced["rps"],
        "p50": paced["p50"],
        "p99": paced["p99"],
        "errors": paced["errors"],
        "direct_p50": direct["p50"],
        "direct_p99": direct["p99"],
    }
    print(
        f"  {row.label}: {row.sat['rps']:,.0f} req/s, paced {paced['rps']:,.0f} req/s", flush=True
    )


def upstream_port(upstream: Server) -> int:
    argv = upstream.process.args
    assert isinstance(argv, list)
    return int(argv[argv.index("--port") + 1])


def render(rows: list[Row], direct: Row, heading: str, notes: list[str]) -> str:
    nginx = next(r for r in rows if r.label.startswith("nginx"))
    out = [heading, "", *(f"- {n}" for n in notes), "", "GET /json, 32 connections:", ""]
    out += [
        "| target | req/s | % of nginx | p50 ms | p99 ms | server CPU µs/req | RSS MiB "
        "(at load) | errors | other CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in [direct, *rows]:
        s = r.sat
        out.append(
            f"| {r.label} | {s['rps']:,.0f} | {s['rps'] / nginx.sat['rps']:.0%} | {s['p50']:.2f} "
            f"| {s['p99']:.2f} | {s['cpu_us']:.0f} | {s['rss_mib']:.0f} | {s['errors']:.0f} "
            f"| {s['other']:.0%} |"
        )
    out += [
        "",
        "Latency the hop adds over the upstream direct: at 1 connection (p50 minus direct's 1-conn "
        f"p50), and paced at half the row's own saturation throughput ({PACED_CONNECTIONS} "
        "connections; the upstream measured directly at the same pacing right after):",
        "",
        "| target | 1-conn p50 ms | 1-conn p99 ms | adds at 1 conn (p50) ms | paced req/s (% of "
        "saturation) | paced p50 / p99 ms | direct at same pace p50 / p99 ms "
        "| adds p50 ms (target ≤ 0.5) | adds p99 ms (target ≤ 3) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        p, c = r.paced, r.c1
        add50, add99 = p["p50"] - p["direct_p50"], p["p99"] - p["direct_p99"]
        out.append(
            f"| {r.label} | {c['p50']:.2f} | {c['p99']:.2f} | {c['p50'] - direct.c1['p50']:.2f} "
            f"| {p['rps']:,.0f} ({p['rps'] / r.sat['rps']:.0%}) | {p['p50']:.2f} / {p['p99']:.2f} "
            f"| {p['direct_p50']:.2f} / {p['direct_p99']:.2f} | {add50:.2f} | {add99:.2f} |"
        )
    return "\n".join(out) + "\n"


_STARTUP = ("<frozen", "importlib", "<module>", "builtins.compile", "builtins.exec")
_STARTUP += ("__build_class__", "create_app", "marshal")


def profile_summary(path: Path, requests: int, top: int = 12) -> list[str]:
    """Costs per request from a cProfile dump: the gateway's own steps, then the hottest functions.

    The profile starts at the first request (``gateway_app``); times are per request served
    while profiled, and cProfile's overhead inflates them all alike.
    """
    import pstats

    entries = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]

    def name(key: tuple[str, int, str]) -> str:
        filename, line, func = key
        short = re.sub(r".*/(site-packages|python3\.\d+)/", "", filename.replace(f"{ROOT}/", ""))
        return f"{short}:{line}({func})" if line else func

    def startup(key: tuple[str, int, str]) -> bool:
        return any(mark in f"{key[0]}:{key[2]}" for mark in _STARTUP)

    per = 1e6 / max(1, requests)
    runtime = [(k, v) for k, v in entries.items() if not startup(k)]
    own_total = sum(v[2] for _, v in runtime) * per
    lines = [f"all functions outside start-up: {own_total:,.0f} µs of own time per request"]
    steps = [(k, v) for k, v in runtime if "/gateway/" in k[0] and str(ROOT) in k[0]]
    steps.sort(key=lambda item: item[1][3], reverse=True)
    lines += [f"cum {v[3] * per:6,.0f} µs/req — `{name(k)}`" for k, v in steps[:top]]
    hottest = sorted(runtime, key=lambda item: item[1][2], reverse=True)[:top]
    lines += [f"own {v[2] * per:6,.0f} µs/req — `{name(k)}`" for k, v in hottest]
    return lines


def main() -> None:
    args = parse_args()
    command = args.command or shlex.join(["python", "bench/gateway_bench.py", *sys.argv[1:]])
    signal.signal(signal.SIGTERM, _terminate)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    began = dt.datetime.now(dt.UTC)
    shutil.rmtree(GW, ignore_errors=True)
    GW.mkdir(parents=True)
    rows: list[Row] = []
    profile_lines: list[str] = []
    with ExitStack() as stack:
        backends = start_backends(stack, "oidc", "1")
        upstream, up_port, oidc_base, key = (
            backends.upstream,
            backends.upstream_port,
            backends.oidc_base,
            backends.key,
        )
        packaged = ROOT / "gateway" / "policy" / "policy.toml"
        write_policy(packaged, GW / "policy.toml", 0)
        write_policy(packaged, GW / "policy-big.toml", args.extra_routes)
        env = backends.gateway_env("gw", GW / "policy.toml")
        api_key = seed_api_keys(env["MRO_GATEWAY_DATABASE_URL"], PEPPER, 1)
        big_env = backends.gateway_env("big", GW / "policy-big.toml")
        api_key_big = seed_api_keys(big_env["MRO_GATEWAY_DATABASE_URL"], PEPPER, args.many_keys)
        bearer = (
            "Authorization",
            "Bearer " + access_token(key, oidc_base, "tech-1", ["technician"]),
        )

        direct = Row(f"upstream direct (uvicorn {version('uvicorn')}, ceiling)")
        nginx_port = free_port()
        nginx = start_target("nginx", nginx_port, up_port, "1")
        stack.callback(nginx.stop)
        nginx_label = "nginx " + tool_version(["nginx", "-v"]).rsplit("/", 1)[-1] + " (floor)"
        targets = [
            Target(Row(nginx_label), nginx, f"http://127.0.0.1:{nginx_port}/json", None, True)
        ]
        workers = [int(w) for w in args.workers.split(",") if w]
        for count in workers:
            port = free_port()
            gw = start_gateway(
                f"gateway-{count}w", port, env, count, "1" if count == 1 else None, None
            )
            stack.callback(gw.stop)
            url = f"http://127.0.0.1:{port}/json"
            plural = "worker" if count == 1 else "workers"
            targets.append(
                Target(Row(f"gateway, {count} {plural}, JWT"), gw, url, bearer, count == 1)
            )
            key_header = ("X-API-Key", api_key)
            if count == 1:
                targets.append(Target(Row("gateway, 1 worker, API key"), gw, url, key_header, True))
        if args.many_keys or args.extra_routes:
            port = free_port()
            big = start_gateway("gateway-big", port, big_env, 1, "1", None)
            stack.callback(big.stop)
            url = f"http://127.0.0.1:{port}/json"
            label = f"gateway, 1 worker, {args.many_keys:,} keys + {args.extra_routes:,} routes"
            targets.append(Target(Row(label + ", JWT"), big, url, bearer, True))
            targets.append(
                Target(Row(label + ", API key"), big, url, ("X-API-Key", api_key_big), True)
            )
        for target in targets:
            check(target.url, target.header)

        budget = args.quiet_wait
        _, waited = wait_for_quiet(0.2, budget)
        budget -= waited
        upstream.pin({1})
        run_wrk(f"http://127.0.0.1:{up_port}/json", 32, 1, "0")
        direct.sat = measured(
            upstream, None, f"http://127.0.0.1:{up_port}/json", 32, args.duration, "0"
        )
        direct.c1 = measured(upstream, None, f"http://127.0.0.1:{up_port}/json", 1, args.short, "0")
        print(f"  direct: {direct.sat['rps']:,.0f} req/s", flush=True)
        for target in targets:
            _, waited = wait_for_quiet(0.2, max(0.0, budget))
            budget -= waited
            measure(target, upstream, args)
            rows.append(target.row)

        if args.profile:
            for target in targets:
                if target.server is not upstream:
                    target.server.stop()
            dump = GW / "gateway.prof"
            port = free_port()
            prof = start_gateway("gateway-profile", port, env, 1, "1", dump)
            stack.callback(prof.stop)
            url = f"http://127.0.0.1:{port}/json"
            check(url, bearer)
            upstream.pin({0})
            profiled = run_wrk(url, 32, args.duration, "0", bearer)
            prof.stop()  # the lifespan's shutdown writes the profile
            if dump.exists():
                profile_lines = profile_summary(dump, profiled.requests)
    minutes = (dt.datetime.now(dt.UTC) - began).total_seconds() / 60
    wrk = tool_version(["wrk", "-v"]).split()[1]
    notes = [
        f"Machine: {os.cpu_count()} cores, shared with other engineers' builds and tests; load "
        f"average before the run: {load}. Python {sys.version.split()[0]}, uvicorn "
        f"{version('uvicorn')} (uvloop {version('uvloop')}, httptools {version('httptools')}), "
        f"wrk {wrk} with 1 thread, redis-server {tool_version(['redis-server', '-v']).split()[2]}.",
        "taskset: wrk and the upstream on CPU 0, nginx and the 1-worker gateways on CPU 1; the "
        "2- and 4-worker gateways are not pinned (they share both cores with wrk and the "
        "upstream). The upstream moves to CPU 1 when measured directly.",
        "Gateway: the real app (`create_app` through `bench/gateway_app.py`, JSON access log on, "
        'audit to SQLite) proxying `GET /json` (policy route with `upstream = "orchestrator"`, '
        "permission `agents:read`) to the upstream with a signed assertion; rate limiter on a "
        "local redis-server with limits of 100,000,000/minute (it counts but never refuses). JWT: "
        "one RS256 token (technician) sent on every request, so after the first request the "
        "verified-token cache answers; API key: one key, cached after first use.",
        f"One round: 1 s warm-up, 32 connections for {args.duration:g} s, 1 connection and the "
        f"paced runs {args.short:g} s each. server CPU µs/req: CPU time of the process under test "
        "(all its workers) per request; other CPU: share of both cores busy outside wrk, the "
        "server and the upstream (kernel loopback work, Redis, other processes).",
        f"Whole run took {minutes:.1f} min.",
    ]
    heading = f"## Gateway {began:%Y-%m-%d %H:%M} UTC — `{command}`"
    section = render(rows, direct, heading, notes)
    if profile_lines:
        section += (
            "\nProfile of the 1-worker gateway on the JWT path (cProfile, 32 connections, "
            f"{args.duration:g} s; µs per request, inflated by the profiler; cum = the step with "
            "everything it calls, own = the function alone):\n\n"
            + "\n".join(f"- {line}" for line in profile_lines)
            + "\n"
        )
    print("\n" + section)
    prepend_section(args.results, section)
    raw = WORK / f"gateway-results-{began:%Y%m%dT%H%M%S}.json"
    raw.write_text(
        json.dumps({"direct": asdict(direct), "rows": [asdict(r) for r in rows]}, indent=2)
    )
    print(f"Added to {args.results}; raw numbers in {raw}")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    main()
