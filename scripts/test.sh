#!/usr/bin/env bash
# The whole test suite: lint, format check, mypy --strict, the docs' strict build (mkdocs, with
# the API reference), then pytest against real servers and a headless Chromium
# (Redis, a Redis Cluster, memcached, PostgreSQL; started on 127.0.0.1 by the tests themselves)
# on the newest Starlette 1.x, then on Starlette 0.52, and on 0.40 with every client library at
# the oldest version setup.cfg accepts (redis-py, pymemcache, aiomcache, SQLAlchemy...). In each
# venv, Starlette's own tests/middleware/test_session.py also runs against our middleware
# (scripts/starlette_tests.py; the sdists are cached in .cache/starlette-sdists/).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh

bash scripts/install-servers.sh

ensure_venv .venv "-e .[all,dev,docs]"
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy --strict"
.venv/bin/mypy
echo "== mkdocs build --strict (API reference from the docstrings; any warning fails)"
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir site
echo "== pytest (Starlette $(.venv/bin/python -c 'import starlette; print(starlette.__version__)'))"
.venv/bin/python -m pytest "$@"
.venv/bin/python scripts/starlette_tests.py

ensure_venv .venv-starlette052 "-e .[all,dev] starlette==0.52.1"
echo "== pytest (Starlette $(.venv-starlette052/bin/python -c 'import starlette; print(starlette.__version__)'))"
.venv-starlette052/bin/python -m pytest "$@"
.venv-starlette052/bin/python scripts/starlette_tests.py

# The oldest of everything setup.cfg accepts: Starlette 0.40 and every client at its floor.
OLDEST="starlette==0.40.0 itsdangerous==2.1.0 redis==5.0.1 pymemcache==4.0.0 aiomcache==0.8.0"
OLDEST="$OLDEST sqlalchemy[asyncio]==2.0.0 aiosqlite==0.19.0 psycopg[binary]==3.1.4 asyncpg==0.29.0 cryptography==42.0.0"
ensure_venv .venv-starlette040 "-e .[all,dev] $OLDEST"
echo "== pytest (the oldest supported versions: $OLDEST)"
.venv-starlette040/bin/python -m pytest "$@"
.venv-starlette040/bin/python scripts/starlette_tests.py
