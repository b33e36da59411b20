# Sourced by run.sh and run_gateway.sh: the tools and the scratch virtualenv every benchmark needs.
# `bench_setup [debian packages...]` installs Debian's wrk and nginx (plus the packages named) when
# missing, and brings bench/.work/venv to the project's locked runtime dependencies plus
# requirements.txt; it sets HERE, ROOT, WORK and VENV and leaves the shell in the repository root.

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
WORK="$HERE/.work"
VENV="$WORK/venv"

bench_setup() {
    cd "$ROOT"
    mkdir -p "$WORK"

    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

    # Debian's wrk and nginx; policy-rc.d or the absence of systemd keeps nginx's service stopped.
    local missing=() package
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
    for package in "$@"; do
        command -v "$package" >/dev/null || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    export PATH="$PATH:/usr/sbin"

    # A scratch virtualenv, so the project's pyproject.toml and uv.lock stay untouched: the
    # project's runtime dependencies exactly as locked (what the gateway runs with, sniffio
    # included, which httpcore's speed depends on), plus the extra clients under test.
    [ -x "$VENV/bin/python" ] || uv venv -q "$VENV" --python 3.11
    uv export --frozen --no-hashes --no-dev --no-emit-project -q >"$WORK/locked.txt"
    uv pip install -q --python "$VENV/bin/python" -r "$WORK/locked.txt" -r "$HERE/requirements.txt" \
        -c "$WORK/locked.txt"
}
