"""Outage latency: what requests get while the session store is cut off, and how fast it comes back.

Each store (Redis through the sync client, by its asyncio twin, with redis-py's default
retries, and through ``redis.asyncio``; memcached through pymemcache and aiomcache; PostgreSQL
through psycopg and asyncpg, when a PostgreSQL server can be started) sits behind
``tests.faultproxy.FaultProxy`` on 127.0.0.1. The middleware keeps its default outage policy
(``store_timeout`` 2 s, breaker after 3 consecutive failures, 0.5 s cooldown). For each way of
cutting the proxy (``refuse``,
``close``, ``stall``):

1. ``requests`` requests that carry the cookie of a session written before the outage are
   sent in-process one at a time; each is given ``HANG_SECONDS`` to answer, after which it
   counts as hung;
2. the proxy is set back to ``pass`` and the same request is sent every ``POLL_SECONDS``
   until one answers 200: the recovery time is from the switch to that answer;
3. every session written before the outage is read back through the app and compared with
   what was written;
4. the same again with the requests sent ``concurrency`` at a time.

Nothing is asserted: the numbers go into the results (``python -m benchmarks``), and a hung
request or a session that did not read back intact shows in the tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from benchmarks.contenders import MAX_AGE, SECRET_KEY, SEED_SESSION
from benchmarks.harness import ASGIApp, Message, build_scope
from benchmarks.suite import cookie_from_set_cookie

if TYPE_CHECKING:
    from starlette_session.backends.base import SessionBackend
    from tests.faultproxy import FaultProxy, Mode

ROOT = Path(__file__).resolve().parent.parent
MODES: tuple[Mode, ...] = ("refuse", "close", "stall")
HANG_SECONDS = 30.0
"""A request not answered after this long is hung (and cancelled)."""
RECOVERY_SECONDS = 30.0
"""The longest wait for the first 200 after the store is back."""
POLL_SECONDS = 0.005
"""Pause between two requests while waiting for recovery."""
SESSIONS = 20
"""Sessions written before the outages and read back after each."""


@dataclass(frozen=True)
class Settings:
    """Requests per phase and how many are in flight at once in the concurrent phase."""

    requests: int = 200
    concurrency: int = 16


# -- the app ----------------------------------------------------------------------------------------


async def _login(request: Request) -> PlainTextResponse:
    number = int(request.path_params["number"])
    request.session.update(SEED_SESSION)
    request.session.update({"user_id": number, "cart": [number, number + 1], "note": f"session {number}"})
    return PlainTextResponse("ok")


async def _read(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(request.session.get("user_id")))


async def _whoami(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.session))


def expected_session(number: int) -> dict[str, Any]:
    """What ``/login/{number}`` writes."""
    data = dict(SEED_SESSION)
    data.update({"user_id": number, "cart": [number, number + 1], "note": f"session {number}"})
    return data


def build_app(backend: SessionBackend) -> Starlette:
    """The outage app: our middleware on ``backend`` with its default outage policy."""
    from starlette_session import SessionMiddleware  # noqa: PLC0415

    routes = [Route("/login/{number:int}", _login), Route("/read", _read), Route("/whoami", _whoami)]
    middleware = Middleware(SessionMiddleware, secret_key=SECRET_KEY, max_age=MAX_AGE, backend=backend)
    return Starlette(routes=routes, middleware=[middleware])


@dataclass
class Answer:
    """One request's outcome: status (0: hung), seconds to answer, body and Set-Cookie values."""

    status: int
    seconds: float
    body: bytes = b""
    cookies: tuple[str, ...] = ()


