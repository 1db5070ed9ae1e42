#!/usr/bin/env bash
# The demo app: server-side sessions in files (no server to install), on http://127.0.0.1:8000/
# Each page shows what its request did to the session: Set-Cookie, store commands, the record.
#
#   PORT=8080 bash scripts/demo.sh   # another port (default 8000)
#
# Data lives in .demo-data/ (DEMO_DATA_DIR overrides it): the session files, and the signing
# secret, made once and kept there (mode 0600) unless SECRET_KEY is set, so restarts keep sessions.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv .venv-demo "-e .[demo]"
exec .venv-demo/bin/python -m uvicorn examples.demo:app --host 127.0.0.1 --port "${PORT:-8000}"
