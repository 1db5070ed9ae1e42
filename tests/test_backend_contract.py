"""The contract every backend honours, run on each one against its real server.

Each test drives the full middleware over ASGI with httpx, then checks the store directly.
Backend-specific behaviour is tested in tests/test_backend_<name>.py; this file only holds
what every backend must do the same way.
"""

from __future__ import annotations

import json
import uuid
from base64 import b64decode, b64encode
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomcache
import anyio
import httpx
import itsdangerous
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from pymemcache.client.base import Client as MemcacheClient
from pymemcache.client.hash import HashClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from examples.custom_backend import DictBackend
from starlette_session import SessionBackend, SessionMiddleware, regenerate_session
from starlette_session.backends import BackendType, create_backend
from starlette_session.backends.base import DictBackendAdapter
from starlette_session.backends.sqlalchemy import SQLAlchemyBackend

SECRET = "contract-secret"
Factory = Callable[
    [pytest.FixtureRequest, Path], Awaitable[tuple[SessionBackend, Callable[[], Awaitable[None]]]]
]


async def _nothing() -> None:
    return None


def _closing(*clients: Any) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        for client in clients:
            result = client.aclose() if hasattr(client, "aclose") else client.close()
            if hasattr(result, "__await__"):
                await result

    return close


async def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[SessionBackend, Any]:
    backend = create_backend(BackendType.memory, None)
    assert backend is not None
    return backend, _nothing


