"""What the backend contract suites share: a factory per backend configuration on its real
server, the app under test, and helpers to read the client's session cookie.

``FACTORIES`` maps a configuration name to a function that builds the backend (and a closer);
``open_backend`` is what a suite's ``backend`` fixture calls. Adding a backend to the suites is
one entry in ``FACTORIES``.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from base64 import b64decode
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiomcache
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
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from examples.custom_backend import DictBackend
from starlette_session import SessionBackend, regenerate_session
from starlette_session.backends import BackendType, create_backend
from starlette_session.backends.base import DictBackendAdapter
from starlette_session.backends.redis import RedisBackend
from starlette_session.backends.sqlalchemy import SQLAlchemyBackend
from tests import helpers

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


async def _redis_threads(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[SessionBackend, Any]:
    """The sync client with each command in a worker thread, as clients without a twin run."""
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    return RedisBackend(client, asyncio_twin=False), _closing(client)


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
    "redis-threads": _redis_threads,
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


@contextlib.asynccontextmanager
async def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionBackend]:
    """Build the backend named by ``request.param``, and close what it opened afterwards."""
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


def make_app(store: SessionBackend, routes: Sequence[BaseRoute] = (), **options: Any) -> Starlette:
    """The contract's app on ``store``, with ``routes`` added; ``options`` go to the middleware."""
    contract_routes = [
        Route("/write", write, methods=["POST"]),
        Route("/read", read),
        Route("/append", append),
        Route("/clear", clear),
        Route("/login", login),
        *routes,
    ]
    return helpers.make_app(contract_routes, secret_key=SECRET, backend=store, **options)


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
