"""The apps being compared: one Starlette app, wrapped by each session middleware and store.

Every contender serves the same routes, so only the session layer differs:

* ``/read``  reads one key of the session;
* ``/write`` sets one key (a new value on every request);
* ``/none``  does not touch the session;
* ``/seed``  fills the session with ``SEED_SESSION`` (used to make the cookie for reads);
* ``/login`` sets ``user_id`` to a user seen for the first time (the ``user_key`` phase's "new").

A contender's ``factory`` is an async context manager that builds the app around the stores
in ``Stores`` and closes its clients afterwards. Third-party libraries (redis-py, pymemcache,
aiomcache, SQLAlchemy, starsessions) are imported inside the factories, so this module also
imports in the Starlette 0.52 venv, which only has Starlette and this package.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import itertools
import json
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from benchmarks.harness import ASGIApp, Message, Receive, Scope, Send

SECRET_KEY = "benchmark-secret-key-not-for-production-use"
COOKIE_NAME = "session"
MAX_AGE = 14 * 24 * 60 * 60
SESSION_BYTES = 310


def _seed_session() -> dict[str, Any]:
    data: dict[str, Any] = {
        "user_id": 48213,
        "username": "ada.lovelace",
        "email": "ada.lovelace@example.com",
        "roles": ["editor", "reviewer"],
        "csrf_token": "q3Jv0l0H7dXw1c2Qq8m4bQ9kR5sT2uV7yZ1aB3cD5eF",
        "locale": "en-GB",
        "timezone": "Europe/London",
        "last_login": "2026-05-09T07:35:25+00:00",
        "theme": "",
    }
    data["theme"] = "t" * (SESSION_BYTES - len(json.dumps(data)))
    return data


#: A logged-in user's session: 310 bytes of JSON, with one list among the values.
SEED_SESSION = _seed_session()
assert len(json.dumps(SEED_SESSION)) == SESSION_BYTES

_counter = itertools.count()


async def _read(request: Request) -> PlainTextResponse:
    value = request.session.get("user_id") if "session" in request.scope else None
    return PlainTextResponse(str(value))


async def _write(request: Request) -> PlainTextResponse:
    if "session" in request.scope:
        request.session["counter"] = next(_counter)
    return PlainTextResponse("ok")


async def _none(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def _seed(request: Request) -> PlainTextResponse:
    if "session" in request.scope:
        request.session.update(SEED_SESSION)
    return PlainTextResponse("ok")


async def _login(request: Request) -> PlainTextResponse:
    if "session" in request.scope:
        # A user with no other session each time: the user_key phase's "new" creates an index.
        request.session["user_id"] = f"u{next(_counter)}"
    return PlainTextResponse("ok")


ROUTES = [
    Route("/read", _read),
    Route("/write", _write),
    Route("/none", _none),
    Route("/seed", _seed),
    Route("/login", _login),
]


def build_app(middleware: Sequence[Middleware] = ()) -> Starlette:
    """Return the benchmark app with ``middleware`` (outermost first)."""
    return Starlette(routes=ROUTES, middleware=list(middleware))


@dataclass(frozen=True)
class Stores:
    """Where the servers are; ``None`` when a run has no such server."""

    workdir: Path
    redis_url: str | None = None
    memcached: tuple[str, int] | None = None

    def need_redis(self) -> str:
        if self.redis_url is None:
            raise RuntimeError("this contender needs Redis")
        return self.redis_url

    def need_memcached(self) -> tuple[str, int]:
        if self.memcached is None:
            raise RuntimeError("this contender needs memcached")
        return self.memcached


Factory = Callable[[Stores], contextlib.AbstractAsyncContextManager[ASGIApp]]


@dataclass(frozen=True)
class Contender:
    """One middleware + store combination.

    Attributes:
        name: short key used in tables and JSON.
        family: ``bare``, ``starlette``, ``ours``, ``starsessions`` or ``0.4.3``.
        store: the server whose commands are counted (``redis``, ``memcached``), or another label.
        factory: builds the app.
        notes: one line for the docs.
    """

    name: str
    family: str
    store: str | None
    factory: Factory
    notes: str = ""


# -- factories ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _bare(stores: Stores) -> AsyncIterator[ASGIApp]:
    yield build_app()


class _Passthrough:
    """A pure ASGI middleware that does nothing: the floor of any middleware in this stack."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class _SendWrapper:
    """A pure ASGI middleware that wraps ``send`` and looks at the response start, as sessions must."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["session"] = {}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
            await send(message)

        await self.app(scope, receive, send_wrapper)


@contextlib.asynccontextmanager
async def _passthrough(stores: Stores) -> AsyncIterator[ASGIApp]:
    yield build_app([Middleware(_Passthrough)])


@contextlib.asynccontextmanager
async def _send_wrapper(stores: Stores) -> AsyncIterator[ASGIApp]:
    yield build_app([Middleware(_SendWrapper)])


@contextlib.asynccontextmanager
async def _starlette(stores: Stores) -> AsyncIterator[ASGIApp]:
    from starlette.middleware.sessions import SessionMiddleware  # noqa: PLC0415

    yield build_app([Middleware(SessionMiddleware, secret_key=SECRET_KEY, max_age=MAX_AGE)])


def _ours(package: Any = None, **options: Any) -> Starlette:
    """Our middleware with ``options``; ``package`` is the package to take it from (ours by
    default, ``benchmarks.baseline``'s for the baseline). Backend types are given by their
    names (``backend_type="redis"``), which every version of the package accepts."""
    middleware = (package or importlib.import_module("starlette_session")).SessionMiddleware
    return build_app([Middleware(middleware, secret_key=SECRET_KEY, max_age=MAX_AGE, **options)])


@contextlib.asynccontextmanager
async def _ours_cookie(stores: Stores, **options: Any) -> AsyncIterator[ASGIApp]:
    yield _ours(**options)


@contextlib.asynccontextmanager
async def _ours_memory(stores: Stores, **options: Any) -> AsyncIterator[ASGIApp]:
    # Room for every session the "new" workload creates: eviction is not what is measured.
    yield _ours(backend_type="memory", backend_client=1_000_000, **options)


@contextlib.asynccontextmanager
async def _ours_redis_sync(stores: Stores, **options: Any) -> AsyncIterator[ASGIApp]:
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(stores.need_redis())
    try:
        yield _ours(backend_type="redis", backend_client=client, **options)
    finally:
        client.close()


@contextlib.asynccontextmanager
async def _ours_redis_sync_threads(stores: Stores, **options: Any) -> AsyncIterator[ASGIApp]:
    import redis  # noqa: PLC0415

    from starlette_session.backends.redis import RedisBackend  # noqa: PLC0415

    # The same sync client, each command in a worker thread (what RedisBackend did before the twin).
    client = redis.Redis.from_url(stores.need_redis())
    try:
        yield _ours(backend=RedisBackend(client, asyncio_twin=False), **options)
    finally:
        client.close()


@contextlib.asynccontextmanager
async def _ours_redis_async(stores: Stores, **options: Any) -> AsyncIterator[ASGIApp]:
    import redis.asyncio  # noqa: PLC0415

    client = redis.asyncio.Redis.from_url(stores.need_redis())
    try:
        yield _ours(backend_type="aioRedis", backend_client=client, **options)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _ours_memcache(stores: Stores, **options: Any) -> AsyncIterator[ASGIApp]:
    from pymemcache.client.base import Client  # noqa: PLC0415

    # pymemcache's defaults, as a 0.4.3 user would pass it (Nagle on, one socket).
    client = Client(stores.need_memcached())
    try:
        yield _ours(backend_type="memcache", backend_client=client, **options)
    finally:
        client.close()


@contextlib.asynccontextmanager
async def _ours_memcache_pooled(stores: Stores) -> AsyncIterator[ASGIApp]:
    from starlette_session.backends.memcache import MemcacheBackend  # noqa: PLC0415

    backend = MemcacheBackend.from_servers([stores.need_memcached()])
    try:
        yield _ours(backend=backend)
    finally:
        await backend.aclose()


@contextlib.asynccontextmanager
async def _ours_aiomemcache(stores: Stores, **options: Any) -> AsyncIterator[ASGIApp]:
    import aiomcache  # noqa: PLC0415

    host, port = stores.need_memcached()
    client = aiomcache.Client(host, port)
    try:
        yield _ours(backend_type="aioMemcache", backend_client=client, **options)
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def _ours_aiomemcache_pool64(stores: Stores) -> AsyncIterator[ASGIApp]:
    import aiomcache  # noqa: PLC0415

    host, port = stores.need_memcached()
    # aiomcache keeps at most pool_size (default 2) connections: 2 commands in flight at a time.
    client = aiomcache.Client(host, port, pool_size=64)
    try:
        yield _ours(backend_type="aioMemcache", backend_client=client)
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def _ours_file(stores: Stores, **options: Any) -> AsyncIterator[ASGIApp]:
    directory = stores.workdir / "file-sessions"
    yield _ours(backend_type="file", backend_client=str(directory), **options)


@contextlib.asynccontextmanager
async def _ours_sqlite_sync(stores: Stores, **options: Any) -> AsyncIterator[ASGIApp]:
    import sqlalchemy  # noqa: PLC0415

    engine = sqlalchemy.create_engine(f"sqlite:///{stores.workdir / 'sessions-sync.sqlite3'}")
    try:
        yield _ours(backend_type="sqlalchemy", backend_client=engine, **options)
    finally:
        engine.dispose()


@contextlib.asynccontextmanager
async def _ours_sqlite_async(stores: Stores, **options: Any) -> AsyncIterator[ASGIApp]:
    from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415

    engine = create_async_engine(f"sqlite+aiosqlite:///{stores.workdir / 'sessions-async.sqlite3'}")
    try:
        yield _ours(backend_type="sqlalchemy", backend_client=engine, **options)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def _starsessions_redis(stores: Stores) -> AsyncIterator[ASGIApp]:
    import redis.asyncio  # noqa: PLC0415
    from starsessions import SessionAutoloadMiddleware, SessionMiddleware  # noqa: PLC0415
    from starsessions.stores.redis import RedisStore  # noqa: PLC0415

    client = redis.asyncio.Redis.from_url(stores.need_redis())
    try:
        yield build_app(
            [
                Middleware(
                    SessionMiddleware,
                    store=RedisStore(connection=client),
                    lifetime=MAX_AGE,
                    cookie_https_only=False,
                ),
                Middleware(SessionAutoloadMiddleware),
            ]
        )
    finally:
        await client.aclose()


# -- starlette-session 0.4.3, whose import name clashes with ours --------------------------------

VENDOR_043 = Path(__file__).resolve().parent / ".vendor-043"
"""Where ``scripts/bench.sh`` unpacks the starlette-session 0.4.3 wheel."""

_043_NAME = "starlette_session_043"


def load_043(vendor: Path = VENDOR_043) -> ModuleType:
    """Import starlette-session 0.4.3 from ``vendor`` as ``starlette_session_043``.

    0.4.3 imports its own submodules as ``starlette_session.*``, which is our package's name.
    While its modules execute, ``sys.modules`` maps ``starlette_session`` to the 0.4.3 package;
    afterwards our modules are put back and 0.4.3's live on under ``starlette_session_043.*``.

    Raises:
        FileNotFoundError: the wheel was not unpacked into ``vendor``.
    """
    loaded = sys.modules.get(_043_NAME)
    if loaded is not None:
        return loaded
    package_dir = vendor / "starlette_session"
    init = package_dir / "__init__.py"
    if not init.is_file():
        raise FileNotFoundError(f"starlette-session 0.4.3 is not unpacked in {vendor}; run scripts/bench.sh")
    spec = importlib.util.spec_from_file_location(
        "starlette_session", init, submodule_search_locations=[str(package_dir)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {init}")
    ours = {
        name: module
        for name, module in sys.modules.items()
        if name == "starlette_session" or name.startswith("starlette_session.")
    }
    for name in ours:
        del sys.modules[name]
    module = importlib.util.module_from_spec(spec)
    sys.modules["starlette_session"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        theirs = {
            name: sys.modules.pop(name)
            for name in list(sys.modules)
            if name == "starlette_session" or name.startswith("starlette_session.")
        }
        sys.modules.update(ours)
    for name, submodule in theirs.items():
        sys.modules[_043_NAME + name.removeprefix("starlette_session")] = submodule
    return module


def have_043() -> bool:
    """Return whether the 0.4.3 wheel is unpacked (``scripts/bench.sh`` does it)."""
    return (VENDOR_043 / "starlette_session" / "__init__.py").is_file()


@contextlib.asynccontextmanager
async def _legacy_cookie(stores: Stores) -> AsyncIterator[ASGIApp]:
    legacy = load_043()
    yield build_app([Middleware(legacy.SessionMiddleware, secret_key=SECRET_KEY, cookie_name=COOKIE_NAME)])


@contextlib.asynccontextmanager
async def _legacy_redis(stores: Stores) -> AsyncIterator[ASGIApp]:
    import redis  # noqa: PLC0415

    legacy = load_043()
    client = redis.Redis.from_url(stores.need_redis())
    try:
        yield build_app(
            [
                Middleware(
                    legacy.SessionMiddleware,
                    secret_key=SECRET_KEY,
                    cookie_name=COOKIE_NAME,
                    backend_type=legacy.BackendType.redis,
                    backend_client=client,
                )
            ]
        )
    finally:
        client.close()


# -- the catalogue --------------------------------------------------------------------------------

CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in [
        Contender("bare", "bare", None, _bare, "the app without any session middleware"),
        Contender("noop-mw", "bare", None, _passthrough, "a pure ASGI middleware that only calls the app"),
        Contender(
            "send-wrap-mw", "bare", None, _send_wrapper, "a pure ASGI middleware that wraps send (floor)"
        ),
        Contender("starlette", "starlette", None, _starlette, "starlette.middleware.sessions"),
        Contender("ours-cookie", "ours", None, _ours_cookie, "signed cookie (Starlette's format)"),
        Contender("ours-memory", "ours", "memory", _ours_memory, "BackendType.memory"),
        Contender(
            "ours-redis-sync", "ours", "redis", _ours_redis_sync, "redis.Redis, asyncio twin (default)"
        ),
        Contender(
            "ours-redis-sync-threads",
            "ours",
            "redis",
            _ours_redis_sync_threads,
            "redis.Redis, thread bridge (asyncio_twin=False)",
        ),
        Contender("ours-redis-async", "ours", "redis", _ours_redis_async, "redis.asyncio.Redis"),
        Contender("ours-memcache", "ours", "memcached", _ours_memcache, "pymemcache Client (defaults), lock"),
        Contender(
            "ours-memcache-pooled",
            "ours",
            "memcached",
            _ours_memcache_pooled,
            "MemcacheBackend.from_servers: PooledClient, TCP_NODELAY",
        ),
        Contender("ours-aiomemcache", "ours", "memcached", _ours_aiomemcache, "aiomcache.Client"),
        Contender(
            "ours-aiomemcache-pool64",
            "ours",
            "memcached",
            _ours_aiomemcache_pool64,
            "aiomcache.Client(pool_size=64)",
        ),
        Contender("ours-file", "ours", "file", _ours_file, "one file per session"),
        Contender("ours-sqlite-sync", "ours", "sqlite", _ours_sqlite_sync, "SQLAlchemy Engine, pysqlite"),
        Contender(
            "ours-sqlite-async", "ours", "sqlite", _ours_sqlite_async, "SQLAlchemy AsyncEngine, aiosqlite"
        ),
        Contender(
            "starsessions-redis",
            "starsessions",
            "redis",
            _starsessions_redis,
            "starsessions RedisStore (redis.asyncio) + autoload",
        ),
        Contender("0.4.3-cookie", "0.4.3", None, _legacy_cookie, "starlette-session 0.4.3, cookie"),
        Contender(
            "0.4.3-redis-sync",
            "0.4.3",
            "redis",
            _legacy_redis,
            "starlette-session 0.4.3, redis.Redis called on the loop",
        ),
    ]
}


# -- merge mode: the same stores with concurrency="merge" -----------------------------------------

MERGE_SUFFIX = "+merge"
_MERGE_FACTORIES: dict[str, Callable[..., contextlib.AbstractAsyncContextManager[ASGIApp]]] = {
    "ours-redis-sync": _ours_redis_sync,
    "ours-redis-sync-threads": _ours_redis_sync_threads,
    "ours-redis-async": _ours_redis_async,
    "ours-memcache": _ours_memcache,
    "ours-aiomemcache": _ours_aiomemcache,
    "ours-file": _ours_file,
    "ours-sqlite-sync": _ours_sqlite_sync,
    "ours-sqlite-async": _ours_sqlite_async,
    "ours-memory": _ours_memory,
}
MERGE_BACKENDS = tuple(_MERGE_FACTORIES)
"""The contenders measured again with ``concurrency="merge"`` (``read_for_update`` + ``compare_and_swap``)."""


def _merge_variant(name: str) -> Contender:
    default = CONTENDERS[name]
    factory: Factory = functools.partial(_MERGE_FACTORIES[name], concurrency="merge")
    return Contender(
        name + MERGE_SUFFIX, default.family, default.store, factory, f"{default.notes}, concurrency='merge'"
    )


MERGE_CONTENDERS: dict[str, Contender] = {c.name: c for c in map(_merge_variant, MERGE_BACKENDS)}


# -- user_key: the same stores with a user's session index ------------------------------------------

USER_KEY = "user_id"
USER_KEY_SUFFIX = "+user_key"
_USER_KEY_FACTORIES: dict[str, Callable[..., contextlib.AbstractAsyncContextManager[ASGIApp]]] = {
    "ours-redis-sync": _ours_redis_sync,
    "ours-redis-async": _ours_redis_async,
    "ours-memcache": _ours_memcache,
    "ours-file": _ours_file,
    "ours-memory": _ours_memory,
}
USER_KEY_BACKENDS = tuple(_USER_KEY_FACTORIES)
"""The contenders measured again with ``user_key="user_id"`` (``SEED_SESSION`` holds a ``user_id``,
so the seeded session is in its user's index from ``/seed`` on)."""


def _user_key_variant(name: str) -> Contender:
    default = CONTENDERS[name]
    factory: Factory = functools.partial(_USER_KEY_FACTORIES[name], user_key=USER_KEY)
    return Contender(
        name + USER_KEY_SUFFIX,
        default.family,
        default.store,
        factory,
        f"{default.notes}, user_key={USER_KEY!r}",
    )


USER_KEY_CONTENDERS: dict[str, Contender] = {c.name: c for c in map(_user_key_variant, USER_KEY_BACKENDS)}
