#!/usr/bin/env bash
# The gateway's own benchmark: upstream direct, nginx, and the real gateway app (JWT and API key)
# with a local redis-server and a static OIDC stand-in. Installs what it needs through run.sh's
# steps (wrk, nginx, the scratch virtualenv), then runs bench/gateway_bench.py; arguments go to it
# (e.g. --duration 3 --workers 1 --profile).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
WORK="$HERE/.work"
VENV="$WORK/venv"
cd "$ROOT"
mkdir -p "$WORK"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

[ -x "$VENV/bin/python" ] || uv venv -q "$VENV" --python 3.11
uv export --frozen --no-hashes --no-dev --no-emit-project -q >"$WORK/locked.txt"
uv pip install -q --python "$VENV/bin/python" -r "$WORK/locked.txt" -r "$HERE/requirements.txt" \
    -c "$WORK/locked.txt"

# The gateway package is imported from the working tree, not installed into the scratch venv.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" "$HERE/gateway_bench.py" --command "bench/run_gateway.sh${*:+ $*}" "$@"
