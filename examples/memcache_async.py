"""Server-side sessions in memcached through an asyncio ``aiomcache.Client``.

Run it::

    MEMCACHED_SERVERS=127.0.0.1:11211 SECRET_KEY=... uvicorn examples.memcache_async:app

aiomcache talks to one server, so only the first ``host:port`` of ``MEMCACHED_SERVERS`` is
used (use ``examples/memcache_sync.py`` to spread sessions over several). ``/`` counts your
visits; ``/logout`` clears the session and deletes its memcached key. The client's
connections are closed when the app shuts down. aiomcache connects on first use, so importing
this module needs no running server.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiomcache
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from starlette_session import SessionMiddleware
from starlette_session.backends import BackendType

SERVERS = os.environ.get("MEMCACHED_SERVERS", "127.0.0.1:11211")
# Only for trying the example out: a real app must read a long random secret from its config.
SECRET_KEY = os.environ.get("SECRET_KEY", "example-only-change-me")

_first = SERVERS.split(",")[0].strip()
_host, _colon, _port = _first.rpartition(":")
if not _colon:  # a bare host name: memcached's default port
    _host, _port = _first, "11211"
memcache_client = aiomcache.Client(_host, int(_port))


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
    await memcache_client.close()


app = Starlette(
    routes=[Route("/", index), Route("/logout", logout)],
    middleware=[
        Middleware(
            SessionMiddleware,
            secret_key=SECRET_KEY,
            backend_type=BackendType.aioMemcache,
            backend_client=memcache_client,
            max_age=60 * 60,  # the cookie and the memcached key both expire after an hour
        )
    ],
    lifespan=lifespan,
)
