#!/usr/bin/env bash
# One command for the proxy-client benchmark: installs what it needs (idempotent), runs every
# case, prints the Markdown report and adds it to bench/RESULTS.md. Arguments go to
# proxy_clients.py (e.g. --duration 5, --targets aiohttp,httpx, --no-pin).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
WORK="$HERE/.work"
VENV="$WORK/venv"
cd "$ROOT"
mkdir -p "$WORK"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian's wrk and nginx; policy-rc.d or the absence of systemd keeps nginx's service stopped.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

# A scratch virtualenv, so the project's pyproject.toml and uv.lock stay untouched: the project's
# runtime dependencies exactly as locked (what the gateway runs with, sniffio included, which
# httpcore's speed depends on), plus the extra clients under test.
[ -x "$VENV/bin/python" ] || uv venv -q "$VENV" --python 3.11
uv export --frozen --no-hashes --no-dev --no-emit-project -q >"$WORK/locked.txt"
uv pip install -q --python "$VENV/bin/python" -r "$WORK/locked.txt" -r "$HERE/requirements.txt" \
    -c "$WORK/locked.txt"

exec "$VENV/bin/python" "$HERE/proxy_clients.py" --command "bench/run.sh${*:+ $*}" "$@"
