"""Server-side sessions in Redis through an asyncio ``redis.asyncio.Redis`` client.

Run it::

    REDIS_URL=redis://127.0.0.1:6379/0 SECRET_KEY=... uvicorn examples.redis_async:app

``/`` counts your visits; ``/logout`` clears the session and deletes its Redis key. The
client's connection pool is closed when the app shuts down. redis-py connects on first use,
so importing this module needs no running server.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio
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

redis_client = redis.asyncio.Redis.from_url(REDIS_URL)


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
    await redis_client.aclose()


app = Starlette(
    routes=[Route("/", index), Route("/logout", logout)],
    middleware=[
        Middleware(
            SessionMiddleware,
            secret_key=SECRET_KEY,
            backend_type=BackendType.aioRedis,
            backend_client=redis_client,
            max_age=60 * 60,  # the cookie and the Redis key both expire after an hour
        )
    ],
    lifespan=lifespan,
)
