"""The app that tests/test_multiworker.py serves with several uvicorn worker processes.

Every answer carries the worker's PID, so the test can tell which process served it. The
store comes from the environment:

* ``E2E_BACKEND``: ``redis`` (an asyncio Redis client) or ``file`` (a ``FileBackend``);
* ``E2E_LOCATION``: the Redis URL, or the sessions directory.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from starlette_session import SessionMiddleware
from starlette_session.backends import BackendType

SECRET_KEY = "e2e-multiworker-secret"
BACKEND = os.environ.get("E2E_BACKEND", "file")
LOCATION = os.environ.get("E2E_LOCATION", "")

if not LOCATION:
    raise RuntimeError("set E2E_LOCATION to the Redis URL or the sessions directory")

_client: Any = None
if BACKEND == "redis":
    import redis.asyncio

    _client = redis.asyncio.Redis.from_url(LOCATION)
    _options: dict[str, Any] = {"backend_type": BackendType.aioRedis, "backend_client": _client}
elif BACKEND == "file":
    _options = {"backend_type": BackendType.file, "backend_client": Path(LOCATION)}
else:
    raise RuntimeError(f"E2E_BACKEND must be 'redis' or 'file', not {BACKEND!r}")


def _answer(request: Request, **extra: Any) -> JSONResponse:
    return JSONResponse({"pid": os.getpid(), "session": dict(request.session), **extra})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid()})


async def incr(request: Request) -> JSONResponse:
    count = int(request.session.get("count", 0)) + 1
    request.session["count"] = count
    return _answer(request, count=count)


async def read(request: Request) -> JSONResponse:
    return _answer(request, count=request.session.get("count"))


async def clear(request: Request) -> JSONResponse:
    request.session.clear()
    return _answer(request, count=None)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    if _client is not None:
        await _client.aclose()


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/incr", incr),
        Route("/read", read),
        Route("/clear", clear),
    ],
    middleware=[Middleware(SessionMiddleware, secret_key=SECRET_KEY, **_options)],
    lifespan=lifespan,
)
