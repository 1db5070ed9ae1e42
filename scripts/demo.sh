#!/usr/bin/env bash
# The demo app: server-side sessions in files (no server to install), on http://127.0.0.1:8000/
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv .venv-demo "-e .[demo]"
exec .venv-demo/bin/python -m uvicorn examples.demo:app --host 127.0.0.1 --port "${PORT:-8000}"
