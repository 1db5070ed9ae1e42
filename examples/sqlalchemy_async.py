"""Server-side sessions in a SQL table through a SQLAlchemy ``AsyncEngine``.

Run it::

    DATABASE_URL=postgresql+asyncpg://app@127.0.0.1/app SECRET_KEY=... uvicorn examples.sqlalchemy_async:app

``DATABASE_URL`` must name an async driver (``postgresql+asyncpg``, ``sqlite+aiosqlite``,
``mysql+aiomysql``...); it defaults to a SQLite file in the temporary directory. ``/`` counts
your visits; ``/logout`` clears the session and deletes its row.

The backend is built here rather than from ``backend_type``, to show its options: the table is
created once at start-up (``create_table=False`` skips the check on first use), and the app
deletes expired rows itself every hour instead of relying on cron.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from starlette_session import BackendError, SessionMiddleware
from starlette_session.backends.sqlalchemy import SQLAlchemyBackend

logger = logging.getLogger(__name__)

DEFAULT_DATABASE = Path(tempfile.gettempdir()) / "starlette-session-example-async.db"
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{DEFAULT_DATABASE}"
# Only for trying the example out: a real app must read a long random secret from its config.
SECRET_KEY = os.environ.get("SECRET_KEY", "example-only-change-me")
CLEANUP_EVERY = 60 * 60  # seconds

# create_async_engine does not connect, so importing this module needs no running database.
engine = create_async_engine(DATABASE_URL, pool_pre_ping=True)
backend = SQLAlchemyBackend(engine, create_table=False)


async def index(request: Request) -> JSONResponse:
    count = int(request.session.get("count", 0)) + 1
    request.session["count"] = count
    return JSONResponse({"count": count})


async def logout(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"count": 0})


async def delete_expired_forever() -> None:
    while True:
        try:
            deleted = await backend.delete_expired()
        except BackendError:
            # The database may be back by the next round; requests report their own errors.
            logger.exception("could not delete expired sessions")
        else:
            logger.info("deleted %d expired session(s)", deleted)
        await anyio.sleep(CLEANUP_EVERY)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await backend.create_table()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(delete_expired_forever)
        yield
        tasks.cancel_scope.cancel()
    # The backend never disposes an engine it was given: its owner does.
    await engine.dispose()


app = Starlette(
    routes=[Route("/", index), Route("/logout", logout)],
    middleware=[
        Middleware(
            SessionMiddleware,
            secret_key=SECRET_KEY,
            backend=backend,
            max_age=60 * 60,  # the cookie and the row both expire after an hour
        )
    ],
    lifespan=lifespan,
)
