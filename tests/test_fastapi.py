"""``starlette_session.fastapi``: the session as a typed FastAPI dependency, in sync and async endpoints.

Driven with FastAPI's ``TestClient`` (its cookie jar plays the browser); the server-side
cases use a ``MemoryBackend`` whose records the tests inspect.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.testclient import TestClient
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware

from starlette_session import (
    ConfigurationError,
    SessionMiddleware,
    SessionNotAvailableError,
    session_exempt,
)
from starlette_session.backends.memory import MemoryBackend
from starlette_session.fastapi import (
    RegeneratedSessionDep,
    SessionDep,
    regenerated_session,
    session_dependency,
)
from tests.helpers import SECRET, unsign_json

REPO = Path(__file__).resolve().parent.parent


def current_user(session: SessionDep) -> str | None:
    """A sync sub-dependency built on ``SessionDep``."""
    user = session.get("user")
    return None if user is None else str(user)


UserDep = Annotated[str | None, Depends(current_user)]


def make_app(backend: MemoryBackend | None = None) -> FastAPI:
    """The same routes twice: ``/sync/...`` with ``def`` endpoints, ``/async/...`` with ``async def``."""
    app = FastAPI()
    app.add_middleware(SessionMiddleware, secret_key=SECRET, backend=backend)

    @app.get("/sync/count")
    def sync_count(request: Request, session: SessionDep, user: UserDep) -> dict[str, Any]:
        session["count"] = session.get("count", 0) + 1
        return {"count": session["count"], "user": user, "same": session is request.session}

    @app.get("/async/count")
    async def async_count(request: Request, session: SessionDep, user: UserDep) -> dict[str, Any]:
        session["count"] = session.get("count", 0) + 1
        return {"count": session["count"], "user": user, "same": session is request.session}

    @app.post("/sync/login/{name}")
    def sync_login(name: str, session: RegeneratedSessionDep) -> dict[str, Any]:
        session["user"] = name
        return dict(session)

    @app.post("/async/login/{name}")
    async def async_login(name: str, session: RegeneratedSessionDep) -> dict[str, Any]:
        session["user"] = name
        return dict(session)

    @app.post("/sync/logout")
    def sync_logout(session: SessionDep) -> dict[str, Any]:
        session.clear()
        return dict(session)

    @app.post("/async/logout")
    async def async_logout(session: SessionDep) -> dict[str, Any]:
        session.clear()
        return dict(session)

    @app.get("/exempt")
    @session_exempt
    async def exempt(session: SessionDep) -> dict[str, Any]:
        return dict(session)  # pragma: no cover - the dependency refuses first

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, session: SessionDep) -> None:
        await websocket.accept()
        await websocket.send_json(dict(session))
        await websocket.close()

    return app


def session_id(client: TestClient) -> str:
    cssid: str = unsign_json(client.cookies["session"])["_cssid"]
    return cssid


KINDS = ["sync", "async"]


@pytest.mark.parametrize("kind", KINDS)
def test_session_dep_is_request_session_and_changes_are_saved(kind: str) -> None:
    with TestClient(make_app()) as client:
        first = client.get(f"/{kind}/count")
        assert first.json() == {"count": 1, "user": None, "same": True}
        assert "session" in client.cookies
        assert client.get(f"/{kind}/count").json() == {"count": 2, "user": None, "same": True}
    # A new client (no cookie) starts again.
    with TestClient(make_app()) as client:
        assert client.get(f"/{kind}/count").json()["count"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_regenerated_session_moves_to_a_new_id_and_keeps_the_data(kind: str) -> None:
    backend = MemoryBackend()
    app = make_app(backend)
    with TestClient(app) as client:
        assert client.get(f"/{kind}/count").json()["count"] == 1
        anonymous_cookie = client.cookies["session"]
        anonymous = session_id(client)

        response = client.post(f"/{kind}/login/alice")
        assert response.status_code == 200
        assert response.json() == {"count": 1, "user": "alice"}
        logged_in = session_id(client)
        assert logged_in != anonymous
        assert len(backend) == 1, "the record under the old id must be deleted"
        assert client.get(f"/{kind}/count").json() == {"count": 2, "user": "alice", "same": True}

    # The cookie from before the login no longer opens the session.
    with TestClient(app, cookies={"session": anonymous_cookie}) as replay:
        assert replay.get(f"/{kind}/count").json() == {"count": 1, "user": None, "same": True}


@pytest.mark.parametrize("kind", KINDS)
def test_logout_through_the_dependency_deletes_the_record(kind: str) -> None:
    backend = MemoryBackend()
    with TestClient(make_app(backend)) as client:
        client.post(f"/{kind}/login/bob")
        assert len(backend) == 1
        response = client.post(f"/{kind}/logout")
        assert response.json() == {}
        assert "expires=Thu, 01 Jan 1970 00:00:00 GMT" in response.headers["set-cookie"]
        assert len(backend) == 0
        assert "session" not in client.cookies


def test_websocket_endpoint_gets_the_session() -> None:
    with TestClient(make_app()) as client:
        client.get("/async/count")
        with client.websocket_connect("/ws") as websocket:
            assert websocket.receive_json() == {"count": 1}


def test_without_the_middleware_the_dependency_says_what_to_add() -> None:
    app = FastAPI()

    @app.get("/")
    async def index(session: SessionDep) -> dict[str, Any]:
        return dict(session)  # pragma: no cover - the dependency refuses first

    with (
        TestClient(app) as client,
        pytest.raises(SessionNotAvailableError, match=r"session_dependency\(\) found no session"),
    ):
        client.get("/")


def test_an_exempt_endpoint_gets_a_clear_error() -> None:
    with TestClient(make_app()) as client, pytest.raises(SessionNotAvailableError, match="session_exempt"):
        client.get("/exempt")


def test_starlettes_middleware_is_refused_not_mistyped() -> None:
    app = FastAPI()
    app.add_middleware(StarletteSessionMiddleware, secret_key=SECRET)

    @app.get("/")
    async def index(session: SessionDep) -> dict[str, Any]:
        return dict(session)  # pragma: no cover - the dependency refuses first

    with (
        TestClient(app) as client,
        pytest.raises(ConfigurationError, match=r"is a [\w.]+, not a starlette_session\.Session"),
    ):
        client.get("/")


def test_dependencies_are_async_so_fastapi_needs_no_thread() -> None:
    assert inspect.iscoroutinefunction(session_dependency)
    assert inspect.iscoroutinefunction(regenerated_session)


def test_importing_the_package_does_not_import_fastapi() -> None:
    code = "import sys, starlette_session, starlette_session.backends; print('fastapi' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def check_password(password: str) -> str:
    """A credentials check that refuses with 401 (module level: annotations resolve from globals)."""
    if password != "right":
        raise HTTPException(status_code=401)
    return "alice"


def test_a_refusing_dependency_listed_first_stops_the_regeneration() -> None:
    # The FastAPI quickstart relies on this: credentials checked by an earlier parameter.
    backend = MemoryBackend()
    app = FastAPI()
    app.add_middleware(SessionMiddleware, secret_key=SECRET, backend=backend)

    @app.post("/login")
    def login(
        user: Annotated[str, Depends(check_password)], session: RegeneratedSessionDep
    ) -> dict[str, Any]:
        session["user"] = user
        return dict(session)

    @app.get("/count")
    def count(session: SessionDep) -> dict[str, Any]:
        session["count"] = session.get("count", 0) + 1
        return dict(session)

    with TestClient(app) as client:
        client.get("/count")
        anonymous = session_id(client)
        assert client.post("/login?password=wrong").status_code == 401
        assert session_id(client) == anonymous
        assert client.get("/count").json() == {"count": 2}
        assert client.post("/login?password=right").json() == {"count": 2, "user": "alice"}
        assert session_id(client) != anonymous
