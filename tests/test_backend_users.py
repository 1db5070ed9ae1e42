"""A user's sessions on every backend against its real server: the ``user_key`` index, listing and
revoking, its consistency through logout, regeneration and a change of user, the absolute
timeout, the last-seen refresh, and the lifecycle events.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from starlette_session import ConfigurationError, SessionBackend, SessionMiddleware, regenerate_session
from starlette_session.backends.memory import MemoryBackend
from starlette_session.events import SessionEvent
from starlette_session.users import index_key, list_sessions, logout_other_sessions, update_index
from tests.backend_kit import FACTORIES, SECRET, open_backend, session_id, set_session_cookie
from tests.test_backend_races import Gate

pytestmark = pytest.mark.anyio

# The servers outlive a test: each test names its users afresh (see the autouse fixture).
ANN = "ann"
BOB = "bob"


@pytest.fixture(autouse=True)
def fresh_users(monkeypatch: pytest.MonkeyPatch) -> None:
    suffix = uuid.uuid4().hex[:12]
    monkeypatch.setitem(globals(), "ANN", f"ann-{suffix}")
    monkeypatch.setitem(globals(), "BOB", f"bob-{suffix}")


@pytest.fixture(params=sorted(name for name in FACTORIES if name != "custom-0.4.3"))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionBackend]:
    async with open_backend(request, tmp_path) as store:
        yield store


def user_app(store: SessionBackend, gate: Gate | None = None, **options: Any) -> SessionMiddleware:
    async def login(request: Request) -> Response:
        regenerate_session()
        request.session["user_id"] = request.query_params.get("user", ANN)
        return JSONResponse(dict(request.session))

    async def write(request: Request) -> Response:
        request.session[request.query_params["key"]] = request.query_params["value"]
        return JSONResponse(dict(request.session))

    async def read(request: Request) -> Response:
        return JSONResponse(dict(request.session))

    async def logout(request: Request) -> Response:
        request.session.clear()
        return JSONResponse({})

    async def mine(request: Request) -> Response:
        infos = await list_sessions()
        return JSONResponse(
            [{"handle": info.handle, "current": info.current, "ua": info.user_agent} for info in infos]
        )

    async def others(request: Request) -> Response:
        return JSONResponse({"revoked": await logout_other_sessions()})

    async def slow_write(request: Request) -> Response:
        assert "user_id" in request.session
        assert gate is not None
        await gate.park()
        request.session["late"] = True
        return JSONResponse(dict(request.session))

    routes = [
        Route("/login", login),
        Route("/write", write),
        Route("/read", read),
        Route("/logout", logout),
        Route("/mine", mine),
        Route("/others", others),
        Route("/slow-write", slow_write),
    ]
    options.setdefault("user_key", "user_id")
    return SessionMiddleware(Starlette(routes=routes), secret_key=SECRET, backend=store, **options)


@contextlib.asynccontextmanager
async def closing(*clients: httpx.AsyncClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for client in clients:
            await client.aclose()


def client_for(app: Any, agent: str = "agent/1") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers={"user-agent": agent}
    )


async def logged_in(
    app: Any, user: str | None = None, agent: str = "agent/1"
) -> tuple[httpx.AsyncClient, str]:
    client = client_for(app, agent)
    await client.get("/login", params={"user": user or ANN})
    return client, session_id(client)


async def test_a_users_sessions_are_listed_and_revoked(backend: SessionBackend) -> None:
    app = user_app(backend, track_client=True)
    first, first_id = await logged_in(app, agent="laptop")
    second, second_id = await logged_in(app, agent="phone")
    async with closing(first, second):
        infos = await backend.list_user_sessions(ANN)
        assert {info.handle for info in infos} == {backend.key_for(first_id), backend.key_for(second_id)}
        assert {info.user_agent for info in infos} == {"laptop", "phone"}
        assert all(info.ip == "127.0.0.1" and info.created_at <= info.last_seen_at for info in infos)
        assert all(first_id not in info.handle and second_id not in info.handle for info in infos)
        # Inside a request: the current one is marked.
        listed = (await first.get("/mine")).json()
        assert sorted((item["current"], item["ua"]) for item in listed) == [
            (False, "phone"),
            (True, "laptop"),
        ]
        # Revoke the phone by its handle: its next request is anonymous.
        assert await backend.revoke_session(backend.key_for(second_id)) is True
        assert await backend.revoke_session(backend.key_for(second_id)) is False
        assert (await second.get("/read")).json() == {}
        assert (await first.get("/read")).json() == {"user_id": ANN}
        assert [info.handle for info in await backend.list_user_sessions(ANN)] == [backend.key_for(first_id)]


async def test_a_handle_is_not_a_cookie_and_an_id_is_not_a_handle(backend: SessionBackend) -> None:
    app = user_app(backend)
    client, sid = await logged_in(app)
    async with closing(client):
        assert await backend.revoke_session(sid) is False  # the public id is not a handle
        assert (await client.get("/read")).json() == {"user_id": ANN}


async def test_log_out_every_other_device(backend: SessionBackend) -> None:
    app = user_app(backend)
    mine, _ = await logged_in(app)
    others = [await logged_in(app) for _ in range(3)]
    stranger, _ = await logged_in(app, user=BOB)
    async with closing(mine, stranger):
        assert (await mine.get("/others")).json() == {"revoked": 3}
        for client, _ in others:
            assert (await client.get("/read")).json() == {}
            await client.aclose()
        assert (await mine.get("/read")).json() == {"user_id": ANN}
        assert (await stranger.get("/read")).json() == {"user_id": BOB}
        assert len(await backend.list_user_sessions(ANN)) == 1
        assert await backend.revoke_user_sessions(BOB) == 1
        assert (await stranger.get("/read")).json() == {}


async def test_the_index_follows_logout_regeneration_and_a_change_of_user(backend: SessionBackend) -> None:
    app = user_app(backend)
    client, first = await logged_in(app)
    async with closing(client):
        await client.get("/login", params={"user": ANN})  # regenerate: the new id replaces the old
        second = session_id(client)
        assert second != first
        assert [info.handle for info in await backend.list_user_sessions(ANN)] == [backend.key_for(second)]
        await client.get("/write", params={"key": "user_id", "value": BOB})  # the user changes
        assert await backend.list_user_sessions(ANN) == []
        assert [info.handle for info in await backend.list_user_sessions(BOB)] == [backend.key_for(second)]
        await client.get("/logout")
        assert await backend.list_user_sessions(BOB) == []


async def test_a_revoked_session_is_not_brought_back_by_a_request_in_flight(backend: SessionBackend) -> None:
    gate = Gate()
    app = user_app(backend, gate)
    client, sid = await logged_in(app)
    responses: list[httpx.Response] = []
    async with closing(client):

        async def parked() -> None:
            responses.append(await client.get("/slow-write"))

        async with anyio.create_task_group() as group:
            group.start_soon(parked)
            await gate.all_arrived.wait()
            assert await backend.revoke_user_sessions(ANN) == 1
            gate.opened.set()
    assert "set-cookie" not in responses[0].headers
    assert await backend.get(sid) is None
    assert await backend.list_user_sessions(ANN) == []


async def test_expired_entries_are_pruned_without_a_sweep(backend: SessionBackend) -> None:
    app = user_app(backend)
    client, sid = await logged_in(app)
    async with closing(client):
        stale = "2-" + "0" * 64
        past = time.time() - 10
        await update_index(backend, ANN, add={stale: {"c": past - 5, "s": past - 5, "e": past}})
        handles = [info.handle for info in await backend.list_user_sessions(ANN)]
        assert handles == [backend.key_for(sid)]  # the expired entry is not listed
        await client.get("/logout")
    assert await backend.read(index_key(ANN)) in (None, b"{}")  # and is dropped from the record


async def test_reads_refresh_last_seen_only_after_the_interval(backend: SessionBackend) -> None:
    app = user_app(backend)
    client, sid = await logged_in(app)
    async with closing(client):
        before = (await backend.list_user_sessions(ANN))[0].last_seen_at
        strategy: Any = app.strategy
        strategy.clock = lambda: time.time() + 1_000  # later than the 300 s interval
        await client.get("/read")
        after = (await backend.list_user_sessions(ANN))[0].last_seen_at
        assert after >= before + 999
        assert await backend.get(sid) == {"user_id": ANN}  # the data is unchanged
        await client.get("/read")  # within the interval of the refresh: no write
        assert (await backend.list_user_sessions(ANN))[0].last_seen_at == after


async def test_a_rolling_read_renews_the_index_entry_with_the_session(backend: SessionBackend) -> None:
    app = user_app(backend, rolling=True, max_age=3600)
    client, _ = await logged_in(app)
    async with closing(client):
        before = (await backend.list_user_sessions(ANN))[0].expires_at
        strategy: Any = app.strategy
        strategy.clock = lambda: time.time() + 100  # within last_seen_interval: no refresh
        assert "set-cookie" in (await client.get("/read")).headers
        after = (await backend.list_user_sessions(ANN))[0].expires_at
        assert after >= before + 99  # renewed with the record, so "revoke all" still finds it


async def test_deleting_a_session_by_id_drops_it_from_the_index(backend: SessionBackend) -> None:
    app = user_app(backend)
    client, sid = await logged_in(app)
    async with closing(client):
        await backend.delete(sid)
        assert await backend.list_user_sessions(ANN) == []
        assert (await client.get("/read")).json() == {}


async def test_the_absolute_timeout_ends_an_active_session(backend: SessionBackend) -> None:
    app = user_app(backend, absolute_max_age=3600, rolling=True)
    client, _ = await logged_in(app)
    async with closing(client):
        strategy: Any = app.strategy
        strategy.clock = lambda: time.time() + 1_800
        assert (await client.get("/read")).json() == {"user_id": ANN}  # still within its life
        strategy.clock = lambda: time.time() + 3_601
        assert (await client.get("/read")).json() == {}  # over, however active it was
        await client.get("/write", params={"key": "a", "value": "1"})
        assert (await client.get("/read")).json() == {"a": "1"}  # a new session, a new id


async def test_events_tell_what_happened_without_an_id(backend: SessionBackend) -> None:
    seen: list[SessionEvent] = []
    app = user_app(backend, events=seen.append)
    client, sid = await logged_in(app)
    async with closing(client):
        await client.get("/read")
        await client.get("/write", params={"key": "a", "value": "1"})
        await client.get("/login")
        await client.get("/logout")
        set_session_cookie(client, "forged.value.here")
        await client.get("/read")
    kinds = [event.type for event in seen if event.type != "store_call"]
    assert kinds == [
        "created",
        "loaded",
        "loaded",
        "saved",
        "loaded",
        "regenerated",
        "created",
        "loaded",
        "destroyed",
        "rejected_cookie",
    ]
    calls = [event for event in seen if event.type == "store_call"]
    assert calls
    assert all(event.duration is not None and event.duration >= 0 for event in calls)
    assert all(event.backend == backend.name for event in seen)
    for event in seen:
        assert sid not in repr(event)


def test_user_key_needs_a_store_that_can_keep_an_index() -> None:
    with pytest.raises(ConfigurationError, match="server-side backend"):
        SessionMiddleware(Starlette(), secret_key="s", user_key="user_id")

    class Dicts:
        async def get(self, key: str) -> Any:
            return None

        async def set(self, key: str, value: Any, exp: int | None) -> Any:
            return None

        async def delete(self, key: str) -> Any:
            return None

    with pytest.raises(ConfigurationError, match="compare-and-swap"):
        SessionMiddleware(Starlette(), secret_key="s", custom_session_backend=Dicts(), user_key="user_id")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="hash_ids"):
        SessionMiddleware(Starlette(), secret_key="s", backend=MemoryBackend(), user_key="u", hash_ids=False)
    with pytest.raises(ConfigurationError, match="absolute_max_age"):
        SessionMiddleware(Starlette(), secret_key="s", absolute_max_age=60)
    with pytest.raises(ConfigurationError, match="absolute_max_age"):
        SessionMiddleware(Starlette(), secret_key="s", backend=MemoryBackend(), absolute_max_age=0)


async def test_list_sessions_outside_a_request_explains() -> None:
    from starlette_session import SessionNotAvailableError  # noqa: PLC0415

    with pytest.raises(SessionNotAvailableError, match="list_sessions"):
        await list_sessions()