async def request(app: ASGIApp, path: str, cookie: str | None, timeout: float = HANG_SECONDS) -> Answer:
    """Send ``GET path`` in-process; a request that has not answered after ``timeout`` is hung."""
    status = 0
    body: list[bytes] = []
    cookies: list[str] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            cookies.extend(v.decode("latin-1") for k, v in message.get("headers", []) if k == b"set-cookie")
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    started = time.perf_counter()
    try:
        await asyncio.wait_for(app(build_scope(path, cookie), receive, send), timeout)
    except asyncio.TimeoutError:
        return Answer(0, time.perf_counter() - started)
    return Answer(status, time.perf_counter() - started, b"".join(body), tuple(cookies))


# -- the stores ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Store:
    """One client of one server: ``open`` builds the backend on the proxy's port."""

    name: str
    server: str  # "redis", "memcached" or "postgres"
    client: str
    open: Callable[[int, str], contextlib.AbstractAsyncContextManager[SessionBackend]]


@contextlib.asynccontextmanager
async def _backend_around(
    client: Any, member: str, close: Callable[[], Any]
) -> AsyncIterator[SessionBackend]:
    """The ``BackendType[member]`` backend around ``client``; ``close()`` (maybe awaited) at the end."""
    from starlette_session.backends import BackendType, create_backend  # noqa: PLC0415

    backend = create_backend(BackendType[member], client)
    assert backend is not None
    try:
        yield backend
    finally:
        closed = close()
        if isinstance(closed, Awaitable):
            await closed


def _redis_sync(port: int, dsn: str) -> contextlib.AbstractAsyncContextManager[SessionBackend]:
    import redis  # noqa: PLC0415

    client = redis.Redis(host="127.0.0.1", port=port)  # redis-py's default retries and timeouts
    return _backend_around(client, "redis", client.close)


def _redis_async(port: int, dsn: str) -> contextlib.AbstractAsyncContextManager[SessionBackend]:
    import redis.asyncio  # noqa: PLC0415

    client = redis.asyncio.Redis(host="127.0.0.1", port=port)
    return _backend_around(client, "aioRedis", client.aclose)


def _pymemcache(port: int, dsn: str) -> contextlib.AbstractAsyncContextManager[SessionBackend]:
    from pymemcache.client.base import Client  # noqa: PLC0415

    client = Client(("127.0.0.1", port))  # no timeout of its own: the middleware's bounds it
    return _backend_around(client, "memcache", client.close)


def _aiomcache(port: int, dsn: str) -> contextlib.AbstractAsyncContextManager[SessionBackend]:
    import aiomcache  # noqa: PLC0415

    client = aiomcache.Client("127.0.0.1", port)
    return _backend_around(client, "aioMemcache", client.close)


def _postgres(driver: str) -> Callable[[int, str], contextlib.AbstractAsyncContextManager[SessionBackend]]:
    @contextlib.asynccontextmanager
    async def open_backend(port: int, dsn: str) -> AsyncIterator[SessionBackend]:
        from starlette_session.backends.sqlalchemy import SQLAlchemyBackend  # noqa: PLC0415

        user, _, rest = dsn.removeprefix("postgresql://").partition("@")
        database = rest.partition("/")[2]
        url = f"postgresql+{driver}://{user}@127.0.0.1:{port}/{database}"
        backend = SQLAlchemyBackend.from_url(url, table_name=f"outage_{driver}")
        try:
            yield backend
        finally:
            await backend.aclose()

    return open_backend


STORES = (
    Store("redis-sync", "redis", "redis.Redis through its asyncio twin (default retries)", _redis_sync),
    Store("redis-async", "redis", "redis.asyncio.Redis", _redis_async),
    Store("memcache", "memcached", "pymemcache Client", _pymemcache),
    Store("aiomemcache", "memcached", "aiomcache.Client", _aiomcache),
    Store("postgresql-psycopg", "postgres", "SQLAlchemy + psycopg", _postgres("psycopg")),
    Store("postgresql-asyncpg", "postgres", "SQLAlchemy + asyncpg", _postgres("asyncpg")),
)


# -- one store, three outages -------------------------------------------------------------------


