#!/usr/bin/env bash
# The whole benchmark in one command: bash scripts/bench.sh [--quick] [--no-http] [--no-outage]
# (--setup-only: make the venvs and stop; BENCH_QUICK=1 is --quick)
#
# Sets up (or reuses) two venvs and the peers to compare with, then runs `python -m benchmarks`:
#   .venv-bench      this package with [all,bench] extras, starsessions, uvicorn + uvloop + httptools,
#                    pytest (tests/servers.py starts the real Redis, memcached and PostgreSQL),
#                    pyinstrument
#   .venv-bench-052  this package on Starlette 0.52.1, for the "x Starlette 0.52" ratio
#   benchmarks/.vendor-043  the starlette-session 0.4.3 wheel, unpacked: its import name is ours,
#                    so the benchmark loads it under another name (benchmarks/contenders.py)
# Needs redis-server, memcached and PostgreSQL (installed by scripts/install-servers.sh when
# missing) and wrk (installed here when root).
# Writes benchmarks/results/latest.{json,md}, docs/img/benchmarks.png and the generated part of
# docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    for candidate in python3.11 python3.12 python3.13 python3.10 python3; do
        if command -v "$candidate" >/dev/null; then PYTHON="$candidate"; break; fi
    done
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
    echo "bench.sh: needs Python >= 3.10 (set PYTHON=...)" >&2
    exit 1
}

setup_only=0
args=()
for arg in "$@"; do
    if [[ "$arg" == --setup-only ]]; then setup_only=1; else args+=("$arg"); fi
done
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then args+=(--quick); fi

if ! command -v redis-server >/dev/null || ! command -v memcached >/dev/null ||
    ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    bash scripts/install-servers.sh # installs as root (or with sudo); says what to do otherwise
fi

if ! command -v wrk >/dev/null; then
    if [[ "$(id -u)" == 0 ]]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    else
        echo "bench.sh: wrk is missing; install it (apt-get install wrk) or pass --no-http" >&2
        exit 1
    fi
fi

# Reinstall a venv when the packaging metadata or this script changed since it was made.
stamp() { cat setup.cfg pyproject.toml scripts/bench.sh | sha256sum | cut -d' ' -f1; }
ensure_venv() { # ensure_venv DIR PIP-ARGS...
    local dir="$1"; shift
    if [[ ! -x "$dir/bin/python" || "$(cat "$dir/.bench-stamp" 2>/dev/null)" != "$(stamp)" ]]; then
        echo "setting up $dir ..."
        "$PYTHON" -m venv "$dir"
        if ! "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@" >"$dir/pip.log" 2>&1; then
            grep -v '^WARNING: Location' "$dir/pip.log" >&2
            exit 1
        fi
        "$dir/bin/python" -c 'import starlette_session' # fail here, not mid-run, if the install broke
        stamp >"$dir/.bench-stamp"
    fi
}
ensure_venv .venv-bench -e '.[all,bench]' starsessions uvloop httptools pytest pyinstrument
ensure_venv .venv-bench-052 -e . 'starlette==0.52.1'

vendor=benchmarks/.vendor-043
if [[ ! -f "$vendor/starlette_session/__init__.py" ]]; then
    echo "unpacking starlette-session 0.4.3 into $vendor ..."
    download="$(mktemp -d)"
    if ! .venv-bench/bin/python -m pip download -q --disable-pip-version-check --no-deps \
        'starlette-session==0.4.3' -d "$download" >"$download/pip.log" 2>&1; then
        grep -v '^WARNING: Location' "$download/pip.log" >&2
        rm -rf "$download"
        exit 1
    fi
    mkdir -p "$vendor"
    .venv-bench/bin/python -m zipfile -e "$download"/starlette_session-0.4.3-*.whl "$vendor"
    rm -rf "$download"
fi

if ((setup_only)); then exit 0; fi
exec .venv-bench/bin/python -m benchmarks run --compat-python .venv-bench-052/bin/python ${args[@]+"${args[@]}"}
