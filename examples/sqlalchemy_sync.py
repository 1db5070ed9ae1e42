"""Server-side sessions in a SQL table through a sync SQLAlchemy ``Engine``.

Run it::

    DATABASE_URL=postgresql+psycopg://app@127.0.0.1/app SECRET_KEY=... uvicorn examples.sqlalchemy_sync:app

``DATABASE_URL`` defaults to a SQLite file in the temporary directory. ``/`` counts your visits;
``/logout`` clears the session and deletes its row. The ``starlette_sessions`` table is created
on first use. The sync engine is called from a worker thread, so it never blocks the event loop.
Delete expired rows from cron with ``python -m starlette_session delete-expired DATABASE_URL``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import create_engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from starlette_session import SessionMiddleware
from starlette_session.backends import BackendType

DEFAULT_DATABASE = Path(tempfile.gettempdir()) / "starlette-session-example.db"
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{DEFAULT_DATABASE}"
# Only for trying the example out: a real app must read a long random secret from its config.
SECRET_KEY = os.environ.get("SECRET_KEY", "example-only-change-me")

# create_engine does not connect, so importing this module needs no running database.
engine = create_engine(DATABASE_URL, pool_pre_ping=True)


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
    # The backend never disposes an engine it was given: its owner does.
    engine.dispose()


app = Starlette(
    routes=[Route("/", index), Route("/logout", logout)],
    middleware=[
        Middleware(
            SessionMiddleware,
            secret_key=SECRET_KEY,
            backend_type=BackendType.sqlalchemy,
            backend_client=engine,
            max_age=60 * 60,  # the cookie and the row both expire after an hour
        )
    ],
    lifespan=lifespan,
)