def _summary(answers: list[Answer]) -> dict[str, Any]:
    answered = sorted(a.seconds for a in answers if a.status)
    statuses = Counter(str(a.status) for a in answers if a.status)
    result: dict[str, Any] = {
        "requests": len(answers),
        "hung": sum(1 for a in answers if not a.status),
        "statuses": dict(sorted(statuses.items())),
        "median_ms": round(statistics.median(answered) * 1000, 3) if answered else None,
        "p99_ms": None,
        "max_ms": round(answered[-1] * 1000, 3) if answered else None,
    }
    if len(answered) > 1:
        result["p99_ms"] = round(statistics.quantiles(answered, n=100, method="inclusive")[98] * 1000, 3)
    elif answered:
        result["p99_ms"] = result["median_ms"]
    return result


async def _sequential(app: ASGIApp, cookies: list[str], count: int) -> list[Answer]:
    return [await request(app, "/read", cookies[i % len(cookies)]) for i in range(count)]


async def _concurrent(app: ASGIApp, cookies: list[str], count: int, concurrency: int) -> list[Answer]:
    answers: list[Answer] = []
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            answers.append(await request(app, "/read", cookies[i % len(cookies)]))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answers


async def _first_200(app: ASGIApp, cookie: str) -> tuple[float | None, int, Counter[str]]:
    """Send ``/read`` until a 200; return the seconds until it, the attempts and the statuses seen."""
    started = time.perf_counter()
    attempts = 0
    seen: Counter[str] = Counter()
    while time.perf_counter() - started < RECOVERY_SECONDS:
        attempts += 1
        answer = await request(app, "/read", cookie, timeout=RECOVERY_SECONDS)
        seen[str(answer.status)] += 1
        if answer.status == 200:
            return time.perf_counter() - started, attempts, seen
        await asyncio.sleep(POLL_SECONDS)
    return None, attempts, seen


async def _intact(app: ASGIApp, cookies: list[str]) -> int:
    """Return how many of the sessions read back exactly as written."""
    intact = 0
    for number, cookie in enumerate(cookies):
        answer = await request(app, "/whoami", cookie)
        if answer.status == 200 and json.loads(answer.body) == expected_session(number):
            intact += 1
    return intact


async def measure_store(
    store: Store, upstream: tuple[str, int], dsn: str, settings: Settings
) -> dict[str, Any]:
    """Seed sessions through the proxy, then cut it each way; see the module docstring."""
    from tests.faultproxy import FaultProxy  # noqa: PLC0415

    result: dict[str, Any] = {"client": store.client, "sessions": SESSIONS, "modes": {}}
    with FaultProxy(*upstream) as proxy:
        async with store.open(proxy.port, dsn) as backend:
            app = build_app(backend)
            cookies = []
            for number in range(SESSIONS):
                answer = await request(app, f"/login/{number}", None)
                cookie = cookie_from_set_cookie(answer.cookies)
                if answer.status != 200 or cookie is None:
                    raise RuntimeError(f"{store.name}: /login answered {answer.status} without a cookie")
                cookies.append(cookie)
            result["intact_before"] = await _intact(app, cookies)
            for mode in MODES:
                result["modes"][mode] = await _one_outage(app, proxy, mode, cookies, settings)
                print(f"  {store.name:19} {mode:6} {_line(result['modes'][mode])}", flush=True)
            if store.name == "redis-sync":
                retry = getattr(getattr(backend, "client", None), "get_retry", lambda: None)()
                result["client_retries"] = getattr(retry, "_retries", None)
    return result


