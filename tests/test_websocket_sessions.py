"""WebSocket sessions: what a connection changes after ``accept()`` reaches the store."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from starlette_session import ResponseStartedError, regenerate_session
from tests.helpers import (
    RecordingBackend,
    cookie_pair,
    demo_routes,
    make_app,
    only_set_cookie,
    request,
    websocket_messages,
)

pytestmark = pytest.mark.anyio


async def ws_count(websocket: WebSocket) -> None:
    await websocket.accept()
    websocket.session["messages"] = websocket.session.get("messages", 0) + 1
    websocket.session.setdefault("log", []).append("ws")
    await websocket.close()


async def ws_logout(websocket: WebSocket) -> None:
    await websocket.accept()
    websocket.session.clear()
    await websocket.close()


async def ws_regenerate(websocket: WebSocket) -> None:
    await websocket.accept()
    regenerate_session()
    websocket.session["after"] = True
    await websocket.close()


def app_with(backend: RecordingBackend | None = None) -> Starlette:
    routes: list[Route | WebSocketRoute] = [
        *demo_routes(),  # type: ignore[list-item]
        WebSocketRoute("/ws-count", ws_count),
        WebSocketRoute("/ws-logout", ws_logout),
        WebSocketRoute("/ws-regenerate", ws_regenerate),
    ]
    return make_app(routes) if backend is None else make_app(routes, backend=backend)


async def test_changes_after_accept_are_stored_under_the_same_id() -> None:
    backend = RecordingBackend()
    app = app_with(backend)
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    await websocket_messages(app, "/ws-count", cookie=cookie)
    await websocket_messages(app, "/ws-count", cookie=cookie)
    response = await request(app, "/read", cookie=cookie)
    assert response.json() == {"user": "alice", "messages": 2, "log": ["ws", "ws"]}
    assert len(backend.records) == 1


async def test_clearing_after_accept_deletes_the_record() -> None:
    backend = RecordingBackend()
    app = app_with(backend)
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    await websocket_messages(app, "/ws-logout", cookie=cookie)
    assert backend.records == {}
    assert (await request(app, "/read", cookie=cookie)).json() == {}


async def test_no_record_without_an_id_the_client_holds() -> None:
    backend = RecordingBackend()
    await websocket_messages(app_with(backend), "/ws-count")
    assert backend.writes == []


async def test_regenerating_after_accept_fails_closed() -> None:
    backend = RecordingBackend()
    app = app_with(backend)
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    with pytest.raises(ResponseStartedError, match="after the response"):
        await websocket_messages(app, "/ws-regenerate", cookie=cookie)
    # The planted id is not silently kept as if it were fresh: nothing was saved either.
    response = await request(app, "/read", cookie=cookie)
    assert response.json() == {"user": "alice"}


async def test_cookie_sessions_cannot_change_after_accept() -> None:
    app = app_with()
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    messages = await websocket_messages(app, "/ws-count", cookie=cookie)
    assert all(b"set-cookie" not in dict(m.get("headers", [])) for m in messages)
    assert (await request(app, "/read", cookie=cookie)).json() == {"user": "alice"}