async def _custom(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[SessionBackend, Any]:
    return DictBackendAdapter(DictBackend()), _nothing


async def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[SessionBackend, Any]:
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    backend = create_backend(BackendType.redis, client)
    assert backend is not None
    return backend, _closing(client)


async def _aioredis(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[SessionBackend, Any]:
    client = redis.asyncio.Redis.from_url(request.getfixturevalue("redis_url"))
    backend = create_backend(BackendType.aioRedis, client)
    assert backend is not None
    return backend, _closing(client)


async def _redis_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[SessionBackend, Any]:
    nodes = request.getfixturevalue("redis_cluster_nodes")
    startup = [redis.cluster.ClusterNode(host, port) for host, port in nodes]  # type: ignore[no-untyped-call]
    client = redis.cluster.RedisCluster(startup_nodes=startup)
    backend = create_backend(BackendType.redis, client)
    assert backend is not None
    return backend, _closing(client)


async def _aioredis_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[SessionBackend, Any]:
    nodes = request.getfixturevalue("redis_cluster_nodes")
    startup = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in nodes]
    client = redis.asyncio.cluster.RedisCluster(startup_nodes=startup)
    await client.initialize()  # once, before concurrent requests would race to do it
    backend = create_backend(BackendType.aioRedis, client)
    assert backend is not None
    return backend, _closing(client)


async def _memcache(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[SessionBackend, Any]:
    client = MemcacheClient(request.getfixturevalue("memcached_addresses")[0])
    backend = create_backend(BackendType.memcache, client)
    assert backend is not None
    return backend, _closing(client)


async def _memcache_hash(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[SessionBackend, Any]:
    client = HashClient(request.getfixturevalue("memcached_addresses"))
    backend = create_backend(BackendType.memcache, client)
    assert backend is not None
    return backend, _closing(client)


async def _aiomemcache(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[SessionBackend, Any]:
    host, port = request.getfixturevalue("memcached_addresses")[0]
    client = aiomcache.Client(host, port)
    backend = create_backend(BackendType.aioMemcache, client)
    assert backend is not None
    return backend, _closing(client)


async def _file(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[SessionBackend, Any]:
    backend = create_backend(BackendType.file, tmp_path / "sessions")
    assert backend is not None
    return backend, _nothing


def _sql(url: Callable[[pytest.FixtureRequest, Path], str]) -> Factory:
    async def factory(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[SessionBackend, Any]:
        backend = SQLAlchemyBackend.from_url(url(request, tmp_path), table_name=f"s_{uuid.uuid4().hex[:12]}")
        return backend, backend.aclose

    return factory


def _postgres(driver: str) -> Callable[[pytest.FixtureRequest, Path], str]:
    def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
        dsn: str = request.getfixturevalue("postgres_dsn")
        return dsn.replace("postgresql://", f"postgresql+{driver}://", 1)

    return url


FACTORIES: dict[str, Factory] = {
    "memory": _memory,
    "custom-0.4.3": _custom,
    "redis": _redis,
    "redis-asyncio": _aioredis,
    "redis-cluster": _redis_cluster,
    "redis-cluster-asyncio": _aioredis_cluster,
    "memcache": _memcache,
    "memcache-hash": _memcache_hash,
    "aiomemcache": _aiomemcache,
    "file": _file,
    "sqlite": _sql(lambda request, tmp_path: f"sqlite:///{tmp_path}/sessions.db"),
    "sqlite-async": _sql(lambda request, tmp_path: f"sqlite+aiosqlite:///{tmp_path}/sessions.db"),
    "postgresql": _sql(_postgres("psycopg")),
    "postgresql-async": _sql(_postgres("asyncpg")),
}


@pytest.fixture(params=sorted(FACTORIES))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionBackend]:
    store, close = await FACTORIES[request.param](request, tmp_path)
    try:
        yield store
    finally:
        await close()


# -- the app under test --------------------------------------------------------------------


async def write(request: Request) -> Response:
    data = await request.json()
    request.session.update(data)
    return JSONResponse(dict(request.session))


async def read(request: Request) -> Response:
    return JSONResponse(dict(request.session))


async def append(request: Request) -> Response:
    request.session["items"].append(request.query_params["item"])
    return JSONResponse(dict(request.session))


async def clear(request: Request) -> Response:
    request.session.clear()
    return JSONResponse({})


async def login(request: Request) -> Response:
    regenerate_session()
    request.session["user"] = "alice"
    return JSONResponse(dict(request.session))


def make_app(store: SessionBackend, **options: Any) -> Starlette:
    return Starlette(
        routes=[
            Route("/write", write, methods=["POST"]),
            Route("/read", read),
            Route("/append", append),
            Route("/clear", clear),
            Route("/login", login),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key=SECRET, backend=store, **options)],
    )


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def session_cookie(client: httpx.AsyncClient) -> str:
    """The session cookie the client holds (the jar's newest, whatever its domain)."""
    values = [cookie.value for cookie in client.cookies.jar if cookie.name == "session"]
    assert values, "no session cookie"
    value = values[-1]
    assert value is not None
    return value


def set_session_cookie(client: httpx.AsyncClient, value: str) -> None:
    client.cookies.clear()
    client.cookies.set("session", value, domain="testserver.local", path="/")


def session_id(client: httpx.AsyncClient) -> str:
    signed = session_cookie(client).encode()
    payload = itsdangerous.TimestampSigner(SECRET).unsign(signed)
    value: str = json.loads(b64decode(payload))["_cssid"]
    return value


pytestmark = pytest.mark.anyio


# -- the contract ----------------------------------------------------------------------------


async def test_round_trip(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        response = await client.post("/write", json={"user": 1, "roles": ["a", "b"]})
        assert response.status_code == 200
        sid = session_id(client)
        assert len(sid) == 43
        assert (await client.get("/read")).json() == {"user": 1, "roles": ["a", "b"]}
    assert await backend.get(sid) == {"user": 1, "roles": ["a", "b"]}


async def test_read_does_not_write_or_set_cookie(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json={"n": 1})
        sid = session_id(client)
        await backend.remove(sid)
        await backend.write(sid, b'{"n": 2}', 60)
        response = await client.get("/read")
        assert response.json() == {"n": 2}
        assert "set-cookie" not in response.headers
        assert response.headers["vary"] == "Cookie"
    assert await backend.read(sid) == b'{"n": 2}'


async def test_missing_record_gives_empty_session_and_new_id(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json={"n": 1})
        old = session_id(client)
        await backend.remove(old)
        assert (await client.get("/read")).json() == {}
        await client.post("/write", json={"n": 2})
        new = session_id(client)
    assert new != old
    assert await backend.read(old) is None
    assert await backend.get(new) == {"n": 2}


async def test_unknown_id_is_never_adopted(backend: SessionBackend) -> None:
    chosen = "attacker-chosen-id-0123456789abcdef"
    signed = itsdangerous.TimestampSigner(SECRET).sign(b64encode(json.dumps({"_cssid": chosen}).encode()))
    async with client_for(make_app(backend)) as client:
        set_session_cookie(client, signed.decode())
        assert (await client.get("/read")).json() == {}
        await client.post("/write", json={"n": 1})
        assert session_id(client) != chosen
    assert await backend.read(chosen) is None


async def test_clear_deletes_record_and_cookie(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json={"n": 1})
        sid = session_id(client)
        response = await client.get("/clear")
        assert response.headers["set-cookie"].startswith("session=null; path=/; expires=Thu, 01 Jan 1970")
    assert await backend.read(sid) is None


async def test_regenerate_moves_data_and_kills_old_id(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json={"cart": ["x"]})
        old = session_id(client)
        old_cookie = session_cookie(client)
        assert (await client.get("/login")).json() == {"cart": ["x"], "user": "alice"}
        new = session_id(client)
        assert new != old
        assert await backend.read(old) is None
        assert await backend.get(new) == {"cart": ["x"], "user": "alice"}
        set_session_cookie(client, old_cookie)
        assert (await client.get("/read")).json() == {}


async def test_nested_change_is_saved(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json={"items": []})
        await client.get("/append", params={"item": "apple"})
        assert (await client.get("/read")).json() == {"items": ["apple"]}


async def test_expiry(backend: SessionBackend) -> None:
    async with client_for(make_app(backend, max_age=1)) as client:
        await client.post("/write", json={"n": 1})
        sid = session_id(client)
        assert await backend.read(sid) is not None
        await anyio.sleep(2.5)
    assert await backend.read(sid) is None


async def test_bad_cookies_give_empty_session(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        for value in ["garbage", "a.b.c", "eyJfY3NzaWQiOiAiLi4vLi4vZXRjIn0=.x.y", "x" * 8000]:
            set_session_cookie(client, value)
            response = await client.get("/read")
            assert response.status_code == 200
            assert response.json() == {}


async def test_concurrent_sessions_stay_apart(backend: SessionBackend) -> None:
    app = make_app(backend)
    results: dict[int, Any] = {}

    async def user(number: int) -> None:
        async with client_for(app) as client:
            await client.post("/write", json={"user": number})
            for _ in range(3):
                results[number] = (await client.get("/read")).json()

    async with anyio.create_task_group() as group:
        for number in range(16):
            group.start_soon(user, number)
    assert results == {number: {"user": number} for number in range(16)}


async def test_large_and_unicode_values(backend: SessionBackend) -> None:
    data = {"text": "héllo wörld ✓ 日本語 🎉", "blob": "x" * 200_000, "nested": {"ü": ["ß", 1.5, None, True]}}
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json=data)
        assert (await client.get("/read")).json() == data
        sid = session_id(client)
    assert await backend.get(sid) == data


async def test_dict_api_outside_requests(backend: SessionBackend) -> None:
    sid = "outside-request-" + uuid.uuid4().hex
    assert await backend.get(sid) is None
    await backend.set(sid, {"a": 1}, 60)
    assert await backend.get(sid) == {"a": 1}
    await backend.set(sid, {"a": 2}, 60)
    assert await backend.get(sid) == {"a": 2}
    assert await backend.touch(sid, 120) is True
    assert await backend.get(sid) == {"a": 2}
    await backend.delete(sid)
    assert await backend.get(sid) is None
    assert await backend.touch(sid, 60) is False
    await backend.delete(sid)  # deleting a missing record is not an error
    assert isinstance(await backend.delete_expired(), int)


async def test_rolling_touches_record(backend: SessionBackend) -> None:
    async with client_for(make_app(backend, rolling=True)) as client:
        await client.post("/write", json={"n": 1})
        first = session_cookie(client)
        sid = session_id(client)
        response = await client.get("/read")
        assert "set-cookie" in response.headers
        assert session_id(client) == sid
        assert first.split(".")[0] == session_cookie(client).split(".")[0]
    assert await backend.get(sid) == {"n": 1}


class CountingBackend(SessionBackend):
    """Delegates to a real backend and counts what the middleware asks of it."""

    def __init__(self, inner: SessionBackend) -> None:
        self.inner = inner
        self.calls: list[str] = []

    async def read(self, session_id: str) -> bytes | None:
        self.calls.append("read")
        return await self.inner.read(session_id)

    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        self.calls.append("write")
        await self.inner.write(session_id, data, ttl)

    async def create(self, session_id: str, data: bytes, ttl: int) -> bool:
        self.calls.append("create")
        return await self.inner.create(session_id, data, ttl)

    async def replace(self, session_id: str, data: bytes, ttl: int) -> bool:
        self.calls.append("replace")
        return await self.inner.replace(session_id, data, ttl)

    async def remove(self, session_id: str) -> None:
        self.calls.append("remove")
        await self.inner.remove(session_id)

    async def touch(self, session_id: str, ttl: int) -> bool:
        self.calls.append("touch")
        return await self.inner.touch(session_id, ttl)


async def test_no_store_flooding(backend: SessionBackend) -> None:
    counting = CountingBackend(backend)
    async with client_for(make_app(counting)) as client:
        for _ in range(3):
            response = await client.get("/read")  # reads the (empty) session, stores nothing
            assert response.json() == {}
            assert "set-cookie" not in response.headers
        set_session_cookie(client, "forged.cookie.value")
        assert "set-cookie" not in (await client.get("/read")).headers
    assert counting.calls == []


async def test_store_commands_per_request(backend: SessionBackend) -> None:
    counting = CountingBackend(backend)
    async with client_for(make_app(counting)) as client:
        await client.post("/write", json={"n": 1})
        assert counting.calls == ["create"]  # new session: one create, no load
        counting.calls.clear()
        await client.get("/read")
        assert counting.calls == ["read"]  # read: one load, no write
        counting.calls.clear()
        await client.post("/write", json={"n": 2})
        assert counting.calls == ["read", "replace"]
        counting.calls.clear()
        await client.get("/clear")
        assert counting.calls == ["read", "remove"]