async def _one_outage(
    app: ASGIApp, proxy: FaultProxy, mode: Mode, cookies: list[str], settings: Settings
) -> dict[str, Any]:
    """Cut the proxy twice: for the sequential requests, then for the concurrent ones."""
    result: dict[str, Any] = {}
    phases: dict[str, Callable[[], Awaitable[list[Answer]]]] = {
        "sequential": lambda: _sequential(app, cookies, settings.requests),
        "concurrent": lambda: _concurrent(app, cookies, settings.requests, settings.concurrency),
    }
    for phase, send in phases.items():
        started = time.perf_counter()
        proxy.set_mode(mode)
        answers = await send()
        outage_seconds = time.perf_counter() - started
        proxy.set_mode("pass")
        recovery, attempts, seen = await _first_200(app, cookies[0])
        result[phase] = {
            **_summary(answers),
            "outage_seconds": round(outage_seconds, 2),
            "recovery_ms": None if recovery is None else round(recovery * 1000, 1),
            "recovery_attempts": attempts,
            "recovery_statuses": dict(seen),
            "intact_after": await _intact(app, cookies),
        }
    return result


def _line(mode: dict[str, Any]) -> str:
    return "; ".join(
        f"{phase[:3]} median {data['median_ms']} p99 {data['p99_ms']} ms, {data['statuses']}, "
        f"hung {data['hung']}, back after {data['recovery_ms']} ms, intact {data['intact_after']}"
        for phase, data in mode.items()
    )


# -- the phase ------------------------------------------------------------------------------------


class _CountingHandler(logging.Handler):
    """Counts the package's log records instead of printing one per failed request."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)  # formatting is part of the cost a real handler pays
        self.records[record.levelname] += 1


@contextlib.contextmanager
def _counted_logs() -> Iterator[_CountingHandler]:
    logger = logging.getLogger("starlette_session")
    handler = _CountingHandler()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield handler
    finally:
        logger.propagate = propagate
        logger.removeHandler(handler)


def _host_port(url: str) -> tuple[str, int]:
    host_port = url.split("://", 1)[1].rpartition("@")[2].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    return host, int(port)


@contextlib.contextmanager
def _postgres_server() -> Iterator[str | None]:
    """Start PostgreSQL with ``tests.servers``, or yield ``None`` when it is not installed."""
    from tests.servers import ServerNotInstalledError, start_postgres  # noqa: PLC0415

    with contextlib.ExitStack() as stack:
        try:
            dsn: str | None = stack.enter_context(start_postgres("sessions_bench"))
        except ServerNotInstalledError as exc:
            print(f"  skipping PostgreSQL: {exc}", flush=True)
            dsn = None
        yield dsn


def run_outage(redis_url: str, memcached: tuple[str, int], settings: Settings) -> dict[str, Any]:
    """Measure every store in ``STORES``; PostgreSQL only when it can be started here.

    Returns:
        ``{"settings": ..., "stores": {store: {"client", "modes": {mode: ...}, ...}}}``.
    """
    from starlette_session.outage import (  # noqa: PLC0415
        DEFAULT_BREAKER_COOLDOWN,
        DEFAULT_BREAKER_THRESHOLD,
        DEFAULT_STORE_TIMEOUT,
    )

    sys.path.insert(0, str(ROOT))  # tests.faultproxy and tests.servers
    results: dict[str, Any] = {
        "settings": {
            "requests": settings.requests,
            "concurrency": settings.concurrency,
            "sessions": SESSIONS,
            "hang_seconds": HANG_SECONDS,
            "poll_ms": POLL_SECONDS * 1000,
            "store_timeout": DEFAULT_STORE_TIMEOUT,
            "breaker_threshold": DEFAULT_BREAKER_THRESHOLD,
            "breaker_cooldown": DEFAULT_BREAKER_COOLDOWN,
        },
        "stores": {},
    }
    with _postgres_server() as dsn, _counted_logs() as logs:
        upstreams = {"redis": _host_port(redis_url), "memcached": memcached}
        if dsn is not None:
            upstreams["postgres"] = _host_port(dsn)
        for store in STORES:
            if store.server not in upstreams:
                continue
            upstream = upstreams[store.server]
            results["stores"][store.name] = asyncio.run(measure_store(store, upstream, dsn or "", settings))
            results["stores"][store.name]["log_records"] = dict(logs.records)
            logs.records.clear()
    return results
