"""The sync Redis backend's asyncio twin, against real Redis servers.

``RedisBackend`` sends a plain ``redis.Redis``'s commands through a ``redis.asyncio.Redis`` built
from the client's connection settings (one per event loop) instead of a worker thread. These
tests check which clients get a twin and which keep the threads (and why), that the twin keeps
every setting that decides where and how commands go (database, credentials, client name,
timeouts, retries, pool limits, response decoding, TLS and its certificate checks), and that each
loop's twin is closed when the loop ends or by ``aclose()``, leaving no connection behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
import fakeredis
import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
import redis.sentinel
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.credentials import UsernamePasswordCredentialProvider
from redis.retry import Retry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.testclient import TestClient

from starlette_session import SessionMiddleware, regenerate_session
from starlette_session.backends import BackendType
from starlette_session.backends.redis import DEFAULT_KEY_PREFIX, RedisBackend
from starlette_session.exceptions import ConfigurationError
from starlette_session.ids import new_session_id, private_id
from tests import helpers
from tests.servers import HOST, TLSFiles, make_tls_files, start_redis, start_redis_tls

PASSWORD = "default-user-pw"
ALICE, ALICE_PASSWORD = "alice", "alice-pw"
SETTLE_TIMEOUT = 20.0
"""Seconds the server gets to notice that a closed twin's connections went away."""
REQUEST_TIMEOUT = 30.0
"""A generous bound on one request, so that a hang fails instead of blocking the run."""


# -- servers ----------------------------------------------------------------------------------


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


@pytest.fixture(scope="module")
def own_port() -> Iterator[int]:
    """A Redis server of this module alone, so client counts and key listings see only us."""
    with start_redis() as url:
        yield _port(url)


@pytest.fixture(scope="module")
def auth_port() -> Iterator[int]:
    """A Redis server with ``requirepass`` and an ACL user ``alice``."""
    with start_redis(extra_args=["--requirepass", PASSWORD]) as url:
        port = _port(url)
        admin = redis.Redis(host=HOST, port=port, password=PASSWORD)
        try:
            admin.execute_command(  # type: ignore[no-untyped-call]
                "ACL", "SETUSER", ALICE, "on", f">{ALICE_PASSWORD}", "~*", "+@all"
            )
        finally:
            admin.close()
        yield port


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The certificate of a CA that did not sign the server's certificate."""
    return make_tls_files(tmp_path_factory.mktemp("other-tls"), name="other").ca


@pytest.fixture(scope="module")
def tls_port(tls_files: TLSFiles) -> Iterator[int]:
    """A TLS-only Redis server whose certificate ``tls_files.ca`` signed."""
    with start_redis_tls(tls_files) as port:
        yield port


@pytest.fixture
def raw(own_port: int) -> Iterator[redis.Redis]:
    """A separate client of ``own_port``'s server, for looking at what the backend did."""
    client = redis.Redis(host=HOST, port=own_port)
    yield client
    client.close()


