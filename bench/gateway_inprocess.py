"""The gateway's CPU cost per request, driven in-process: no HTTP server, no wrk.

Steadier than ``gateway_bench.py`` on a shared machine, because it measures only the CPU time of
the one process that runs the gateway app. The real ``create_app`` (JSON access log on, audit to
SQLite, rate limits on a throw-away ``redis-server``, the benchmark upstream under uvicorn, a
static OIDC stand-in) answers ``GET /json`` to ``--concurrency`` coroutines that call it as ASGI,
``--requests`` requests a round, after a warm-up. The gateway process is pinned to CPU 1 and the
upstream to CPU 0.

``--tree`` names working trees to compare (``label=path``, the ``gateway`` package is imported
from each path); rounds alternate between them, so that a change in the machine's load hits
every tree alike. Prints one JSON object per round and a Markdown table of CPU µs per request::

    bench/.work/venv/bin/python bench/gateway_inprocess.py --tree before=../copy --tree after=.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


async def _drive(app: Any, headers: list[tuple[bytes, bytes]], count: int, tasks: int) -> int:
    """Send count requests from tasks coroutines; the number of 200 answers."""
    ok = 0
    remaining = count

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def one() -> None:
        nonlocal ok, remaining
        while remaining > 0:
            remaining -= 1
            status = 0

            async def send(message: dict[str, Any]) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]

            scope = {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": "/json",
                "raw_path": b"/json",
                "query_string": b"",
                "root_path": "",
                "headers": headers,
                "client": ("127.0.0.1", 40000),
                "server": ("127.0.0.1", 8000),
                "state": {},
            }
            await app(scope, receive, send)
            ok += status == 200

    await asyncio.gather(*(one() for _ in range(tasks)))
    return ok


async def _worker(args: argparse.Namespace) -> None:
    from gateway.app import create_app
    from gateway.logging import configure_logging
    from gateway.settings import GatewaySettings

    settings = GatewaySettings()
    configure_logging(settings.log_level)
    # The access log is written and formatted as in a server whose stderr is redirected.
    sink = Path(os.devnull).open("w")  # noqa: SIM115, ASYNC230 - once, before the measurement
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(sink)
    app = create_app(settings)
    name, value = args.header.split(":", 1)
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"wrk"),
        (b"accept", b"*/*"),
        (name.strip().lower().encode(), value.strip().encode()),
    ]
    async with app.router.lifespan_context(app):
        warm = await _drive(app, headers, args.warmup, args.concurrency)
        if warm != args.warmup:
            raise SystemExit(f"warm-up: {warm} of {args.warmup} answered 200")
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        cpu, wall = time.process_time(), time.perf_counter()
        ok = await _drive(app, headers, args.requests, args.concurrency)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
    print(json.dumps({"ok": ok, "cpu_us": cpu / args.requests * 1e6, "wall_s": wall}))


def _run_tree(path: Path, env: dict[str, str], args: argparse.Namespace, header: str) -> dict:
    argv = ["taskset", "-c", "1", sys.executable, str(Path(__file__)), "--worker"]
    argv += ["--header", header, "--requests", str(args.requests)]
    argv += ["--warmup", str(args.warmup), "--concurrency", str(args.concurrency)]
    if args.profile:
        argv += ["--profile", str(Path(args.profile).resolve())]
    full = {**os.environ, **env, "PYTHONPATH": str(path.resolve())}
    done = subprocess.run(argv, env=full, capture_output=True, text=True, check=False, cwd=path)
    if done.returncode != 0:
        raise SystemExit(f"worker failed:\n{done.stderr[-3000:]}")
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--header", default="", help=argparse.SUPPRESS)
    parser.add_argument("--tree", action="append", default=[], help="label=path (repeatable)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", default="", help="cProfile stats file (last run wins)")
    args = parser.parse_args()
    if args.worker:
        asyncio.run(_worker(args))
        return

    sys.path.insert(0, str(ROOT))
    from gateway_bench import GW, PEPPER, start_backends
    from gateway_setup import access_token, seed_api_keys, write_policy

    trees = [(label, Path(path)) for label, path in (t.split("=", 1) for t in args.tree)]
    trees = trees or [("working tree", ROOT)]
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    GW.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, str], list[float]] = {}
    with ExitStack() as stack:
        backends = start_backends(stack, "oidc-inproc", "0")
        write_policy(ROOT / "gateway" / "policy" / "policy.toml", GW / "policy-inproc.toml", 0)
        env = backends.gateway_env("inproc", GW / "policy-inproc.toml")
        Path(env["MRO_GATEWAY_DATABASE_URL"].split("///", 1)[1]).unlink(missing_ok=True)
        api_key = seed_api_keys(env["MRO_GATEWAY_DATABASE_URL"], PEPPER, 1)
        credentials = {
            "JWT": "Authorization: Bearer "
            + access_token(backends.key, backends.oidc_base, "tech-1", ["technician"]),
            "API key": "X-API-Key: " + api_key,
        }
        for number in range(args.rounds):
            order = trees if number % 2 == 0 else trees[::-1]
            for label, path in order:
                for kind, header in credentials.items():
                    result = _run_tree(path, env, args, header)
                    results.setdefault((label, kind), []).append(result["cpu_us"])
                    print(json.dumps({"round": number, "tree": label, "kind": kind, **result}))
    print(f"\nload average before: {load}\n")
    print("| tree | credential | CPU µs/req per round | min | median |")
    print("| --- | --- | --- | ---: | ---: |")
    for (label, kind), values in results.items():
        rounds = " / ".join(f"{v:,.0f}" for v in values)
        middle = statistics.median(values)
        print(f"| {label} | {kind} | {rounds} | {min(values):,.0f} | {middle:,.0f} |")


if __name__ == "__main__":
    main()
