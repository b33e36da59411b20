"""The servers under test: the upstream itself, nginx and one Python proxy per client library."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from processes import BenchError, Server, http_call, pinned, start
from upstream import JSON_BODY, SSE_EVENTS

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
POST_BYTES = 1024
NGINX_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def version(package: str) -> str:
    """The installed version of a Python distribution, or "missing"."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def tool_version(argv: list[str]) -> str:
    """The first line a tool prints about its version (nginx and wrk print it to stderr)."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def labels() -> dict[str, str]:
    """Row labels with the exact versions measured."""
    httpx, httpx2, bridge = version("httpx"), version("httpx2"), version("httpx-aiohttp")
    nginx = tool_version(["nginx", "-v"]).rsplit("/", 1)[-1]
    return {
        "direct": f"upstream direct (uvicorn {version('uvicorn')}, ceiling)",
        "nginx": f"nginx {nginx} (native floor)",
        "aiohttp": f"aiohttp {version('aiohttp')}",
        "httpx": f"httpx {httpx}",
        "httpx-defaults": f"httpx {httpx}, default pool limits",
        "httpx-aiohttp": f"httpx {httpx} + httpx-aiohttp {bridge}",
        "httpx2": f"httpx2 {httpx2}",
        "httpx2-aiohttp": f"httpx2 {httpx2} + httpx-aiohttp {bridge}",
    }


def start_upstream(port: int, cpus: str | None) -> Server:
    """Start the upstream app under uvicorn."""
    argv = [sys.executable, str(HERE / "upstream.py"), "--port", str(port)]
    return start("upstream", pinned(argv, cpus), WORK / "logs", f"http://127.0.0.1:{port}/json")


def _nginx_argv(port: int, upstream_port: int) -> list[str]:
    prefix = WORK / "nginx"
    for sub in NGINX_TEMP_DIRS:
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    conf = (HERE / "nginx.conf.in").read_text()
    conf = conf.replace("@WORK@", str(prefix)).replace("@UPSTREAM_PORT@", str(upstream_port))
    conf = conf.replace("@PORT@", str(port))
    (prefix / "nginx.conf").write_text(conf)
    # -e: Debian's nginx opens its compiled-in error log before reading the config otherwise.
    return [
        "nginx",
        "-p",
        str(prefix),
        "-c",
        str(prefix / "nginx.conf"),
        "-e",
        str(prefix / "error.log"),
    ]


def start_target(name: str, port: int, upstream_port: int, cpus: str | None) -> Server:
    """Start nginx or one Python proxy variant in front of the upstream."""
    if name == "nginx":
        argv = _nginx_argv(port, upstream_port)
    else:
        argv = [sys.executable, str(HERE / "proxy_server.py"), "--client", name]
        argv += ["--port", str(port), "--upstream", f"http://127.0.0.1:{upstream_port}"]
    return start(name, pinned(argv, cpus), WORK / "logs", f"http://127.0.0.1:{port}/json")


def check_answers(base_url: str) -> None:
    """Refuse to measure a target that does not forward the three routes faithfully."""
    status, body = http_call(base_url + "/json")
    if status != 200 or body != JSON_BODY:
        raise BenchError(f"GET /json via {base_url}: {status} {body[:200]!r}")
    status, body = http_call(base_url + "/echo", body=b"x" * POST_BYTES)
    if status != 200 or json.loads(body) != {"received": POST_BYTES}:
        raise BenchError(f"POST /echo via {base_url}: {status} {body[:200]!r}")
    status, body = http_call(base_url + "/sse")
    if status != 200 or body.count(b"data: ") != SSE_EVENTS + 1:
        raise BenchError(f"GET /sse via {base_url}: {status} {body[:200]!r}")
