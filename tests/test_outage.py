"""Store outages: a fast, typed answer (503), the app's hook, the circuit breaker, recovery.

The real-server tests put a ``FaultProxy`` between the client and Redis, memcached or
PostgreSQL and cut it three ways (refuse, accept-and-close, stall); Redis is also killed and
restarted. No test asserts a duration: a request that never answers fails the hang guard, and
recovery is polled for.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomcache
import anyio
import httpx
import pytest
import redis
import redis.asyncio
from pymemcache.client.base import Client as MemcacheClient
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from starlette_session import BackendError, SessionBackend
from starlette_session.backends import BackendType, create_backend
from starlette_session.backends.memory import MemoryBackend
from starlette_session.backends.redis import RedisBackend
from starlette_session.backends.sqlalchemy import SQLAlchemyBackend
from starlette_session.outage import StoreGuard
from tests import servers
from tests.backend_kit import client_for, make_app, session_cookie, session_id, set_session_cookie
from tests.faultproxy import FaultProxy, Mode
from tests.helpers import FakeClock, websocket_messages

pytestmark = pytest.mark.anyio

#: A request that has not answered after this long is hung: the test fails.
HANG_GUARD = 60
OUTAGE_OPTIONS: dict[str, Any] = {"store_timeout": 0.5, "breaker_threshold": 3, "breaker_cooldown": 0.05}


# -- the guard on its own, with a fake clock -------------------------------------------------------


async def test_breaker_opens_after_the_threshold_probes_and_closes() -> None:
    clock = FakeClock(100.0)
    guard = StoreGuard("test store", timeout=None, threshold=2, cooldown=5, clock=clock)
    calls: list[str] = []

    async def failing() -> None:
        calls.append("failing")
        raise BackendError("down")

    async def working() -> str:
        calls.append("working")
        return "ok"

    for _ in range(2):
        with pytest.raises(BackendError, match="down"):
            await guard.run("read a session", failing)
    assert guard.is_open
    with pytest.raises(BackendError, match="not tried"):
        await guard.run("read a session", working)  # refused without calling the store
    assert calls == ["failing", "failing"]
    clock.now += 5
    with pytest.raises(BackendError, match="down"):
        await guard.run("read a session", failing)  # the probe fails: open for another cooldown
    with pytest.raises(BackendError, match="not tried"):
        await guard.run("read a session", working)
    clock.now += 5
    assert await guard.run("read a session", working) == "ok"  # the probe succeeds: closed
    closed = not guard.is_open
    assert closed
    assert await guard.run("read a session", working) == "ok"
    assert calls == ["failing", "failing", "failing", "working", "working"]


async def test_only_one_probe_at_a_time() -> None:
    clock = FakeClock(100.0)
    guard = StoreGuard("test store", timeout=None, threshold=1, cooldown=1, clock=clock)
    release = anyio.Event()

    async def failing() -> None:
        raise BackendError("down")

    async def slow() -> str:
        await release.wait()
        return "ok"

    with pytest.raises(BackendError):
        await guard.run("read a session", failing)
    clock.now += 1
    results: list[str] = []
    async with anyio.create_task_group() as group:

        async def probe() -> None:
            results.append(await guard.run("read a session", slow))

        group.start_soon(probe)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(BackendError, match="not tried"):
            await guard.run("read a session", slow)  # a second caller while the probe runs
        release.set()
    assert results == ["ok"]
    assert not guard.is_open


async def test_a_call_past_the_timeout_fails_with_backend_error() -> None:
    guard = StoreGuard("test store", timeout=0.05, threshold=0)

    async def hangs() -> None:
        await anyio.sleep_forever()

    with pytest.raises(BackendError, match=r"test store failed to read a session within 0\.05 s"):
        await guard.run("read a session", hangs)


async def test_calls_started_at_different_times_each_time_out_and_leave_no_cancellation() -> None:
    # One watchdog timer serves every call in flight: it must re-arm for the later deadline,
    # and a timed-out call must leave its task with no cancellation pending.
    guard = StoreGuard("test store", timeout=0.05, threshold=0)
    first_started = anyio.Event()
    outcomes: list[str] = []

    async def hangs(started: anyio.Event | None) -> None:
        if started is not None:
            started.set()
        await anyio.sleep_forever()

    async def one(started: anyio.Event | None) -> None:
        with pytest.raises(BackendError, match=r"within 0\.05 s"):
            await guard.run("read a session", hangs, started)
        task = asyncio.current_task()
        assert task is not None
        if sys.version_info >= (3, 11):
            assert task.cancelling() == 0
        await anyio.sleep(0)  # the task is usable afterwards: no stray CancelledError
        outcomes.append("timed out")

    async def later() -> None:
        await first_started.wait()
        await one(None)

    async with anyio.create_task_group() as group:
        group.start_soon(one, first_started)
        group.start_soon(later)
    assert outcomes == ["timed out", "timed out"]


async def test_a_cancellation_from_outside_is_not_turned_into_a_timeout() -> None:
    guard = StoreGuard("test store", timeout=30, threshold=1)
    started = anyio.Event()

    async def hangs() -> None:
        started.set()
        await anyio.sleep_forever()

    async def caller() -> None:
        await guard.run("read a session", hangs)

    task = asyncio.ensure_future(caller())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not guard.is_open  # a cancelled request is not a store failure


async def test_a_call_that_finishes_in_time_is_not_cancelled_later() -> None:
    guard = StoreGuard("test store", timeout=0.05, threshold=0)

    async def quick() -> str:
        return "done"

    assert await guard.run("read a session", quick) == "done"
    await anyio.sleep(0.1)  # past the first call's deadline: the watchdog fires and finds nothing
    assert await guard.run("read a session", quick) == "done"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.cancelling() is 3.11+")
async def test_a_call_that_swallows_the_timeout_keeps_its_result_and_no_cancellation() -> None:
    guard = StoreGuard("test store", timeout=0.05, threshold=0)

    async def swallows() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "finished anyway"
        return "slept"

    assert await guard.run("read a session", swallows) == "finished anyway"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # type: ignore[attr-defined, unused-ignore]  # taken back by the watchdog


def test_one_guard_serves_event_loops_one_after_the_other() -> None:
    guard = StoreGuard("test store", timeout=0.05, threshold=0)

    async def hangs() -> None:
        await anyio.sleep_forever()

    async def timed_out() -> bool:
        try:
            await guard.run("read a session", hangs)
        except BackendError:
            return True
        return False

    assert asyncio.run(timed_out())
    assert asyncio.run(timed_out())  # a new loop: a new watchdog, not the closed loop's timer


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"store_timeout": 0}, "store_timeout"),
        ({"breaker_threshold": -1}, "breaker_threshold"),
        ({"breaker_cooldown": 0}, "breaker_cooldown"),
        ({"concurrency": "optimistic"}, "concurrency"),
    ],
)
def test_bad_outage_configuration_fails_at_start_up(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_app(MemoryBackend(), **options).build_middleware_stack()


# -- the middleware's answer: 503, the hook, fail-open ----------------------------------------------


class DownBackend(MemoryBackend):
    """A memory store that can be taken down; its errors carry what a careless store would."""

    down = False

    async def read(self, session_id: str) -> bytes | None:
        if self.down:
            raise BackendError("session store test failed to read a session: ConnectionError")
        return await super().read(session_id)

    async def replace(self, session_id: str, data: bytes, ttl: int) -> bool:
        if self.down:
            raise BackendError("session store test failed to save a session: ConnectionError")
        return await super().replace(session_id, data, ttl)


async def logged_in(app: Any) -> tuple[str, str]:
    async with client_for(app) as client:
        await client.post("/write", json={"user": "alice"})
        return session_cookie(client), session_id(client)


async def get_with(app: Any, cookie: str, path: str) -> httpx.Response:
    async with client_for(app) as client:
        set_session_cookie(client, cookie)
        return await client.get(path)


async def test_default_answer_is_a_short_503_with_one_log_record_and_no_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = DownBackend()
    app = make_app(store, breaker_threshold=0)
    cookie, sid = await logged_in(app)
    store.down = True
    with caplog.at_level(logging.DEBUG, logger="starlette_session"):
        response = await get_with(app, cookie, "/read")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"].startswith("text/plain")
    assert "set-cookie" not in response.headers
    assert "Traceback" not in response.text
    records = [record for record in caplog.records if record.name == "starlette_session"]
    assert len(records) == 1
    assert "read a session" in records[0].getMessage()
    assert records[0].exc_info is None
    for text in (response.text, records[0].getMessage()):
        assert sid not in text
        assert cookie not in text


async def test_the_hook_answers_with_its_own_response() -> None:
    seen: list[tuple[str, str]] = []

    async def hook(connection: HTTPConnection, error: BackendError) -> Response:
        seen.append((connection.url.path, error.operation or str(error)))
        return JSONResponse({"error": "sessions are down"}, status_code=503)

    store = DownBackend()
    app = make_app(store, on_backend_error=hook, breaker_threshold=0)
    cookie, _ = await logged_in(app)
    store.down = True
    response = await get_with(app, cookie, "/read")
    assert response.json() == {"error": "sessions are down"}
    assert seen
    assert seen[0][0] == "/read"


async def test_the_hook_can_fail_open_with_an_empty_never_saved_session() -> None:
    def hook(connection: HTTPConnection, error: BackendError) -> None:
        return None  # serve public pages without their session

    store = DownBackend()
    app = make_app(store, on_backend_error=hook, breaker_threshold=0)
    cookie, sid = await logged_in(app)
    store.down = True
    async with client_for(app) as client:
        set_session_cookie(client, cookie)
        assert (await client.get("/read")).json() == {}
        response = await client.post("/write", json={"user": "mallory"})
    assert response.status_code == 200
    assert "set-cookie" not in response.headers  # the empty session is never saved
    store.down = False
    assert await store.get(sid) == {"user": "alice"}


async def test_a_hook_that_raises_gets_the_default_answer(caplog: pytest.LogCaptureFixture) -> None:
    def hook(connection: HTTPConnection, error: BackendError) -> Response:
        raise RuntimeError("bug in the hook")

    store = DownBackend()
    app = make_app(store, on_backend_error=hook, breaker_threshold=0)
    cookie, _ = await logged_in(app)
    store.down = True
    response = await get_with(app, cookie, "/read")
    assert response.status_code == 503


async def test_a_save_failure_replaces_the_apps_response() -> None:
    store = DownBackend()
    app = make_app(store, breaker_threshold=0)
    cookie, sid = await logged_in(app)
    async with client_for(app) as client:
        set_session_cookie(client, cookie)
        await client.get("/read")
        store.down = True  # down between the load and the save
        original = store.read
        store.read = MemoryBackend.read.__get__(store)  # type: ignore[method-assign]  # the load works
        response = await client.post("/write", json={"user": "bob"})
        store.read = original  # type: ignore[method-assign]
    assert response.status_code == 503
    assert "bob" not in response.text
    store.down = False
    assert await store.get(sid) == {"user": "alice"}


async def test_a_websocket_gets_closed_with_try_again_later() -> None:
    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(dict(websocket.session))
        await websocket.close()

    store = DownBackend()
    app = make_app(store, [WebSocketRoute("/ws", socket)], breaker_threshold=0)
    cookie, _ = await logged_in(app)
    store.down = True
    messages = await websocket_messages(app, "/ws", cookie=f"session={cookie}")
    assert messages == [{"type": "websocket.close", "code": 1013, "reason": "session store unavailable"}]


async def test_the_breaker_answers_at_once_without_calling_the_store() -> None:
    class CountingDown(DownBackend):
        reads = 0

        async def read(self, session_id: str) -> bytes | None:
            self.reads += 1
            return await super().read(session_id)

    store = CountingDown()
    app = make_app(store, breaker_threshold=2, breaker_cooldown=3600)
    cookie, _ = await logged_in(app)
    store.down = True
    statuses = [(await get_with(app, cookie, "/read")).status_code for _ in range(5)]
    assert statuses == [503] * 5
    assert store.reads == 2  # the breaker opened after two failures


async def test_requests_without_a_session_cookie_are_served_during_an_outage() -> None:
    store = DownBackend()
    store.down = True
    app = make_app(store)
    async with client_for(app) as client:
        assert (await client.get("/read")).json() == {}


# -- real servers behind a cuttable proxy ------------------------------------------------------------


def _redis_sync(proxy: FaultProxy) -> tuple[SessionBackend, Callable[[], Any]]:
    client = redis.Redis(host="127.0.0.1", port=proxy.port)  # redis-py's default retries
    backend = create_backend(BackendType.redis, client)
    assert isinstance(backend, RedisBackend)
    assert backend.uses_twin  # its commands go through the asyncio twin
    return backend, client.close


def _redis_sync_threads(proxy: FaultProxy) -> tuple[SessionBackend, Callable[[], Any]]:
    client = redis.Redis(host="127.0.0.1", port=proxy.port)
    backend = RedisBackend(client, asyncio_twin=False)  # each command in a worker thread
    return backend, client.close


def _redis_async(proxy: FaultProxy) -> tuple[SessionBackend, Callable[[], Any]]:
    client = redis.asyncio.Redis(host="127.0.0.1", port=proxy.port)
    backend = create_backend(BackendType.aioRedis, client)
    assert backend is not None
    return backend, client.aclose


def _pymemcache(proxy: FaultProxy) -> tuple[SessionBackend, Callable[[], Any]]:
    client = MemcacheClient(("127.0.0.1", proxy.port))  # no timeout of its own: the guard bounds it
    backend = create_backend(BackendType.memcache, client)
    assert backend is not None
    return backend, client.close


def _aiomcache(proxy: FaultProxy) -> tuple[SessionBackend, Callable[[], Any]]:
    client = aiomcache.Client("127.0.0.1", proxy.port)  # the client that used to hang forever
    backend = create_backend(BackendType.aioMemcache, client)
    assert backend is not None
    return backend, client.close


def _postgres(driver: str) -> Callable[[FaultProxy], tuple[SessionBackend, Callable[[], Any]]]:
    def build(proxy: FaultProxy) -> tuple[SessionBackend, Callable[[], Any]]:
        url = f"postgresql+{driver}://postgres@127.0.0.1:{proxy.port}/sessions_test"
        backend = SQLAlchemyBackend.from_url(url, table_name="outage_sessions")
        return backend, backend.aclose

    return build


STORES: dict[str, tuple[str, Callable[[FaultProxy], tuple[SessionBackend, Callable[[], Any]]]]] = {
    "redis": ("redis", _redis_sync),
    "redis-threads": ("redis", _redis_sync_threads),
    "redis-asyncio": ("redis", _redis_async),
    "memcache": ("memcached", _pymemcache),
    "aiomemcache": ("memcached", _aiomcache),
    "postgresql": ("postgres", _postgres("psycopg")),
    "postgresql-async": ("postgres", _postgres("asyncpg")),
}


def _upstream(request: pytest.FixtureRequest, server: str) -> tuple[str, int]:
    if server == "redis":
        url: str = request.getfixturevalue("redis_url")
        host_port = url.removeprefix("redis://").split("/")[0]
    elif server == "memcached":
        host, port = request.getfixturevalue("memcached_addresses")[0]
        return host, port
    else:
        dsn: str = request.getfixturevalue("postgres_dsn")
        host_port = dsn.split("@", 1)[1].split("/", maxsplit=1)[0]
    host, _, port_text = host_port.partition(":")
    return host, int(port_text)


@pytest.fixture(params=sorted(STORES))
async def proxied(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FaultProxy, SessionBackend]]:
    server, build = STORES[request.param]
    with FaultProxy(*_upstream(request, server)) as proxy:
        backend, close = build(proxy)
        try:
            yield proxy, backend
        finally:
            proxy.set_mode("pass")
            result = close()
            if hasattr(result, "__await__"):
                await result


async def _wait_for_recovery(app: Any, cookie: str) -> httpx.Response:
    """Poll until the store answers again (the breaker lets a probe through every 50 ms)."""
    for _ in range(400):
        response = await get_with(app, cookie, "/read")
        if response.status_code != 503:
            return response
        await anyio.sleep(0.05)
    raise AssertionError("the service did not come back after the store did")


@pytest.mark.parametrize("mode", ["refuse", "close", "stall"])
async def test_an_outage_gets_503_without_hanging_and_the_service_comes_back(
    proxied: tuple[FaultProxy, SessionBackend], mode: Mode
) -> None:
    proxy, backend = proxied
    app = make_app(backend, **OUTAGE_OPTIONS)
    async with client_for(app) as client:
        await client.post("/write", json={"user": "alice", "cart": [1, 2]})
        cookie, sid = session_cookie(client), session_id(client)

    proxy.set_mode(mode)
    with anyio.fail_after(HANG_GUARD):
        for path in ["/read", "/append?item=3", "/read", "/clear", "/read", "/login"]:
            response = await get_with(app, cookie, path)
            assert response.status_code == 503, (path, response.text)
            assert "set-cookie" not in response.headers
            assert response.headers["retry-after"] == "1"

    proxy.set_mode("pass")
    with anyio.fail_after(HANG_GUARD):
        response = await _wait_for_recovery(app, cookie)
    assert response.json() == {"user": "alice", "cart": [1, 2]}  # intact: nothing overwrote it
    assert await backend.get(sid) == {"user": "alice", "cart": [1, 2]}


# -- Redis killed and restarted ------------------------------------------------------------------------


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[Callable[[], Callable[[], None]]]:
    """A Redis with an fsync'ed append-only file; yields ``start()``, which returns ``kill()``."""
    binary = servers._require("redis-server")
    port = servers._free_port()
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> Callable[[], None]:
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", ""]
        argv += ["--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no"]
        log = (tmp_path / "redis.log").open("ab")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        processes.append(process)
        servers._wait_until("redis", lambda: servers._redis_ready(port))

        def kill() -> None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)

        return kill

    start.port = port  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)


