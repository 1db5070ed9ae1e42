"""Redis-specific tests, against real Redis servers (standalone and a 3-master cluster).

They add to the contract suite that runs on every backend: exact commands on the user's own
client, TTLs as Redis sees them, clients with ``decode_responses=True``, key prefixes and
0.4.3's un-prefixed keys, clusters, outages and auto-detection.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import fakeredis
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from starlette_session.backends import BackendType, backend_for_client, create_backend
from starlette_session.backends.redis import (
    _COMPARE_AND_SET,
    DEFAULT_KEY_PREFIX,
    MAX_KEY_PREFIX_LENGTH,
    AsyncRedisBackend,
    RedisBackend,
)
from starlette_session.exceptions import BackendError, ConfigurationError, MissingDependencyError
from starlette_session.ids import new_session_id
from tests import helpers

pytestmark = pytest.mark.anyio

Backend = RedisBackend | AsyncRedisBackend
Step = tuple[Callable[[], Awaitable[Any]], tuple[Any, ...], str]

# -- clients that record the commands sent through them ---------------------------------------


class CountingRedis(redis.Redis):
    """A user's instrumented client: records every command and the thread that sent it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.commands: list[tuple[Any, ...]] = []
        self.threads: set[int] = set()
        super().__init__(*args, **kwargs)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(args)
        self.threads.add(threading.get_ident())
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


class CountingAsyncRedis(redis.asyncio.Redis):
    """The asyncio twin of ``CountingRedis``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.commands: list[tuple[Any, ...]] = []
        super().__init__(*args, **kwargs)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(args)
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


class CountingCluster(redis.cluster.RedisCluster):
    """A sync cluster client that records the commands sent through it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.commands: list[tuple[Any, ...]] = []
        super().__init__(*args, **kwargs)

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        self.commands.append(args)
        return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]


class CountingAsyncCluster(redis.asyncio.cluster.RedisCluster):
    """An asyncio cluster client that records the commands sent through it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.commands: list[tuple[Any, ...]] = []
        super().__init__(*args, **kwargs)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        self.commands.append(args)
        return await super().execute_command(*args, **kwargs)


def _counting_redis(url: str) -> CountingRedis:
    client = CountingRedis.from_url(url)
    assert isinstance(client, CountingRedis)
    return client


def _counting_async_redis(url: str) -> CountingAsyncRedis:
    client = CountingAsyncRedis.from_url(url)
    assert isinstance(client, CountingAsyncRedis)
    return client


def _sync_nodes(nodes: list[tuple[str, int]]) -> list[redis.cluster.ClusterNode]:
    return [redis.cluster.ClusterNode(host, port) for host, port in nodes]  # type: ignore[no-untyped-call]


def _async_nodes(nodes: list[tuple[str, int]]) -> list[redis.asyncio.cluster.ClusterNode]:
    return [redis.asyncio.cluster.ClusterNode(host, port) for host, port in nodes]


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A separate client for looking at what the backend stored."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def sync_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def async_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(params=["sync", "asyncio"])
async def backend(
    request: pytest.FixtureRequest, sync_client: redis.Redis, async_client: redis.asyncio.Redis
) -> Backend:
    """Each backend around a client of the standalone server, with the default prefix."""
    if request.param == "sync":
        return RedisBackend(sync_client)
    return AsyncRedisBackend(async_client)


@pytest.fixture
def sync_cluster(redis_cluster_nodes: list[tuple[str, int]]) -> Iterator[redis.cluster.RedisCluster]:
    client = redis.cluster.RedisCluster(startup_nodes=_sync_nodes(redis_cluster_nodes))
    yield client
    client.close()


@pytest.fixture
async def async_cluster(
    redis_cluster_nodes: list[tuple[str, int]],
) -> AsyncIterator[redis.asyncio.cluster.RedisCluster]:
    client = redis.asyncio.cluster.RedisCluster(startup_nodes=_async_nodes(redis_cluster_nodes))
    yield client
    await client.aclose()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    return helpers.closed_port()


def _no_retry() -> Retry:
    # The default policy retries a refused connection ten times; one attempt is enough here.
    return Retry(NoBackoff(), 0)


def _options_unordered(command: tuple[Any, ...]) -> tuple[Any, ...]:
    """A ``SET`` with its options as a set (redis-py 5 sends ``EX n NX``, later ones ``NX EX n``)."""
    if command[0] != "SET":
        return command
    rest, options = list(command[3:]), set()
    while rest:
        option = rest.pop(0)
        options.add((option, rest.pop(0)) if option in ("EX", "PX", "EXAT", "PXAT") else (option,))
    return (*command[:3], frozenset(options))


def _command_calls(nodes: list[redis.Redis]) -> dict[str, int]:
    """Sum ``INFO commandstats`` over ``nodes``, leaving out this helper's own INFO/CONFIG."""
    calls: dict[str, int] = {}
    for node in nodes:
        for name, stats in node.info("commandstats").items():
            command = name.removeprefix("cmdstat_")
            if command == "info" or command.startswith("config"):
                continue
            calls[command] = calls.get(command, 0) + int(stats["calls"])
    return calls