@pytest.fixture
def own_client(own_port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(host=HOST, port=own_port)
    yield client
    client.close()


# -- the app ------------------------------------------------------------------------------------


async def login(request: Request) -> Response:
    regenerate_session()
    request.session["user"] = "alice"
    request.session["note"] = "café ☕"
    return JSONResponse(dict(request.session))


async def read(request: Request) -> Response:
    return JSONResponse(dict(request.session))


ROUTES = [Route("/login", login, methods=["GET", "POST"]), Route("/read", read)]
LOGGED_IN = {"user": "alice", "note": "café ☕"}


def _middleware(**options: Any) -> SessionMiddleware:
    """The session middleware around ``ROUTES``; ``options`` say which store."""
    return SessionMiddleware(Router(routes=ROUTES), secret_key=helpers.SECRET, **options)


def _auto(client: redis.Redis) -> SessionMiddleware:
    """The 0.4.3 way: ``backend_type=BackendType.redis`` with the user's sync client."""
    return _middleware(backend_type=BackendType.redis, backend_client=client)


def _backend_of(app: SessionMiddleware) -> RedisBackend:
    backend = app.backend
    assert isinstance(backend, RedisBackend)
    return backend


def _run_threads(threads: list[threading.Thread], errors: list[BaseException]) -> None:
    """Start ``threads``, wait for them (bounded), and check that all ended without an error."""
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(4 * REQUEST_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []


def _twin_app(client: redis.Redis) -> tuple[SessionMiddleware, RedisBackend]:
    """``_auto(client)`` and its backend, which must send its commands through the twin."""
    app = _auto(client)
    backend = _backend_of(app)
    assert backend.uses_twin is True
    return app, backend


async def _login(app: SessionMiddleware) -> str:
    """Log in through ``app``; return the Cookie header that carries the new session."""
    with anyio.fail_after(REQUEST_TIMEOUT):
        response = await helpers.request(app, "/login")
    assert response.status_code == 200, response.text
    assert response.json() == LOGGED_IN
    return helpers.cookie_pair(helpers.only_set_cookie(response))


async def _round_trip(app: SessionMiddleware) -> str:
    """Log in, then read the session back with the cookie; return the session's store key."""
    cookie = await _login(app)
    with anyio.fail_after(REQUEST_TIMEOUT):
        response = await helpers.request(app, "/read", cookie=cookie)
    assert response.status_code == 200, response.text
    assert response.json() == LOGGED_IN
    return _store_key(cookie)


def _store_key(cookie: str) -> str:
    """The Redis key of the session the Cookie header ``session=...`` carries (hashed id)."""
    session_id = helpers.unsign_json(cookie.split("=", 1)[1])["_cssid"]
    assert isinstance(session_id, str)
    return DEFAULT_KEY_PREFIX + private_id(session_id)


async def _status_of_login(app: SessionMiddleware) -> int:
    with anyio.fail_after(REQUEST_TIMEOUT):
        response = await helpers.request(app, "/login", raise_app_exceptions=False)
    return response.status_code


def _connected_clients(raw: redis.Redis) -> int:
    return int(raw.info("clients")["connected_clients"])


def _settles(raw: redis.Redis, expected: int) -> int:
    """Poll the server's client count until it is ``expected`` (or the time is up); return it.

    A client that closed its socket is counted until the server has read the end of the
    connection, which it does on its own schedule: poll for the state, never sleep for it.
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT
    count = _connected_clients(raw)
    while count != expected and time.monotonic() < deadline:
        time.sleep(0.02)
        count = _connected_clients(raw)
    return count


def _named(raw: redis.Redis, name: str) -> list[dict[str, Any]]:
    """The server's connections whose client name is ``name``."""
    return [entry for entry in raw.client_list() if entry.get("name") == name]


def _no_retry() -> Retry:
    # A refused handshake is a ConnectionError, which the default policy retries with backoff.
    return Retry(NoBackoff(), 0)


# -- which clients get a twin -----------------------------------------------------------------


class SubclassedRedis(redis.Redis):
    """A user's own client class: it may override any command, so it keeps the threads."""


class TracingConnection(redis.Connection):
    """A user's own connection class: the asyncio twin could not run its code."""


class CountingRetry(Retry):
    """A user's own retry policy: the asyncio twin could not run its code."""


def _plain(port: int) -> redis.Redis:
    return redis.Redis(host=HOST, port=port)


def test_plain_clients_are_eligible(own_port: int) -> None:
    for client in (
        redis.Redis(host=HOST, port=own_port),
        redis.Redis.from_url(f"redis://{HOST}:{own_port}/0"),
        redis.Redis(host=HOST, port=own_port, db=3, password="pw", client_name="x", decode_responses=True),
        redis.Redis(connection_pool=redis.BlockingConnectionPool(host=HOST, port=own_port)),  # type: ignore[no-untyped-call]
        redis.Redis(unix_socket_path="/tmp/redis-twin-test.sock"),
        redis.Redis(host=HOST, port=own_port, ssl=True, ssl_cert_reqs="required"),
    ):
        backend = RedisBackend(client)
        assert backend.twin_refusal is None, backend.twin_refusal
        assert backend.uses_twin is True
        client.close()


def test_the_middleware_builds_a_backend_that_uses_the_twin(own_client: redis.Redis) -> None:
    backend = _backend_of(_auto(own_client))
    assert backend.client is own_client
    assert backend.twin_refusal is None
    assert backend.uses_twin is True


def _single_connection(port: int) -> redis.Redis:
    return redis.Redis(host=HOST, port=port, single_connection_client=True)


def _custom_callbacks(port: int) -> redis.Redis:
    client = _plain(port)
    client.set_response_callback("GET", lambda response, **options: response)
    return client


def _sentinel(port: int) -> redis.Redis:
    sentinel = redis.sentinel.Sentinel([(HOST, port)])  # type: ignore[no-untyped-call]
    master: redis.Redis = sentinel.master_for("mymaster")  # type: ignore[no-untyped-call]
    return master


def _own_connection_class(port: int) -> redis.Redis:
    pool = redis.ConnectionPool(host=HOST, port=port, connection_class=TracingConnection)
    return redis.Redis(connection_pool=pool)


def _connect_hook(*args: Any) -> None:
    """A ``redis_connect_func``: redis-py calls it with the connection, instead of its own handshake."""


INELIGIBLE: dict[str, tuple[Callable[[int], redis.Redis], str]] = {
    "fakeredis": (lambda port: fakeredis.FakeRedis(), "FakeRedis"),
    "subclass": (lambda port: SubclassedRedis(host=HOST, port=port), "SubclassedRedis"),
    "single connection": (_single_connection, "single"),
    "connection class": (_own_connection_class, "TracingConnection"),
    "credential provider": (
        lambda port: redis.Redis(
            host=HOST, port=port, credential_provider=UsernamePasswordCredentialProvider("u", "p")
        ),
        "credential_provider",
    ),
    "redis_connect_func": (
        lambda port: redis.Redis(host=HOST, port=port, redis_connect_func=_connect_hook),
        "redis_connect_func",
    ),
    "response callback": (_custom_callbacks, "callback"),
    "retry subclass": (
        lambda port: redis.Redis(host=HOST, port=port, retry=CountingRetry(NoBackoff(), 1)),
        "retry",
    ),
    "sentinel pool": (_sentinel, "SentinelConnectionPool"),
}


@pytest.mark.parametrize("case", list(INELIGIBLE))
def test_ineligible_clients_keep_the_threads_and_say_why(case: str, own_port: int) -> None:
    make, reason = INELIGIBLE[case]
    client = make(own_port)
    try:
        backend = RedisBackend(client)
        assert backend.uses_twin is False
        assert backend.twin_refusal, "an ineligible client must come with a reason"
        assert reason.lower() in backend.twin_refusal.lower(), backend.twin_refusal
        assert _backend_of(_auto(client)).uses_twin is False  # same through the middleware

        with pytest.raises(ConfigurationError) as raised:
            RedisBackend(client, asyncio_twin=True)
        text = str(raised.value)
        assert backend.twin_refusal in text
        assert "asyncio_twin=False" in text
    finally:
        client.close()


@pytest.mark.parametrize("method", ["get", "set", "delete", "expire", "eval", "execute_command"])
def test_a_command_method_replaced_on_the_instance_keeps_the_threads(
    method: str, own_client: redis.Redis
) -> None:
    with mock.patch.object(own_client, method, wraps=getattr(own_client, method)):
        backend = RedisBackend(own_client)
        assert backend.uses_twin is False
        assert backend.twin_refusal is not None
        assert method in backend.twin_refusal
        with pytest.raises(ConfigurationError, match="asyncio_twin=False"):
            RedisBackend(own_client, asyncio_twin=True)
    assert RedisBackend(own_client).uses_twin is True  # the patch is gone: eligible again


@pytest.mark.anyio
async def test_a_spy_on_the_client_sees_every_get(own_client: redis.Redis) -> None:
    with mock.patch.object(own_client, "get", wraps=own_client.get) as spy:
        app = _auto(own_client)
        assert _backend_of(app).uses_twin is False
        key = await _round_trip(app)
    assert mock.call(key) in spy.call_args_list, spy.call_args_list


@pytest.mark.anyio
async def test_asyncio_twin_true_on_an_eligible_client(own_client: redis.Redis, raw: redis.Redis) -> None:
    backend = RedisBackend(own_client, asyncio_twin=True)
    assert backend.uses_twin is True
    key = await _round_trip(_middleware(backend=backend))
    assert raw.exists(key) == 1
    twin = await backend.asyncio_client()
    assert type(twin) is redis.asyncio.Redis
    assert await backend.asyncio_client() is twin  # one per loop
    await backend.aclose()


@pytest.mark.anyio
async def test_asyncio_twin_false_keeps_the_threads(own_port: int, raw: redis.Redis) -> None:
    name = "sessions-threads"
    client = redis.Redis(host=HOST, port=own_port, client_name=name)
    try:
        backend = RedisBackend(client, asyncio_twin=False)
        assert backend.twin_refusal is None  # eligible, but turned off
        assert backend.uses_twin is False
        with pytest.raises(RuntimeError):
            await backend.asyncio_client()
        key = await _round_trip(_middleware(backend=backend))
        assert raw.exists(key) == 1
        # The commands went through the user's client itself: its pool holds the connection.
        assert _named(raw, name), raw.client_list()
    finally:
        client.close()


# -- settings the twin keeps -------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_commands_go_through_the_twin_not_the_sync_client(own_port: int, raw: redis.Redis) -> None:
    name = "sessions-twin"
    client = redis.Redis(host=HOST, port=own_port, client_name=name)
    try:
        app = _auto(client)
        backend = _backend_of(app)
        key = await _round_trip(app)
        assert raw.exists(key) == 1

        twin = await backend.asyncio_client()
        assert twin.connection_pool.connection_kwargs["client_name"] == name
        twin_id = await twin.client_id()
        # The server sees one connection of that name, and it is the twin's: the sync client
        # opened none.
        assert [int(entry["id"]) for entry in _named(raw, name)] == [twin_id]
        assert (await twin.client_getname()) in (name, name.encode())
        await backend.aclose()
    finally:
        client.close()


@pytest.mark.anyio
async def test_db_is_kept(own_port: int, raw: redis.Redis) -> None:
    db5 = redis.Redis(host=HOST, port=own_port, db=5)
    client = redis.Redis(host=HOST, port=own_port, db=5)
    try:
        db5.flushdb()
        app, backend = _twin_app(client)
        key = await _round_trip(app)
        assert db5.keys(f"{DEFAULT_KEY_PREFIX}*") == [key.encode()]
        assert db5.ttl(key) > 0
        assert raw.exists(key) == 0  # not in db 0
        twin = await backend.asyncio_client()
        assert twin.connection_pool.connection_kwargs["db"] == 5
        await backend.aclose()
    finally:
        db5.flushdb()
        db5.close()
        client.close()


@pytest.mark.anyio
@pytest.mark.parametrize("user", [None, ALICE])
async def test_the_right_credentials_work_through_the_twin(auth_port: int, user: str | None) -> None:
    password = PASSWORD if user is None else ALICE_PASSWORD
    client = redis.Redis(host=HOST, port=auth_port, username=user, password=password)
    try:
        app, backend = _twin_app(client)
        await _round_trip(app)
        twin = await backend.asyncio_client()
        kwargs = twin.connection_pool.connection_kwargs
        assert kwargs["password"] == password
        assert kwargs.get("username") == user
        assert (await twin.acl_whoami()) in (user or "default", (user or "default").encode())
        await backend.aclose()
    finally:
        client.close()


WRONG_CREDENTIALS: dict[str, dict[str, Any]] = {
    "wrong password": {"password": "not-the-password"},
    "wrong user password": {"username": ALICE, "password": PASSWORD},
    "unknown user": {"username": "mallory", "password": ALICE_PASSWORD},
    "no password": {},
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(WRONG_CREDENTIALS))
async def test_wrong_credentials_give_a_503(auth_port: int, case: str) -> None:
    client = redis.Redis(host=HOST, port=auth_port, retry=_no_retry(), **WRONG_CREDENTIALS[case])
    try:
        # What the sync client itself does with these credentials: it fails.
        with pytest.raises(redis.exceptions.AuthenticationError):
            client.ping()
        app, backend = _twin_app(client)
        assert await _status_of_login(app) == 503
        await backend.aclose()
    finally:
        client.close()


@pytest.mark.anyio
async def test_timeouts_retry_and_pool_size_are_kept(own_port: int) -> None:
    backoff = ExponentialBackoff(cap=0.2, base=0.01)
    retry = Retry(backoff, 4)
    client = redis.Redis(
        host=HOST,
        port=own_port,
        socket_timeout=0.75,
        socket_connect_timeout=0.5,
        health_check_interval=7,
        retry=retry,
        max_connections=9,
    )
    try:
        app, backend = _twin_app(client)
        await _round_trip(app)
        twin = await backend.asyncio_client()
        pool = twin.connection_pool
        assert pool is not client.connection_pool
        assert type(pool) is redis.asyncio.ConnectionPool
        assert pool.connection_class is redis.asyncio.Connection
        assert pool.max_connections == 9
        kwargs = pool.connection_kwargs
        assert kwargs["socket_timeout"] == 0.75
        assert kwargs["socket_connect_timeout"] == 0.5
        assert kwargs["health_check_interval"] == 7
        assert (kwargs["host"], kwargs["port"]) == (HOST, own_port)
        twin_retry = kwargs["retry"]
        assert isinstance(twin_retry, redis.asyncio.retry.Retry)
        # redis-py deep-copies the policy into the client's pool; the twin shares that copy's backoff.
        assert twin_retry._backoff is client.connection_pool.connection_kwargs["retry"]._backoff
        # (redis-py 5's backoff classes have no __eq__: compare what they hold)
        assert type(twin_retry._backoff) is type(backoff)
        assert vars(twin_retry._backoff) == vars(backoff)
        assert twin_retry._retries == 4  # (get_retries() is redis-py 5.1+)
        assert set(twin_retry._supported_errors) == set(retry._supported_errors)
        await backend.aclose()
    finally:
        client.close()


@pytest.mark.anyio
async def test_a_blocking_pool_gives_a_blocking_twin_pool(own_port: int) -> None:
    pool = redis.BlockingConnectionPool(host=HOST, port=own_port, max_connections=3, timeout=1.5)  # type: ignore[no-untyped-call]
    client = redis.Redis(connection_pool=pool)
    try:
        app, backend = _twin_app(client)
        await _round_trip(app)
        twin_pool = (await backend.asyncio_client()).connection_pool
        assert type(twin_pool) is redis.asyncio.BlockingConnectionPool
        assert twin_pool.max_connections == 3
        assert twin_pool.timeout == 1.5
        await backend.aclose()
    finally:
        client.close()
        pool.disconnect()


@pytest.mark.anyio
async def test_decode_responses_clients_round_trip(own_port: int, raw: redis.Redis) -> None:
    client = redis.Redis(host=HOST, port=own_port, decode_responses=True)
    try:
        app, backend = _twin_app(client)
        key = await _round_trip(app)
        stored = raw.get(key)
        assert isinstance(stored, bytes)
        assert json.loads(stored)["note"] == "café ☕"
        twin = await backend.asyncio_client()
        assert twin.connection_pool.connection_kwargs["decode_responses"] is True
        # The backend hands bytes back whatever the client decodes.
        session_id = new_session_id()
        await backend.write(session_id, '{"n": "é"}'.encode(), 60)
        assert await backend.read(session_id) == '{"n": "é"}'.encode()
        await backend.remove(session_id)
        await backend.aclose()
    finally:
        client.close()


@pytest.mark.anyio
async def test_tls_round_trips_through_an_ssl_twin(tls_port: int, tls_files: TLSFiles) -> None:
    client = redis.Redis(host=HOST, port=tls_port, ssl=True, ssl_ca_certs=str(tls_files.ca))
    try:
        assert client.ping() is True  # the sync client accepts this server
        app, backend = _twin_app(client)
        key = await _round_trip(app)
        twin = await backend.asyncio_client()
        assert twin.connection_pool.connection_class is redis.asyncio.SSLConnection
        kwargs = twin.connection_pool.connection_kwargs
        assert kwargs["ssl_ca_certs"] == str(tls_files.ca)
        assert kwargs.get("ssl_cert_reqs", "required") in ("required", ssl.CERT_REQUIRED)
        assert await twin.exists(key) == 1
        await backend.aclose()
    finally:
        client.close()


@pytest.mark.anyio
async def test_tls_with_an_untrusted_certificate_gives_a_503(tls_port: int, other_ca: Path) -> None:
    client = redis.Redis(
        host=HOST,
        port=tls_port,
        ssl=True,
        ssl_ca_certs=str(other_ca),
        ssl_cert_reqs="required",
        retry=_no_retry(),
    )
    try:
        with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            client.ping()  # the sync client refuses the server's certificate
        app, backend = _twin_app(client)
        assert await _status_of_login(app) == 503
        await backend.aclose()
    finally:
        client.close()


# -- one twin per loop, closed with it -----------------------------------------------------------

# The warnings pyproject.toml ignores, for the record-everything block below.
_IGNORED_WARNINGS = (
    "The anyio.abc.BlockingPortal alias is deprecated",
    "Please use `import python_multipart` instead.",
)


@contextlib.contextmanager
def _no_warnings() -> Iterator[None]:
    """Fail if the block (or a garbage collection after it) gave any warning, ResourceWarning included."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    unexpected = [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if not any(ignored in str(w.message) for ignored in _IGNORED_WARNINGS)
    ]
    assert unexpected == []


def test_a_new_loop_per_request_leaves_no_connection_behind(
    own_client: redis.Redis, raw: redis.Redis
) -> None:
    baseline = _connected_clients(raw)
    app = _auto(own_client)
    assert _backend_of(app).uses_twin is True
    http = TestClient(app)  # no ``with``: every request runs in an event loop of its own
    with _no_warnings():
        response = http.get("/login")
        assert response.status_code == 200
        assert response.json() == LOGGED_IN
        for _ in range(19):
            response = http.get("/read")
            assert response.status_code == 200
            assert response.json() == LOGGED_IN
    # Each loop closed its twin when it shut down: no connection outlives its loop.
    assert _settles(raw, baseline) == baseline
    # The sync client was never used.
    assert own_client.connection_pool._created_connections == 0


@pytest.mark.anyio
async def test_aclose_closes_the_running_loops_twin(own_client: redis.Redis, raw: redis.Redis) -> None:
    baseline = _connected_clients(raw)
    app = _auto(own_client)
    backend = _backend_of(app)
    await _round_trip(app)
    twin = await backend.asyncio_client()
    assert _connected_clients(raw) == baseline + 1  # the twin's one connection, still open

    await backend.aclose()
    assert _settles(raw, baseline) == baseline

    # The backend carries on with a new twin.
    await _round_trip(app)
    new_twin = await backend.asyncio_client()
    assert new_twin is not twin
    await backend.aclose()
    await backend.aclose()  # closing twice is harmless
    assert _settles(raw, baseline) == baseline


def test_two_loops_in_two_threads_each_get_their_own_twin(own_client: redis.Redis, raw: redis.Redis) -> None:
    baseline = _connected_clients(raw)
    backend = RedisBackend(own_client)
    assert backend.uses_twin is True
    barrier = threading.Barrier(2, timeout=REQUEST_TIMEOUT)
    twins: dict[int, redis.asyncio.Redis] = {}
    errors: list[BaseException] = []

    async def work(worker: int) -> None:
        barrier.wait()  # both loops are running: their twins are made concurrently
        twin = twins[worker] = await backend.asyncio_client()
        barrier.wait()  # both twins exist (and stay referenced): the loops now share the backend
        for round_ in range(50):
            session_id = new_session_id()
            data = f'{{"worker": {worker}, "round": {round_}}}'.encode()
            assert await backend.create(session_id, data, 60) is True
            assert await backend.read(session_id) == data
            assert await backend.replace(session_id, data + b" ", 60) is True
            assert await backend.touch(session_id, 60) is True
            await backend.remove(session_id)
            assert await backend.read(session_id) is None
            assert await backend.asyncio_client() is twin, "one twin per loop"

    def run(worker: int) -> None:
        try:
            asyncio.run(work(worker))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()

    _run_threads([threading.Thread(target=run, args=(worker,)) for worker in (1, 2)], errors)
    assert type(twins[1]) is redis.asyncio.Redis
    assert type(twins[2]) is redis.asyncio.Redis
    assert twins[1] is not twins[2], "each loop has its own twin"
    assert twins[1].connection_pool is not twins[2].connection_pool
    # Both loops ended with asyncio.run, which closed their twins.
    assert _settles(raw, baseline) == baseline
    assert own_client.connection_pool._created_connections == 0  # the sync client was never used


class _StallingLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``is_closed()`` parks one chosen thread until it is let go.

    The backend asks the loops it holds twins for whether they closed when it makes a new twin;
    parking that question stages a race with another loop making its twin at the same moment.
    """

    def __init__(self) -> None:
        super().__init__()
        self.park_thread: int | None = None
        self.parked = threading.Event()
        self.release = threading.Event()

    def is_closed(self) -> bool:
        if threading.get_ident() == self.park_thread and not self.parked.is_set():
            self.parked.set()
            self.release.wait(REQUEST_TIMEOUT)
        return super().is_closed()


def test_two_loops_making_their_twins_at_once_while_a_third_holds_one(own_client: redis.Redis) -> None:
    backend = RedisBackend(own_client)
    held = _StallingLoop()
    twins: dict[str, redis.asyncio.Redis] = {}
    errors: list[BaseException] = []
    first_done = threading.Event()
    try:
        twins["held"] = held.run_until_complete(backend.asyncio_client())

        async def first() -> None:
            twins["first"] = await backend.asyncio_client()

        async def second() -> None:
            twins["second"] = await backend.asyncio_client()
            held.release.set()  # the second twin is in place: let the first loop carry on
            first_done.wait(REQUEST_TIMEOUT)  # and keep it in place until the first loop is done

        def run_first() -> None:
            held.park_thread = threading.get_ident()
            try:
                asyncio.run(first())
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
            finally:
                held.parked.set()  # never parked: the second loop need not wait
                first_done.set()

        def run_second() -> None:
            held.parked.wait(REQUEST_TIMEOUT)  # the first loop is making its twin
            try:
                asyncio.run(second())
            except BaseException as exc:
                errors.append(exc)
            finally:
                held.release.set()

        _run_threads([threading.Thread(target=run_first), threading.Thread(target=run_second)], errors)
        assert len({id(twin) for twin in twins.values()}) == 3, "one twin per loop"
    finally:
        held.run_until_complete(backend.aclose())
        held.run_until_complete(held.shutdown_asyncgens())
        held.close()