@pytest.mark.parametrize("asyncio_client", [False, True], ids=["sync", "asyncio"])
async def test_redis_killed_and_restarted(
    persistent_redis: Callable[[], Callable[[], None]], asyncio_client: bool
) -> None:
    kill = persistent_redis()
    port: int = persistent_redis.port  # type: ignore[attr-defined]
    client: Any = (redis.asyncio.Redis if asyncio_client else redis.Redis)(host="127.0.0.1", port=port)
    backend = create_backend(BackendType.aioRedis if asyncio_client else BackendType.redis, client)
    assert backend is not None
    try:
        app = make_app(backend, **OUTAGE_OPTIONS)
        async with client_for(app) as http:
            await http.post("/write", json={"user": "alice"})
            cookie = session_cookie(http)
        kill()
        with anyio.fail_after(HANG_GUARD):
            for path in ["/read", "/append?item=1", "/clear"]:
                assert (await get_with(app, cookie, path)).status_code == 503
        persistent_redis()
        with anyio.fail_after(HANG_GUARD):
            response = await _wait_for_recovery(app, cookie)
        assert response.json() == {"user": "alice"}
    finally:
        result = client.close() if not asyncio_client else client.aclose()
        if hasattr(result, "__await__"):
            await result


# -- the demo of what an app sees ----------------------------------------------------------------------


async def test_the_hook_sees_the_request_and_can_render_html() -> None:
    async def hook(connection: HTTPConnection, error: BackendError) -> Response:
        assert isinstance(connection, HTTPConnection)
        return PlainTextResponse("<h1>Maintenance</h1>", status_code=503, media_type="text/html")

    async def page(request: Request) -> Response:
        return PlainTextResponse(str(request.session.get("user")))

    store = DownBackend()
    app = make_app(store, [Route("/page", page)], on_backend_error=hook, breaker_threshold=0)
    cookie, _ = await logged_in(app)
    store.down = True
    response = await get_with(app, cookie, "/page")
    assert response.headers["content-type"].startswith("text/html")