# -- round trips, TTLs, touch, remove -----------------------------------------------------------


async def test_round_trip_stores_exact_bytes_under_prefixed_key(backend: Backend, raw: redis.Redis) -> None:
    session_id = new_session_id()
    data = '{"user": "éva", "n": 1}'.encode()
    await backend.write(session_id, data, 60)

    assert await backend.read(session_id) == data
    assert raw.get(DEFAULT_KEY_PREFIX + session_id) == data
    assert raw.get(session_id) is None


async def test_write_replaces_record(backend: Backend) -> None:
    session_id = new_session_id()
    await backend.write(session_id, b'{"n": 1}', 60)
    await backend.write(session_id, b'{"n": 2}', 60)
    assert await backend.read(session_id) == b'{"n": 2}'


async def test_write_sets_ttl_on_key(backend: Backend, raw: redis.Redis) -> None:
    session_id = new_session_id()
    await backend.write(session_id, b"{}", 100)
    ttl = raw.ttl(DEFAULT_KEY_PREFIX + session_id)
    assert 0 < ttl <= 100  # -1 would mean no expiry at all


async def test_dict_api_without_exp_uses_default_ttl(backend: Backend, raw: redis.Redis) -> None:
    session_id = new_session_id()
    await backend.set(session_id, {"a": 1}, None)
    ttl = raw.ttl(DEFAULT_KEY_PREFIX + backend.key_for(session_id))
    assert 1_000 < ttl <= backend.default_ttl
    assert await backend.get(session_id) == {"a": 1}


async def test_expired_record_reads_as_missing(backend: Backend, raw: redis.Redis) -> None:
    session_id = new_session_id()
    await backend.write(session_id, b"{}", 60)
    # Expire it now rather than wait: PEXPIRE 1 ms, then wait until Redis reports it gone.
    raw.pexpire(DEFAULT_KEY_PREFIX + session_id, 1)
    while raw.exists(DEFAULT_KEY_PREFIX + session_id):
        await anyio.sleep(0.01)
    assert await backend.read(session_id) is None


async def test_touch_renews_ttl_of_existing_record(backend: Backend, raw: redis.Redis) -> None:
    session_id = new_session_id()
    await backend.write(session_id, b'{"a": 1}', 100)

    assert await backend.touch(session_id, 5_000) is True
    assert 100 < raw.ttl(DEFAULT_KEY_PREFIX + session_id) <= 5_000
    assert await backend.read(session_id) == b'{"a": 1}'


async def test_touch_missing_record_returns_false_and_creates_nothing(
    backend: Backend, raw: redis.Redis
) -> None:
    session_id = new_session_id()
    assert await backend.touch(session_id, 100) is False
    assert raw.exists(DEFAULT_KEY_PREFIX + session_id) == 0


async def test_remove_deletes_key(backend: Backend, raw: redis.Redis) -> None:
    session_id = new_session_id()
    await backend.write(session_id, b"{}", 60)
    await backend.remove(session_id)
    assert raw.exists(DEFAULT_KEY_PREFIX + session_id) == 0
    assert await backend.read(session_id) is None


async def test_remove_missing_record_is_not_an_error(backend: Backend) -> None:
    await backend.remove(new_session_id())


async def test_missing_key_reads_none(backend: Backend) -> None:
    session_id = new_session_id()
    assert await backend.read(session_id) is None
    assert await backend.get(session_id) is None


