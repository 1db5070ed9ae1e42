"""The middleware closes its backend when the app shuts down (lifespan)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware

from starlette_session import SessionMiddleware
from starlette_session.backends.memory import MemoryBackend

pytestmark = pytest.mark.anyio


class ClosingBackend(MemoryBackend):
    closed = 0

    async def aclose(self) -> None:
        self.closed += 1


async def run_lifespan(app: Any) -> list[str]:
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    return sent


async def test_backend_closed_at_shutdown_not_before() -> None:
    backend = ClosingBackend()
    app = Starlette(middleware=[Middleware(SessionMiddleware, secret_key="k", backend=backend)])
    sent = await run_lifespan(app)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert backend.closed == 1


async def test_cookie_sessions_have_nothing_to_close() -> None:
    app = Starlette(middleware=[Middleware(SessionMiddleware, secret_key="k")])
    assert await run_lifespan(app) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
