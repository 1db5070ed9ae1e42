"""Swapping Starlette's middleware: only the import changes; cookies stay byte-identical."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# was: from starlette.middleware.sessions import SessionMiddleware
from starlette_session import SessionMiddleware


async def index(request: Request) -> JSONResponse:
    count = request.session.get("count", 0) + 1
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
            secret_key=os.environ.get("SECRET_KEY", "example-only-change-me"),
            max_age=14 * 24 * 60 * 60,
            same_site="lax",
            https_only=False,
        )
    ],
)