async def test_delete_expired_has_nothing_to_do(backend: Backend) -> None:
    assert await backend.delete_expired() == 0


async def test_aclose_leaves_the_users_client_open(backend: Backend) -> None:
    session_id = new_session_id()
    await backend.aclose()
    await backend.write(session_id, b"{}", 60)
    assert await backend.read(session_id) == b"{}"


# -- decode_responses=True ----------------------------------------------------------------------


@pytest.fixture(params=["sync", "asyncio"])
async def decoding_backend(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Backend]:
    if request.param == "sync":
        sync_client = redis.Redis.from_url(redis_url, decode_responses=True)
        yield RedisBackend(sync_client)
        sync_client.close()
    else:
        async_client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        yield AsyncRedisBackend(async_client)
        await async_client.aclose()


async def test_decode_responses_client_reads_bytes(decoding_backend: Backend) -> None:
    session_id = new_session_id()
    data = '{"name": "Zoë ☃"}'.encode()
    await decoding_backend.write(session_id, data, 60)

    value = await decoding_backend.read(session_id)
    assert isinstance(value, bytes)
    assert value == data
    await decoding_backend.set(session_id, {"k": "ü"}, 60)
    assert await decoding_backend.get(session_id) == {"k": "ü"}


async def test_decode_responses_client_reads_undecodable_value_as_missing(
    decoding_backend: Backend, raw: redis.Redis
) -> None:
    session_id = new_session_id()
    raw.set(DEFAULT_KEY_PREFIX + session_id, b"\x80\x04\xff not utf-8", ex=60)
    assert await decoding_backend.read(session_id) is None
    # The connection is still usable afterwards.
    await decoding_backend.write(session_id, b"{}", 60)
    assert await decoding_backend.read(session_id) == b"{}"


async def test_decode_responses_client_with_other_encoding(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True, encoding="latin-1")
    try:
        backend = AsyncRedisBackend(client)
        session_id = new_session_id()
        data = '{"city": "Zürich"}'.encode()
        await backend.write(session_id, data, 60)
        assert await backend.read(session_id) == data
    finally:
        await client.aclose()


def backend_of(
    flavour: str, sync_client: redis.Redis, async_client: redis.asyncio.Redis, **options: Any
) -> Backend:
    """The sync or asyncio backend, as a parametrized test's ``flavour`` asks."""
    return (
        RedisBackend(sync_client, **options)
        if flavour == "sync"
        else AsyncRedisBackend(async_client, **options)
    )


# -- key prefix and 0.4.3's keys ------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["sync", "asyncio"])
async def test_custom_key_prefix(
    flavour: str, sync_client: redis.Redis, async_client: redis.asyncio.Redis, raw: redis.Redis
) -> None:
    backend = backend_of(flavour, sync_client, async_client, key_prefix="myapp:sess:")
    session_id = new_session_id()
    await backend.write(session_id, b"{}", 60)
    assert raw.get("myapp:sess:" + session_id) == b"{}"
    assert raw.exists(DEFAULT_KEY_PREFIX + session_id) == 0
    await backend.remove(session_id)
    assert raw.exists("myapp:sess:" + session_id) == 0


@pytest.mark.parametrize("flavour", ["sync", "asyncio"])
async def test_empty_prefix_uses_bare_session_id_like_0_4_3(
    flavour: str, sync_client: redis.Redis, async_client: redis.asyncio.Redis, raw: redis.Redis
) -> None:
    backend = backend_of(flavour, sync_client, async_client, key_prefix="")
    session_id = "0f8fad5b-d9cb-469f-a165-70867728950e"  # 0.4.3's ids were uuid4 strings
    raw.set(session_id, b'{"from": "json"}', ex=60)
    assert await backend.get(session_id) == {"from": "json"}
    await backend.write(session_id, b'{"n": 1}', 60)
    assert raw.get(session_id) == b'{"n": 1}'


_UNPICKLED: list[str] = []


def _record_unpickling(marker: str) -> None:
    _UNPICKLED.append(marker)


