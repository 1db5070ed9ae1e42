"""Concurrency on every backend against its real server: removed sessions stay removed, merge
mode loses no update, and changes made after the response started are not lost silently.

Every race is staged with events, never with sleeps: a request parks at a ``Gate`` after it
loaded its session, the competing operation runs to completion, then the parked request is
let go and saves.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from starlette_session import ConfigurationError, SessionBackend, SessionMiddleware
from starlette_session.backends.base import DictBackendAdapter
from tests.backend_kit import (
    FACTORIES,
    client_for,
    make_app,
    open_backend,
    session_cookie,
    session_id,
    set_session_cookie,
)
from tests.helpers import websocket_messages

pytestmark = pytest.mark.anyio


@pytest.fixture(params=sorted(FACTORIES))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionBackend]:
    async with open_backend(request, tmp_path) as store:
        yield store


class Gate:
    """Parks requests after they loaded their session until the test lets them go."""

    def __init__(self, expected: int = 1) -> None:
        self.expected = expected
        self.arrived = 0
        self.all_arrived = anyio.Event()
        self.opened = anyio.Event()

    async def park(self) -> None:
        self.arrived += 1
        if self.arrived == self.expected:
            self.all_arrived.set()
        await self.opened.wait()


def gated_routes(gate: Gate) -> list[Any]:
    async def slow_write(request: Request) -> Response:
        assert "n" in request.session  # loaded
        await gate.park()
        request.session[request.query_params.get("key", "late")] = request.query_params.get("value", "x")
        return JSONResponse(dict(request.session))

    async def slow_read(request: Request) -> Response:
        data = dict(request.session)
        await gate.park()
        return JSONResponse(data)

    async def slow_websocket(websocket: WebSocket) -> None:
        await websocket.accept()
        assert "n" in websocket.session
        await gate.park()
        websocket.session["late"] = "from the socket"
        await websocket.close()

    return [
        Route("/slow-write", slow_write),
        Route("/slow-read", slow_read),
        WebSocketRoute("/slow-ws", slow_websocket),
    ]


async def logged_in(app: Any) -> tuple[str, str]:
    """Create a session holding ``n``; return its cookie value and id."""
    async with client_for(app) as client:
        await client.post("/write", json={"n": 1})
        return session_cookie(client), session_id(client)


async def get_with(app: Any, cookie: str, path: str) -> httpx.Response:
    async with client_for(app) as client:
        set_session_cookie(client, cookie)
        return await client.get(path)


async def race(app: Any, gate: Gate, cookie: str, path: str, competitor: Any) -> httpx.Response:
    """Run ``path`` with ``cookie``; while it is parked, run ``competitor()``; return its response."""
    responses: list[httpx.Response] = []

    async def parked() -> None:
        responses.append(await get_with(app, cookie, path))

    async with anyio.create_task_group() as group:
        group.start_soon(parked)
        await gate.all_arrived.wait()
        await competitor()
        gate.opened.set()
    return responses[0]


# -- a removed session stays removed ------------------------------------------------------------


@pytest.mark.parametrize("removal", ["logout", "regenerate", "admin-delete"])
async def test_a_late_write_never_resurrects_a_removed_session(
    backend: SessionBackend, removal: str, caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate()
    app = make_app(backend, gated_routes(gate))
    cookie, sid = await logged_in(app)
    new_ids: list[str] = []

    async def remove() -> None:
        if removal == "admin-delete":
            await backend.delete(sid)  # what `python -m starlette_session delete` does
            return
        async with client_for(app) as client:
            set_session_cookie(client, cookie)
            await client.get("/clear" if removal == "logout" else "/login")
            if removal == "regenerate":
                new_ids.append(session_id(client))

    with caplog.at_level(logging.WARNING, logger="starlette_session"):
        late = await race(app, gate, cookie, "/slow-write", remove)
    assert late.status_code == 200
    assert "set-cookie" not in late.headers  # no cookie names the old id again
    assert await backend.read(backend.key_for(sid)) is None
    assert (await get_with(app, cookie, "/read")).json() == {}  # a copy of the old cookie is dead
    dropped = [record for record in caplog.records if "dropped" in record.getMessage()]
    assert len(dropped) == 1
    assert sid not in dropped[0].getMessage()
    if new_ids:  # the regenerated session did not get the late change either
        assert await backend.get(new_ids[0]) == {"n": 1, "user": "alice"}


async def test_a_websocket_ending_after_a_logout_does_not_resurrect(backend: SessionBackend) -> None:
    gate = Gate()
    app = make_app(backend, gated_routes(gate))
    cookie, sid = await logged_in(app)
    sent: list[Any] = []

    async def socket() -> None:
        sent.extend(await websocket_messages(app, "/slow-ws", cookie=f"session={cookie}"))

    async with anyio.create_task_group() as group:
        group.start_soon(socket)
        await gate.all_arrived.wait()
        async with client_for(app) as client:
            set_session_cookie(client, cookie)
            await client.get("/clear")
        gate.opened.set()
    assert [message["type"] for message in sent] == ["websocket.accept", "websocket.close"]
    assert await backend.read(backend.key_for(sid)) is None


async def test_a_rolling_renewal_after_a_logout_does_not_resurrect(backend: SessionBackend) -> None:
    gate = Gate()
    app = make_app(backend, gated_routes(gate), rolling=True)
    cookie, sid = await logged_in(app)

    async def logout() -> None:
        async with client_for(app) as client:
            set_session_cookie(client, cookie)
            await client.get("/clear")

    late = await race(app, gate, cookie, "/slow-read", logout)
    assert late.json() == {"n": 1}
    assert "set-cookie" not in late.headers
    assert await backend.read(backend.key_for(sid)) is None


# -- merge mode -----------------------------------------------------------------------------------


def merging(backend: SessionBackend) -> bool:
    """Whether the backend can merge; a 0.4.3-style backend is refused at start-up instead."""
    if isinstance(backend, DictBackendAdapter):
        with pytest.raises(ConfigurationError, match="compare_and_swap"):
            SessionMiddleware(make_app(backend), secret_key="s", backend=backend, concurrency="merge")
        return False
    return True


async def test_merge_keeps_every_concurrent_update(backend: SessionBackend) -> None:
    if not merging(backend):
        return
    writers = 20
    gate = Gate(writers)
    app = make_app(backend, gated_routes(gate), concurrency="merge")
    cookie, sid = await logged_in(app)
    responses: list[httpx.Response] = []

    async def writer(number: int) -> None:
        responses.append(await get_with(app, cookie, f"/slow-write?key=k{number}&value={number}"))

    async with anyio.create_task_group() as group:
        for number in range(writers):
            group.start_soon(writer, number)
        await gate.all_arrived.wait()  # all 20 loaded the same record before any saves
        gate.opened.set()
    assert [response.status_code for response in responses] == [200] * writers
    assert await backend.get(sid) == {"n": 1, **{f"k{number}": str(number) for number in range(writers)}}


async def test_merge_later_save_wins_a_key_and_keeps_the_others(backend: SessionBackend) -> None:
    if not merging(backend):
        return
    gate = Gate()
    app = make_app(backend, gated_routes(gate), concurrency="merge")
    async with client_for(app) as client:
        await client.post("/write", json={"n": 1, "x": "old", "gone": True})
        cookie, sid = session_cookie(client), session_id(client)

    async def competitor() -> None:
        async with client_for(app) as client:
            set_session_cookie(client, cookie)
            await client.post("/write", json={"x": "first", "other": 2})

    late = await race(app, gate, cookie, "/slow-write?key=x&value=second", competitor)
    assert late.status_code == 200
    assert await backend.get(sid) == {"n": 1, "x": "second", "gone": True, "other": 2}


async def test_merge_never_resurrects_after_a_logout(backend: SessionBackend) -> None:
    if not merging(backend):
        return
    gate = Gate()
    app = make_app(backend, gated_routes(gate), concurrency="merge")
    cookie, sid = await logged_in(app)

    async def logout() -> None:
        async with client_for(app) as client:
            set_session_cookie(client, cookie)
            await client.get("/clear")

    late = await race(app, gate, cookie, "/slow-write", logout)
    assert "set-cookie" not in late.headers
    assert await backend.read(backend.key_for(sid)) is None


# -- changes after the response started ---------------------------------------------------------------


async def streaming(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"first chunk\n"
        request.session["streamed"] = "after the headers"
        yield b"done\n"

    return StreamingResponse(body())


async def test_a_change_made_while_streaming_is_saved_under_the_id_the_client_holds(
    backend: SessionBackend,
) -> None:
    app = make_app(backend, [Route("/stream", streaming)])
    cookie, sid = await logged_in(app)
    response = await get_with(app, cookie, "/stream")
    assert response.text == "first chunk\ndone\n"
    assert "set-cookie" not in response.headers
    assert await backend.get(sid) == {"n": 1, "streamed": "after the headers"}


async def test_a_new_session_changed_while_streaming_warns(
    backend: SessionBackend, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(backend, [Route("/stream", streaming)])
    with caplog.at_level(logging.WARNING, logger="starlette_session"):
        async with client_for(app) as client:
            response = await client.get("/stream")
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    assert any("after the response started" in record.getMessage() for record in caplog.records)
