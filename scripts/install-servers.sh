#!/usr/bin/env bash
# Install the servers the test suite runs against: Redis (server + redis-cli), memcached, PostgreSQL,
# and the headless browser of the browser tests (Chromium and its chromedriver).
#
# Idempotent: does nothing but print versions when everything is already installed. Debian/Ubuntu
# (apt-get) only. The tests start their own servers on ephemeral ports (tests/servers.py), so the
# system services are neither needed nor started; if a package's install script starts one anyway,
# it is left alone.
set -euo pipefail

have_postgres_server() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

missing=()
for binary in redis-server redis-cli memcached chromium chromedriver; do
    command -v "$binary" >/dev/null 2>&1 || missing+=("$binary")
done
have_postgres_server || missing+=("postgresql (initdb)")

if ((${#missing[@]} > 0)); then
    echo "install-servers: missing: ${missing[*]}"
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install-servers: not root and sudo is not available; run this script as root." >&2
        exit 1
    fi
    # Tell invoke-rc.d not to start services from the packages' install scripts, when we may.
    policy=/usr/sbin/policy-rc.d
    added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        added_policy=1
    fi
    cleanup() {
        if ((added_policy)); then
            "${sudo[@]}" rm -f "$policy"
        fi
    }
    trap cleanup EXIT
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends redis-server redis-tools memcached postgresql \
        chromium chromium-driver
fi

initdb=$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1)
echo "install-servers: versions"
redis-server --version
redis-cli --version
memcached -V
"$initdb" --version
chromium --version
chromedriver --version