class _Exploit:
    """Unpickling this calls ``_record_unpickling``: what an attacker's payload would do."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_record_unpickling, ("ran",))


@pytest.mark.parametrize("flavour", ["sync", "asyncio"])
async def test_pickled_0_4_3_record_reads_as_missing_and_is_never_unpickled(
    flavour: str, sync_client: redis.Redis, async_client: redis.asyncio.Redis, raw: redis.Redis
) -> None:
    backend = backend_of(flavour, sync_client, async_client, key_prefix="")
    legit, hostile = new_session_id(), new_session_id()
    raw.set(legit, pickle.dumps({"user": "alice"}), ex=60)
    raw.set(hostile, pickle.dumps({"user": _Exploit()}), ex=60)

    assert await backend.get(legit) is None
    assert await backend.get(hostile) is None
    assert _UNPICKLED == []
    # read() hands the raw bytes up untouched; the session layer treats them as unreadable.
    assert await backend.read(legit) == pickle.dumps({"user": "alice"})


@pytest.mark.parametrize(
    "prefix",
    ["with space:", "tab\t:", "new\nline:", "nul\x00:", "bell\x07:", "x" * (MAX_KEY_PREFIX_LENGTH + 1)],
)
def test_invalid_key_prefix_is_refused(sync_client: redis.Redis, prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="key_prefix"):
        RedisBackend(sync_client, key_prefix=prefix)


def test_key_prefix_must_be_str(sync_client: redis.Redis) -> None:
    with pytest.raises(ConfigurationError, match="key_prefix must be a str"):
        RedisBackend(sync_client, key_prefix=b"bytes:")  # type: ignore[arg-type]


async def test_valid_key_prefixes_are_accepted(async_client: redis.asyncio.Redis) -> None:
    for prefix in ("", "a", "{tenant}:sess:", "é:", "x" * MAX_KEY_PREFIX_LENGTH):
        assert AsyncRedisBackend(async_client, key_prefix=prefix).key_prefix == prefix


# -- clusters ---------------------------------------------------------------------------------


@pytest.fixture(params=["sync", "asyncio"])
async def cluster_backend(
    request: pytest.FixtureRequest,
    sync_cluster: redis.cluster.RedisCluster,
    async_cluster: redis.asyncio.cluster.RedisCluster,
) -> Backend:
    if request.param == "sync":
        return RedisBackend(sync_cluster)
    return AsyncRedisBackend(async_cluster)


async def test_cluster_round_trip_ttl_touch_remove(
    cluster_backend: Backend, sync_cluster: redis.cluster.RedisCluster
) -> None:
    # Enough ids that they land on more than one of the three masters.
    ids = [new_session_id() for _ in range(12)]
    for index, session_id in enumerate(ids):
        await cluster_backend.write(session_id, b'{"i": %d}' % index, 100)
    # redis-cli --cluster create splits the 16384 slots evenly over the three masters.
    nodes = {key_slot((DEFAULT_KEY_PREFIX + session_id).encode()) // 5462 for session_id in ids}
    assert len(nodes) > 1

    for index, session_id in enumerate(ids):
        key = DEFAULT_KEY_PREFIX + session_id
        assert await cluster_backend.read(session_id) == b'{"i": %d}' % index
        assert 0 < sync_cluster.ttl(key) <= 100
        assert await cluster_backend.touch(session_id, 5_000) is True
        assert 100 < sync_cluster.ttl(key) <= 5_000
        await cluster_backend.remove(session_id)
        assert sync_cluster.exists(key) == 0
        assert await cluster_backend.read(session_id) is None
        assert await cluster_backend.touch(session_id, 100) is False


# -- exactly one command per operation, on the user's own client ---------------------------------


async def _assert_one_command_per_operation(
    backend: RedisBackend | AsyncRedisBackend,
    commands: list[tuple[Any, ...]],
    servers: list[redis.Redis],
    session_id: str,
) -> None:
    """Each backend operation sends exactly one command, through the user's client object
    (``commands``, recorded by it) and as counted by the servers themselves."""
    key = DEFAULT_KEY_PREFIX + session_id
    merged = b'{"a": 1}'
    steps: list[tuple[Callable[[], Awaitable[Any]], tuple[Any, ...], str, Any]] = [
        (lambda: backend.create(session_id, b"{}", 100), ("SET", key, b"{}", "NX", "EX", 100), "set", True),
        (lambda: backend.create(session_id, b"{}", 100), ("SET", key, b"{}", "NX", "EX", 100), "set", False),
        (lambda: backend.write(session_id, b"{}", 100), ("SET", key, b"{}", "EX", 100), "set", None),
        (lambda: backend.replace(session_id, b"{}", 100), ("SET", key, b"{}", "XX", "EX", 100), "set", True),
        (lambda: backend.read(session_id), ("GET", key), "get", b"{}"),
        (
            lambda: backend.compare_and_swap(session_id, b"{}", merged, 100),
            ("EVAL", _COMPARE_AND_SET, 1, key, b"{}", merged, 100),
            "eval",
            True,
        ),
        (lambda: backend.touch(session_id, 200), ("EXPIRE", key, 200), "expire", True),
        (lambda: backend.remove(session_id), ("DEL", key), "del", None),
        (lambda: backend.replace(session_id, b"{}", 100), ("SET", key, b"{}", "XX", "EX", 100), "set", False),
    ]
    for operation, command, stat, expected in steps:
        commands.clear()
        for server in servers:
            server.config_resetstat()
        result = await operation()
        assert result == expected
        assert [_options_unordered(sent) for sent in commands] == [_options_unordered(command)]
        counted = _command_calls(servers)
        if stat == "eval":  # some servers also count the GET and SET the script runs inside it
            assert counted["eval"] == 1
            assert set(counted) <= {"eval", "get", "set"}
        else:
            assert counted == {stat: 1}


async def test_sync_backend_sends_one_command_per_operation_on_users_client(
    redis_url: str, raw: redis.Redis
) -> None:
    client = _counting_redis(redis_url)
    try:
        client.ping()  # open the pooled connection now, so its handshake is not counted below
        await _assert_one_command_per_operation(
            RedisBackend(client), client.commands, [raw], new_session_id()
        )
    finally:
        client.close()


async def test_async_backend_sends_one_command_per_operation_on_users_client(
    redis_url: str, raw: redis.Redis
) -> None:
    client = _counting_async_redis(redis_url)
    try:
        await client.ping()
        backend = AsyncRedisBackend(client)
        await _assert_one_command_per_operation(backend, client.commands, [raw], new_session_id())
    finally:
        await client.aclose()


async def test_sync_cluster_backend_sends_one_command_per_operation(
    redis_cluster_nodes: list[tuple[str, int]],
) -> None:
    client = CountingCluster(startup_nodes=_sync_nodes(redis_cluster_nodes))
    masters = [redis.Redis(host=h, port=p) for h, p in redis_cluster_nodes]
    try:
        session_id = new_session_id()
        client.get(DEFAULT_KEY_PREFIX + session_id)  # open the key's node connection first
        await _assert_one_command_per_operation(RedisBackend(client), client.commands, masters, session_id)
    finally:
        client.close()
        for master in masters:
            master.close()


async def test_async_cluster_backend_sends_one_command_per_operation(
    redis_cluster_nodes: list[tuple[str, int]],
) -> None:
    client = CountingAsyncCluster(startup_nodes=_async_nodes(redis_cluster_nodes))
    masters = [redis.Redis(host=h, port=p) for h, p in redis_cluster_nodes]
    try:
        session_id = new_session_id()
        await client.get(DEFAULT_KEY_PREFIX + session_id)  # initialise the cluster first
        backend = AsyncRedisBackend(client)
        await _assert_one_command_per_operation(backend, client.commands, masters, session_id)
    finally:
        await client.aclose()
        for master in masters:
            master.close()


# -- the event loop keeps running ------------------------------------------------------------------


async def test_sync_backend_calls_redis_from_a_worker_thread(redis_url: str) -> None:
    client = _counting_redis(redis_url)
    try:
        backend = RedisBackend(client)
        session_id = new_session_id()
        await backend.write(session_id, b"{}", 60)
        await backend.read(session_id)
        await backend.touch(session_id, 60)
        await backend.remove(session_id)
        assert len(client.commands) == 4
        assert threading.get_ident() not in client.threads
    finally:
        client.close()


@pytest.mark.parametrize("flavour", ["sync", "asyncio"])
async def test_event_loop_runs_while_a_read_waits_on_a_slow_server(
    flavour: str, sync_client: redis.Redis, async_client: redis.asyncio.Redis, raw: redis.Redis
) -> None:
    """A ticker task keeps running while the server holds a read back.

    ``CLIENT PAUSE`` slows the server down (``DEBUG SLEEP`` is disabled by default since
    Redis 7). Had the read blocked the event loop, the ticker could not run between the
    read's start and its end, and would count 0 whatever the pause's length.
    """
    backend = backend_of(flavour, sync_client, async_client)
    session_id = new_session_id()
    await backend.write(session_id, b'{"slow": true}', 60)  # also opens the connection

    ticks = 0
    reading = False
    finished = False

    async def ticker() -> None:
        nonlocal ticks
        while not finished:
            if reading:
                ticks += 1
            await anyio.sleep(0)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ticker)
        await anyio.sleep(0)  # let the ticker start
        raw.client_pause(300, all=True)
        reading = True
        data = await backend.read(session_id)
        ticks_during_read = ticks
        finished = True

    assert data == b'{"slow": true}'
    assert ticks_during_read > 0


# -- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["sync", "asyncio"])
async def test_server_down_raises_backend_error_naming_the_command(flavour: str, closed_port: int) -> None:
    sync_client = redis.Redis(host="127.0.0.1", port=closed_port, retry=_no_retry())
    async_client = redis.asyncio.Redis(
        host="127.0.0.1", port=closed_port, retry=redis.asyncio.retry.Retry(NoBackoff(), 0)
    )
    backend = backend_of(flavour, sync_client, async_client)
    session_id = new_session_id()
    try:
        calls: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("GET", lambda: backend.read(session_id)),
            ("SET", lambda: backend.write(session_id, b"{}", 60)),
            ("DEL", lambda: backend.remove(session_id)),
            ("SET XX", lambda: backend.replace(session_id, b"{}", 60)),
            ("SET NX", lambda: backend.create(session_id, b"{}", 60)),
            ("EXPIRE", lambda: backend.touch(session_id, 60)),
            ("GET", lambda: backend.get(session_id)),
        ]
        for command, operation in calls:
            with pytest.raises(BackendError, match=f"Redis failed to {command} a") as caught:
                await operation()
            assert "ConnectionError" in str(caught.value)
            assert caught.value.__cause__ is None
            # The session id is a credential: it must not leak into error messages or logs.
            assert session_id not in str(caught.value)
    finally:
        sync_client.close()
        await async_client.aclose()


async def test_async_cluster_down_raises_backend_error(closed_port: int) -> None:
    client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=closed_port)
    try:
        backend = AsyncRedisBackend(client)
        with pytest.raises(BackendError, match="Redis failed to GET a session"):
            await backend.read(new_session_id())
    finally:
        await client.aclose()


async def test_server_error_reply_raises_backend_error(backend: Backend, raw: redis.Redis) -> None:
    session_id = new_session_id()
    raw.rpush(DEFAULT_KEY_PREFIX + session_id, "not a string")  # GET on a list: WRONGTYPE
    try:
        with pytest.raises(BackendError, match="Redis failed to GET a session") as caught:
            await backend.read(session_id)
        assert "ResponseError: WRONGTYPE" in str(caught.value)
    finally:
        raw.delete(DEFAULT_KEY_PREFIX + session_id)


async def test_invalid_ttl_is_reported_not_swallowed(backend: Backend) -> None:
    with pytest.raises(BackendError, match="Redis failed to SET a session"):
        await backend.write(new_session_id(), b"{}", -5)


# -- configuration, detection and the missing library -------------------------------------------


async def test_accepts_and_auto_detection(
    sync_client: redis.Redis,
    async_client: redis.asyncio.Redis,
    sync_cluster: redis.cluster.RedisCluster,
    async_cluster: redis.asyncio.cluster.RedisCluster,
    redis_url: str,
) -> None:
    counting = _counting_redis(redis_url)
    try:
        for sync in (sync_client, sync_cluster, counting):
            assert RedisBackend.accepts(sync)
            assert not AsyncRedisBackend.accepts(sync)
            assert type(backend_for_client(sync)) is RedisBackend
        for asynchronous in (async_client, async_cluster):
            assert AsyncRedisBackend.accepts(asynchronous)
            assert not RedisBackend.accepts(asynchronous)
            assert type(backend_for_client(asynchronous)) is AsyncRedisBackend
        for other in (object(), "redis://127.0.0.1:6379/0", None, 42, sync_client.pipeline()):
            assert not RedisBackend.accepts(other)
            assert not AsyncRedisBackend.accepts(other)
        assert not AsyncRedisBackend.accepts(async_client.pipeline())
    finally:
        counting.close()


async def test_backend_type_builds_the_backend(
    sync_client: redis.Redis, async_client: redis.asyncio.Redis
) -> None:
    sync_backend = create_backend(BackendType.redis, sync_client)
    async_backend = create_backend(BackendType.aioRedis, async_client)
    assert isinstance(sync_backend, RedisBackend)
    assert sync_backend.client is sync_client
    assert sync_backend.key_prefix == DEFAULT_KEY_PREFIX
    assert isinstance(async_backend, AsyncRedisBackend)
    assert async_backend.client is async_client
    assert RedisBackend.extra == AsyncRedisBackend.extra == "redis"


def test_from_client_none_says_what_to_pass() -> None:
    with pytest.raises(ConfigurationError, match=r"backend_client=redis\.Redis\(\.\.\.\)"):
        RedisBackend.from_client(None)
    with pytest.raises(ConfigurationError, match=r"backend_client=redis\.asyncio\.Redis\(\.\.\.\)"):
        AsyncRedisBackend.from_client(None)


async def test_wrong_client_type_names_the_backend_type_to_use(
    sync_client: redis.Redis,
    async_client: redis.asyncio.Redis,
    sync_cluster: redis.cluster.RedisCluster,
    async_cluster: redis.asyncio.cluster.RedisCluster,
) -> None:
    for asynchronous in (async_client, async_cluster):
        with pytest.raises(ConfigurationError, match=r"asyncio client; use .*BackendType\.aioRedis"):
            RedisBackend.from_client(asynchronous)
    for sync in (sync_client, sync_cluster):
        with pytest.raises(ConfigurationError, match=r"sync client; use backend_type=BackendType\.redis"):
            AsyncRedisBackend.from_client(sync)
    with pytest.raises(ConfigurationError, match="not a pipeline"):
        RedisBackend.from_client(sync_client.pipeline())
    with pytest.raises(ConfigurationError, match=r"needs a redis\.Redis, not builtins\.str"):
        RedisBackend.from_client("redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigurationError, match=r"needs a redis\.asyncio\.Redis, not builtins\.object"):
        AsyncRedisBackend.from_client(object())


def test_missing_redis_raises_missing_dependency_error(
    monkeypatch: pytest.MonkeyPatch, sync_client: redis.Redis
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    for cls in (RedisBackend, AsyncRedisBackend):
        with pytest.raises(MissingDependencyError) as caught:
            cls.from_client(sync_client)
        assert caught.value.package == "redis"
        assert caught.value.extra == "redis"
        assert "pip install 'starlette-session[redis]'" in str(caught.value)
        assert isinstance(caught.value, ImportError)
        # Detection must not fail because of it: the client is simply not taken.
        assert not cls.accepts(sync_client)
        assert not cls.accepts(object())


def test_importing_the_backend_module_does_not_import_redis() -> None:
    code = (
        "import sys\n"
        "import starlette_session.backends.redis as m\n"
        "assert not m.RedisBackend.accepts(object())\n"
        "assert not m.AsyncRedisBackend.accepts(object())\n"
        "assert 'redis' not in sys.modules, sorted(n for n in sys.modules if n.startswith('redis'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- fakeredis: extra coverage only, every behaviour above runs on a real server --------------------


async def test_fakeredis_clients_are_detected_and_work() -> None:
    sync_fake = fakeredis.FakeRedis()
    async_fake = fakeredis.FakeAsyncRedis()
    sync_backend = backend_for_client(sync_fake)
    async_backend = backend_for_client(async_fake)
    assert isinstance(sync_backend, RedisBackend)
    assert isinstance(async_backend, AsyncRedisBackend)
    for backend in (sync_backend, async_backend):
        session_id = new_session_id()
        await backend.write(session_id, b"{}", 60)
        assert await backend.read(session_id) == b"{}"
    await async_fake.aclose()
    sync_fake.close()
