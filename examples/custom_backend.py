"""Bring your own store: a class written for starlette-session 0.4.3's ``ISessionBackend``.

This one keeps sessions in a dict with their expiry; a real one would talk to your database. Any exception it
raises becomes a ``BackendError``, so a failing store never silently loses data.
"""

from __future__ import annotations

import os
import time
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from starlette_session import SessionMiddleware
from starlette_session.interfaces import ISessionBackend


class DictBackend(ISessionBackend):
    """A 0.4.3-style backend: async get/set/delete of dicts by key."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[dict[str, Any], float]] = {}

    async def get(self, key: str) -> dict[str, Any] | None:
        value, expires = self.data.get(key, (None, 0.0))
        return value if expires > time.time() else None

    async def set(self, key: str, value: dict[str, Any], exp: int | None) -> str | None:
        self.data[key] = (value, time.time() + (exp or 3600))
        return None

    async def delete(self, key: str) -> Any:
        return self.data.pop(key, None)


backend = DictBackend()


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
            cookie_name="session",
            custom_session_backend=backend,
        )
    ],
)
