#!/usr/bin/env bash
# One command for the proxy-client benchmark: installs what it needs (idempotent), runs every
# case, prints the Markdown report and adds it to bench/RESULTS.md. Arguments go to
# proxy_clients.py (e.g. --duration 5, --targets aiohttp,httpx, --no-pin).
set -euo pipefail

# shellcheck source=bench/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
bench_setup

exec "$VENV/bin/python" "$HERE/proxy_clients.py" --command "bench/run.sh${*:+ $*}" "$@"
