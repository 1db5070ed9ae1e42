"""Server-side sessions in memcached through pymemcache (0.4.3's ``BackendType.memcache``).

Run it::

    MEMCACHED_SERVERS=127.0.0.1:11211 SECRET_KEY=... uvicorn examples.memcache_sync:app

``MEMCACHED_SERVERS`` is a comma-separated list of ``host:port``: one server gives a
thread-safe ``PooledClient``, several a ``HashClient`` that spreads the sessions over them.
``/`` counts your visits; ``/logout`` clears the session and deletes its memcached key.
pymemcache blocks, so the backend calls it from a worker thread. pymemcache connects on first
use, so importing this module needs no running server.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from starlette_session import SessionMiddleware
from starlette_session.backends import BackendType

SERVERS = [
    server.strip()
    for server in os.environ.get("MEMCACHED_SERVERS", "127.0.0.1:11211").split(",")
    if server.strip()
]
# Only for trying the example out: a real app must read a long random secret from its config.
SECRET_KEY = os.environ.get("SECRET_KEY", "example-only-change-me")

# Timeouts, so that a dead server fails the request instead of hanging it.
_options: dict[str, Any] = {"connect_timeout": 2.0, "timeout": 2.0, "no_delay": True}
memcache_client = (
    PooledClient(SERVERS[0], **_options) if len(SERVERS) == 1 else HashClient(SERVERS, **_options)
)


async def index(request: Request) -> JSONResponse:
    count = int(request.session.get("count", 0)) + 1
    request.session["count"] = count
    return JSONResponse({"count": count})


async def logout(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"count": 0})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    # The backend never closes the client it was given: its owner does.
    memcache_client.close()


app = Starlette(
    routes=[Route("/", index), Route("/logout", logout)],
    middleware=[
        Middleware(
            SessionMiddleware,
            secret_key=SECRET_KEY,
            backend_type=BackendType.memcache,
            backend_client=memcache_client,
            max_age=60 * 60,  # the cookie and the memcached key both expire after an hour
        )
    ],
    lifespan=lifespan,
)
