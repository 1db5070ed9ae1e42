"""Server-side sessions stored as files, shared by every worker process on one machine.

Run it with several workers; they all see the same sessions::

    SECRET_KEY=... SESSION_DIR=/var/lib/myapp/sessions uvicorn examples.file_backend:app --workers 4

``SESSION_DIR`` defaults to a ``.sessions`` directory next to this file (created with mode
0o700). ``/`` counts your visits; ``/logout`` clears the session and deletes its file.
Delete expired files from cron with ``python -m starlette_session delete-expired``.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from starlette_session import SessionMiddleware
from starlette_session.backends import BackendType

SESSION_DIR = os.environ.get("SESSION_DIR") or str(Path(__file__).resolve().with_name(".sessions"))
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
            backend_type=BackendType.file,
            backend_client=SESSION_DIR,
            max_age=60 * 60,  # the cookie and the file both expire after an hour
        )
    ],
)
