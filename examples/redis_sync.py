"""Server-side sessions in Redis through a sync ``redis.Redis`` client (0.4.3's way).

Run it::

    REDIS_URL=redis://127.0.0.1:6379/0 SECRET_KEY=... uvicorn examples.redis_sync:app

``/`` counts your visits; ``/logout`` clears the session and deletes its Redis key. The sync
client is called from a worker thread, so it never blocks the event loop; new code may prefer
the asyncio client (``examples/redis_async.py``). redis-py connects on first use, so importing
this module needs no running server.
"""

from __future__ import annotations

import os

import redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from starlette_session import SessionMiddleware
from starlette_session.backends import BackendType

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Only for trying the example out: a real app must read a long random secret from its config.
SECRET_KEY = os.environ.get("SECRET_KEY", "example-only-change-me")


async def index(request: Request) -> JSONResponse:
    count = int(request.session.get("count", 0)) + 1
    request.session["count"] = count
    return JSONResponse({"count": count})


async def logout(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"count": 0})


app = Starlette(
    routes=[Route("/", index), Route("/logout", logout)],
    middleware=[
        Middleware(
            SessionMiddleware,
            secret_key=SECRET_KEY,
            backend_type=BackendType.redis,
            backend_client=redis.Redis.from_url(REDIS_URL),
            max_age=60 * 60,  # the cookie and the Redis key both expire after an hour
        )
    ],
)
