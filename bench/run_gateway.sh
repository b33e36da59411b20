#!/usr/bin/env bash
# The gateway's own benchmark: upstream direct, nginx, and the real gateway app (JWT and API key)
# with a local redis-server and a static OIDC stand-in. Installs what it needs through the shared
# setup (wrk, nginx, redis-server, curl, the scratch virtualenv), then runs bench/gateway_bench.py;
# arguments go to it (e.g. --duration 3 --workers 1 --profile).
set -euo pipefail

# shellcheck source=bench/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
bench_setup redis-server curl

# The gateway package is imported from the working tree, not installed into the scratch venv.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" "$HERE/gateway_bench.py" --command "bench/run_gateway.sh${*:+ $*}" "$@"
