#!/usr/bin/env bash
# Installs what the stack and the tests need on a fresh Debian machine; safe to run again.
# Keycloak itself is fetched through Maven on first start (infra/local/devstack/keycloak.py).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || need_apt+=(postgresql)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
if [[ "${MRO_WITH_BROWSER:-1}" == "1" ]]; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
fi

if ((${#need_apt[@]})); then
  echo "bootstrap: installing ${need_apt[*]} from Debian's packages"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
fi
# Debian starts a system Redis on install where it can; the stack runs its own on loopback.

if ! command -v uv >/dev/null 2>&1; then
  echo "bootstrap: installing uv from PyPI"
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
fi
export PATH="$HOME/.local/bin:$PATH"
uv sync --frozen --quiet

# kustomize renders infra/k8s in tests/infra; pinned, built from the Go module proxy once.
KUSTOMIZE_VERSION=v5.7.1
if [[ ! -x .cache/bin/kustomize ]] || ! .cache/bin/kustomize version 2>/dev/null | grep -qx "$KUSTOMIZE_VERSION"; then
  if command -v go >/dev/null 2>&1; then
    echo "bootstrap: building kustomize $KUSTOMIZE_VERSION from the Go module proxy"
    GOBIN="$PWD/.cache/bin" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  else
    echo "bootstrap: no Go toolchain: tests/infra renders with kustomize or kubectl from PATH" >&2
  fi
fi

# Mailpit catches the dev stack's mail (SMTP 127.0.0.1:1025, inbox http://127.0.0.1:8025);
# pinned, built from the Go module proxy once. Its web inbox is a JavaScript bundle that the
# module does not carry: with npm, the module's own lockfile builds it, as Mailpit's release does;
# without npm only the SMTP server and the HTTP API (/api/v1/...) work.
MAILPIT_VERSION=v1.27.11
MAILPIT_LDFLAGS="-X github.com/axllent/mailpit/config.Version=$MAILPIT_VERSION"
if [[ ! -x .cache/bin/mailpit ]] \
  || ! .cache/bin/mailpit version --no-release-check 2>/dev/null | grep -q " $MAILPIT_VERSION "; then
  if command -v go >/dev/null 2>&1; then
    echo "bootstrap: building mailpit $MAILPIT_VERSION from the Go module proxy"
    mailpit_src=$(go mod download -json "github.com/axllent/mailpit@$MAILPIT_VERSION" \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    build=".cache/build/mailpit-$MAILPIT_VERSION"
    out="$PWD/.cache/bin/mailpit"
    rm -rf "$build" && mkdir -p .cache/build && cp -r "$mailpit_src" "$build" && chmod -R u+w "$build"
    if command -v npm >/dev/null 2>&1 \
      && (cd "$build" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
        && npm run --silent package) >/dev/null; then
      (cd "$build" && go build -ldflags "$MAILPIT_LDFLAGS" -o "$out" .)
    else
      echo "bootstrap: mailpit's web inbox needs npm; building its SMTP server and API only" >&2
      GOBIN="$PWD/.cache/bin" go install -ldflags "$MAILPIT_LDFLAGS" \
        "github.com/axllent/mailpit@$MAILPIT_VERSION"
    fi
    rm -rf "$build"
  else
    echo "bootstrap: no Go toolchain: make dev needs mailpit, built with Go 1.24.3 or newer" >&2
  fi
fi
