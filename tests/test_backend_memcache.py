"""The memcached backends against real memcached servers (``memcached_addresses``: two of them)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiomcache
import anyio
import pytest
from pymemcache.client.base import Client, PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.serde import FLAG_COMPRESSED, compressed_serde, pickle_serde
from starlette.testclient import TestClient

from starlette_session import MemcacheJSONSerde as PackageMemcacheJSONSerde
from starlette_session.backends import BackendType, MemcacheJSONSerde, backend_for_client, create_backend
from starlette_session.backends.memcache import DEFAULT_KEY_PREFIX, AioMemcacheBackend, MemcacheBackend
from starlette_session.exceptions import BackendError, ConfigurationError, MissingDependencyError
from starlette_session.expiry import MEMCACHED_MAX_RELATIVE
from starlette_session.ids import new_session_id, private_id
from starlette_session.interfaces import SessionBackend
from starlette_session.serializers import JSON
from tests.helpers import closed_port
from tests.servers import start_memcached

Address = tuple[str, int]
DAY = 24 * 60 * 60
KINDS = ["client", "pooled", "hash", "from_servers", "aio"]


def _client(address: Address, **options: Any) -> Client:
    return Client(address, connect_timeout=5, timeout=5, **options)


def _expiry_of(address: Address, key: str) -> int | None:
    """Return the absolute expiry memcached holds for ``key`` (-1: never), ``None`` if absent."""
    with socket.create_connection(address, timeout=5) as sock, sock.makefile("rb") as reply:
        sock.sendall(b"lru_crawler metadump all\r\n")
        found = None
        for raw in iter(reply.readline, b""):
            line = raw.decode().strip()
            if line == "END":
                return found
            fields = dict(part.split("=", 1) for part in line.split())
            if urllib.parse.unquote(fields["key"]) == key:
                found = int(fields["exp"])
    raise AssertionError("metadump ended without END")


def _raw_with_flags(address: Address) -> Client:
    """A client that reads values as ``(bytes, flags)``, untouched by any serde."""
    return _client(address, deserializer=lambda key, value, flags: (value, flags))


async def _wait_until_missing(backend: SessionBackend, session_id: str, limit: float = 10.0) -> None:
    # memcached's clock ticks once a second: a 1 s record is gone within about 2 s.
    deadline = time.monotonic() + limit
    while await backend.read(session_id) is not None:
        assert time.monotonic() < deadline, "the record outlived its TTL"
        await anyio.sleep(0.25)


def _build(kind: str, addresses: list[Address], **options: Any) -> SessionBackend:
    if kind == "client":
        return MemcacheBackend(_client(addresses[0]), **options)
    if kind == "pooled":
        return MemcacheBackend(PooledClient(addresses[0], connect_timeout=5, timeout=5), **options)
    if kind == "hash":
        return MemcacheBackend(HashClient(addresses, connect_timeout=5, timeout=5), **options)
    if kind == "from_servers":
        return MemcacheBackend.from_servers([f"{host}:{port}" for host, port in addresses], **options)
    host, port = addresses[0]
    return AioMemcacheBackend(aiomcache.Client(host, port), timeout=5, **options)


async def _close(backend: SessionBackend) -> None:
    client = getattr(backend, "client", None)
    if isinstance(backend, AioMemcacheBackend):
        await backend.client.close()
    elif isinstance(backend, MemcacheBackend) and not backend._owns_client and client is not None:
        client.close()
    await backend.aclose()


@pytest.fixture(params=KINDS)
async def backend(
    request: pytest.FixtureRequest, memcached_addresses: list[Address], anyio_backend: str
) -> AsyncIterator[SessionBackend]:
    """Each way to reach memcached: pymemcache Client, PooledClient, HashClient, from_servers, aiomcache."""
    built = _build(request.param, memcached_addresses)
    try:
        yield built
    finally:
        await _close(built)


# -- 0.4.3's MemcacheJSONSerde ------------------------------------------------------------------


def test_memcache_json_serde_behaves_as_in_0_4_3() -> None:
    assert MemcacheJSONSerde is PackageMemcacheJSONSerde
    serde = MemcacheJSONSerde()
    assert serde.serialize("k", "text") == ("text", 1)
    assert serde.serialize("k", {"a": [1, 2]}) == (json.dumps({"a": [1, 2]}), 2)
    assert serde.serialize("k", 5) == ("5", 2)
    assert serde.deserialize("k", b"raw", 1) == b"raw"
    assert serde.deserialize("k", '{"a": [1, 2]}', 2) == {"a": [1, 2]}
    with pytest.raises(Exception, match="Unknown flags for value: 3"):
        serde.deserialize("k", b"x", 3)


# -- the store, on every client kind ------------------------------------------------------------


@pytest.mark.anyio
async def test_round_trip_overwrite_and_remove(backend: SessionBackend) -> None:
    session_id = new_session_id()
    assert await backend.read(session_id) is None
    await backend.write(session_id, b'{"user": "ada"}', 60)
    assert await backend.read(session_id) == b'{"user": "ada"}'
    await backend.write(session_id, b'{"user": "grace"}', 60)
    assert await backend.read(session_id) == b'{"user": "grace"}'
    await backend.remove(session_id)
    assert await backend.read(session_id) is None
    await backend.remove(session_id)  # a missing record is not an error
    assert await backend.delete_expired() == 0


@pytest.mark.anyio
async def test_binary_and_large_values_round_trip(backend: SessionBackend) -> None:
    session_id = new_session_id()
    data = bytes(range(256)) * 2000  # 512 KB, every byte value, \r\n included
    await backend.write(session_id, data, 60)
    assert await backend.read(session_id) == data


@pytest.mark.anyio
async def test_dict_api_of_0_4_3(backend: SessionBackend) -> None:
    session_id = new_session_id()
    assert await backend.set(session_id, {"a": 1}, 60) is None
    assert await backend.get(session_id) == {"a": 1}
    await backend.delete(session_id)
    assert await backend.get(session_id) is None


@pytest.mark.anyio
async def test_touch_resets_expiry_of_existing_records_only(backend: SessionBackend) -> None:
    session_id = new_session_id()
    assert await backend.touch(session_id, 60) is False
    await backend.write(session_id, b"{}", 60)
    assert await backend.touch(session_id, 60) is True
    assert await backend.read(session_id) == b"{}"


@pytest.mark.anyio
async def test_invalid_ids_never_reach_memcached(backend: SessionBackend) -> None:
    too_long = "a" * (250 - len(DEFAULT_KEY_PREFIX) + 1)
    for bad in ["with space", "new\nline", "tab\t", "nul\x00", "caf\u00e9", "", too_long]:
        assert await backend.read(bad) is None
        assert await backend.touch(bad, 60) is False
        with pytest.raises(ConfigurationError, match="memcached key"):
            await backend.write(bad, b"{}", 60)
        with pytest.raises(ConfigurationError, match="memcached key"):
            await backend.remove(bad)
    longest = "a" * (250 - len(DEFAULT_KEY_PREFIX))
    await backend.write(longest, b"{}", 60)
    assert await backend.read(longest) == b"{}"
    await backend.remove(longest)


# -- expiry -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_records_expire_after_ttl_and_touch_shortens_it(memcached_addresses: list[Address]) -> None:
    sync_backend = _build("client", memcached_addresses)
    aio_backend = _build("aio", memcached_addresses)
    try:
        written, touched, aio_written = new_session_id(), new_session_id(), new_session_id()
        await sync_backend.write(written, b"{}", 1)
        await sync_backend.write(touched, b"{}", 3600)
        assert await sync_backend.touch(touched, 1) is True
        await aio_backend.write(aio_written, b"{}", 1)
        assert await sync_backend.read(written) == b"{}"
        assert await aio_backend.read(aio_written) == b"{}"
        await _wait_until_missing(sync_backend, written)
        await _wait_until_missing(sync_backend, touched)
        await _wait_until_missing(aio_backend, aio_written)
    finally:
        await _close(sync_backend)
        await _close(aio_backend)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["client", "aio"])
async def test_ttl_over_30_days_becomes_a_unix_time(kind: str, memcached_addresses: list[Address]) -> None:
    # Sent as is, 40 days would be read as a Unix time in 1970: the record would be dead at once.
    backend = _build(kind, memcached_addresses)
    try:
        long_id, short_id = new_session_id(), new_session_id()
        now = time.time()
        await backend.write(long_id, b"{}", 40 * DAY)
        await backend.write(short_id, b"{}", DAY)
        assert await backend.read(long_id) == b"{}"
        long_exp = _expiry_of(memcached_addresses[0], DEFAULT_KEY_PREFIX + long_id)
        short_exp = _expiry_of(memcached_addresses[0], DEFAULT_KEY_PREFIX + short_id)
        assert long_exp is not None
        assert short_exp is not None
        assert abs(long_exp - (now + 40 * DAY)) < 120
        assert abs(short_exp - (now + DAY)) < 120
        assert 40 * DAY > MEMCACHED_MAX_RELATIVE > DAY

        assert await backend.touch(short_id, 60 * DAY) is True
        touched_exp = _expiry_of(memcached_addresses[0], DEFAULT_KEY_PREFIX + short_id)
        assert touched_exp is not None
        assert abs(touched_exp - (now + 60 * DAY)) < 120
        assert await backend.read(short_id) == b"{}"
    finally:
        await _close(backend)


# -- keys ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_records_live_under_key_prefix(memcached_addresses: list[Address]) -> None:
    raw = _client(memcached_addresses[0])
    backend = MemcacheBackend(_client(memcached_addresses[0]), key_prefix="app1:")
    aio = AioMemcacheBackend(aiomcache.Client(*memcached_addresses[0]), key_prefix="app2:")
    try:
        session_id = new_session_id()
        await backend.write(session_id, b"one", 60)
        await aio.write(session_id, b"two", 60)
        assert raw.get("app1:" + session_id) == b"one"
        assert raw.get("app2:" + session_id) == b"two"
        assert raw.get(session_id) is None
        assert await backend.read(session_id) == b"one"
    finally:
        raw.close()
        backend.client.close()
        await aio.client.close()


def test_key_prefix_is_validated(memcached_addresses: list[Address]) -> None:
    client = _client(memcached_addresses[0])
    for bad in ["has space", "tab\t", "caf\u00e9", "x" * 123]:
        with pytest.raises(ConfigurationError, match="key_prefix"):
            MemcacheBackend(client, key_prefix=bad)
        with pytest.raises(ConfigurationError, match="key_prefix"):
            AioMemcacheBackend(aiomcache.Client(*memcached_addresses[0]), key_prefix=bad)
    assert MemcacheBackend(client, key_prefix="x" * 122).key_prefix == "x" * 122
    assert MemcacheBackend(client, key_prefix="").key_prefix == ""
    # The client's own key_prefix takes room too.
    prefixed = _client(memcached_addresses[0], key_prefix=b"p" * 100)
    with pytest.raises(ConfigurationError, match="too long"):
        MemcacheBackend(prefixed, key_prefix="x" * 30)
    assert MemcacheBackend(prefixed, key_prefix="x" * 22).key_prefix == "x" * 22


# -- HashClient ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_hash_client_spreads_sessions_over_both_servers(memcached_addresses: list[Address]) -> None:
    backend = MemcacheBackend(HashClient(memcached_addresses, connect_timeout=5, timeout=5))
    direct = [_client(address) for address in memcached_addresses]
    try:
        ids = [new_session_id() for _ in range(40)]
        for session_id in ids:
            await backend.write(session_id, session_id.encode(), 60)
        per_server = [0, 0]
        for session_id in ids:
            holders = [
                i for i, raw in enumerate(direct) if raw.get(DEFAULT_KEY_PREFIX + session_id) is not None
            ]
            assert len(holders) == 1
            per_server[holders[0]] += 1
            assert await backend.read(session_id) == session_id.encode()
        assert per_server[0] > 0
        assert per_server[1] > 0
    finally:
        backend.client.close()
        for raw in direct:
            raw.close()


# -- the user's client is left as configured ----------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("serde_name", ["none", "memcache_json", "pickle", "compressed"])
async def test_users_serde_is_kept_and_bytes_reach_memcached_unchanged(
    serde_name: str, memcached_addresses: list[Address]
) -> None:
    serde: Any = {
        "none": None,
        "memcache_json": MemcacheJSONSerde(),
        "pickle": pickle_serde,
        "compressed": compressed_serde,
    }[serde_name]
    client = _client(memcached_addresses[0], serde=serde)
    configured = client.serde
    raw = _raw_with_flags(memcached_addresses[0])
    backend = MemcacheBackend(client)
    try:
        session_id = new_session_id()
        data = JSON.dumps({"user": "ada", "padding": "x" * 1000})
        await backend.write(session_id, data, 60)
        assert await backend.read(session_id) == data
        assert await backend.touch(session_id, 60) is True
        assert client.serde is configured
        if serde is not None:
            assert client.serde is serde

        stored, flags = raw.get(DEFAULT_KEY_PREFIX + session_id)
        if serde_name == "memcache_json":
            assert (stored, flags) == (data, 1)  # 0.4.3's "str as is" flag; read back as bytes
        elif serde_name == "compressed":
            assert flags == FLAG_COMPRESSED  # never the pickle flag
            assert zlib.decompress(stored) == data
        else:
            assert (stored, flags) == (data, 0)
        await backend.remove(session_id)
        assert await backend.read(session_id) is None
    finally:
        client.close()
        raw.close()


@pytest.mark.anyio
async def test_memcache_json_serde_on_a_hash_client(memcached_addresses: list[Address]) -> None:
    serde = MemcacheJSONSerde()
    client = HashClient(memcached_addresses, serde=serde, connect_timeout=5, timeout=5)
    backend = MemcacheBackend(client)
    try:
        for _ in range(10):
            session_id = new_session_id()
            await backend.write(session_id, b'{"n": 1}', 60)
            assert await backend.read(session_id) == b'{"n": 1}'
        assert all(node.serde is serde for node in client.clients.values())
    finally:
        client.close()


@pytest.mark.anyio
async def test_memcache_json_serde_refuses_non_ascii_data_loudly(memcached_addresses: list[Address]) -> None:
    client = _client(memcached_addresses[0], serde=MemcacheJSONSerde())
    try:
        with pytest.raises(BackendError, match="ASCII"):
            await MemcacheBackend(client).write(new_session_id(), "café".encode(), 60)
    finally:
        client.close()


@pytest.mark.anyio
async def test_reads_sessions_written_by_0_4_3(memcached_addresses: list[Address]) -> None:
    # 0.4.3 stored the session dict through MemcacheJSONSerde (flag 2) under the bare id.
    client = _client(memcached_addresses[0], serde=MemcacheJSONSerde())
    plain = _client(memcached_addresses[0])
    try:
        session_id = new_session_id()
        assert client.set(session_id, {"user": "ada"}, expire=60, noreply=False) is True
        assert await MemcacheBackend(client, key_prefix="").get(session_id) == {"user": "ada"}
        assert await MemcacheBackend(plain, key_prefix="").get(session_id) == {"user": "ada"}
    finally:
        client.close()
        plain.close()


def test_a_serde_that_changes_every_value_is_refused(memcached_addresses: list[Address]) -> None:
    class Wrapping:
        def serialize(self, key: Any, value: Any) -> tuple[bytes, int]:
            data = value if isinstance(value, bytes) else str(value).encode()
            return b"wrapped:" + data, 0

        def deserialize(self, key: Any, value: bytes, flags: int) -> bytes:
            return value

    with pytest.raises(ConfigurationError, match="serde"):
        MemcacheBackend(_client(memcached_addresses[0], serde=Wrapping()))


class RecordingClient(Client):  # type: ignore[misc]  # pymemcache is untyped
    """A real pymemcache client that records the ``noreply`` of each write command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.noreply_seen: list[tuple[str, Any]] = []

    def set(self, *args: Any, **kwargs: Any) -> Any:
        self.noreply_seen.append(("set", kwargs.get("noreply")))
        return super().set(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        self.noreply_seen.append(("delete", kwargs.get("noreply")))
        return super().delete(*args, **kwargs)

    def touch(self, *args: Any, **kwargs: Any) -> Any:
        self.noreply_seen.append(("touch", kwargs.get("noreply")))
        return super().touch(*args, **kwargs)


@pytest.mark.anyio
async def test_writes_are_acknowledged_and_client_options_untouched(
    memcached_addresses: list[Address],
) -> None:
    # A stock client: default_noreply=True and no_delay=False, as 0.4.3 users have them.
    client = RecordingClient(memcached_addresses[0], connect_timeout=5, timeout=5)
    backend = MemcacheBackend(client)
    try:
        session_id = new_session_id()
        await backend.write(session_id, b"{}", 60)
        await backend.touch(session_id, 60)
        await backend.remove(session_id)
        assert client.noreply_seen == [("set", False), ("touch", False), ("delete", False)]
        assert client.default_noreply is True
        assert client.no_delay is False
        assert client.sock is not None
        assert client.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    finally:
        client.close()


@pytest.mark.anyio
async def test_from_servers_builds_no_delay_acknowledging_clients(memcached_addresses: list[Address]) -> None:
    single = MemcacheBackend.from_servers([memcached_addresses[0]])
    several = MemcacheBackend.from_servers(memcached_addresses, key_prefix="many:")
    try:
        assert isinstance(single.client, PooledClient)
        assert single.client.no_delay is True
        assert single.client.default_noreply is False
        session_id = new_session_id()
        await single.write(session_id, b"{}", 60)
        assert await single.read(session_id) == b"{}"
        (pooled,) = single.client.client_pool.free
        assert pooled.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0

        assert isinstance(several.client, HashClient)
        assert several.key_prefix == "many:"
        assert len(several.client.clients) == 2
        assert all(node.no_delay and not node.default_noreply for node in several.client.clients.values())
        await several.write(session_id, b"[]", 60)
        assert await several.read(session_id) == b"[]"
    finally:
        await single.aclose()
        await several.aclose()
    assert single.client.client_pool.free == ()
    with pytest.raises(ConfigurationError, match="non-empty list"):
        MemcacheBackend.from_servers([])
    with pytest.raises(ConfigurationError, match="non-empty list"):
        MemcacheBackend.from_servers("127.0.0.1:11211")


@pytest.mark.anyio
async def test_aclose_leaves_a_users_client_open(memcached_addresses: list[Address]) -> None:
    client = PooledClient(memcached_addresses[0], connect_timeout=5, timeout=5)
    backend = MemcacheBackend(client)
    try:
        await backend.write(new_session_id(), b"{}", 60)
        await backend.aclose()
        assert len(client.client_pool.free) == 1
    finally:
        client.close()


@pytest.mark.anyio
async def test_one_plain_client_serves_concurrent_requests(memcached_addresses: list[Address]) -> None:
    # pymemcache's Client is not thread-safe; without the backend's lock, replies get mixed up.
    client = _client(memcached_addresses[0])
    backend = MemcacheBackend(client)
    ids = [new_session_id() for _ in range(60)]
    results: dict[str, bytes | None] = {}

    async def round_trip(session_id: str) -> None:
        await backend.write(session_id, session_id.encode() * 50, 60)
        results[session_id] = await backend.read(session_id)

    try:
        async with anyio.create_task_group() as group:
            for session_id in ids:
                group.start_soon(round_trip, session_id)
        assert results == {session_id: session_id.encode() * 50 for session_id in ids}
    finally:
        client.close()


# -- failures are BackendErrors -----------------------------------------------------------------


@pytest.mark.anyio
async def test_unreachable_server_raises_backend_error() -> None:
    address = ("127.0.0.1", closed_port())
    client = _client(address)  # default_noreply=True: 0.4.3 never noticed this
    backends: list[SessionBackend] = [
        MemcacheBackend(client),
        AioMemcacheBackend(aiomcache.Client(*address), timeout=5),
    ]
    for backend in backends:
        session_id = new_session_id()
        with pytest.raises(BackendError) as caught:
            await backend.write(session_id, b"{}", 60)
        assert "ConnectionRefusedError" in str(caught.value)
        assert caught.value.__cause__ is None  # the original may hold the key: never chained
        with pytest.raises(BackendError):
            await backend.read(session_id)
        with pytest.raises(BackendError):
            await backend.remove(session_id)
        with pytest.raises(BackendError):
            await backend.touch(session_id, 60)


@pytest.mark.anyio
async def test_write_to_a_server_that_went_away_raises() -> None:
    with start_memcached() as address:
        fire_and_forget = _client(address)
        backend = MemcacheBackend(_client(address))
        session_id = new_session_id()
        fire_and_forget.set("warm", b"up")
        await backend.write(session_id, b"{}", 60)
    try:
        # The server is gone; both clients still hold their connections.
        assert fire_and_forget.set("lost", b"write") is True  # noreply: "success", nothing stored
        with pytest.raises(BackendError, match="memcached failed to set a session"):
            await backend.write(session_id, b"{}", 60)
    finally:
        fire_and_forget.close()
        backend.client.close()


@pytest.mark.anyio
async def test_value_refused_by_memcached_raises(memcached_addresses: list[Address]) -> None:
    client = _client(memcached_addresses[0])
    backend = MemcacheBackend(client)
    aio = AioMemcacheBackend(aiomcache.Client(*memcached_addresses[0]), timeout=5)
    too_big = b"x" * (2 * 1024 * 1024)  # over memcached's 1 MB item limit
    try:
        session_id = new_session_id()
        # What 0.4.3 did: the refusal goes unnoticed.
        assert client.set(DEFAULT_KEY_PREFIX + session_id, too_big) is True
        with pytest.raises(BackendError, match="too large"):
            await backend.write(session_id, too_big, 60)
        with pytest.raises(BackendError, match="failed to set a session"):
            await aio.write(session_id, too_big, 60)
        assert await backend.read(session_id) is None
    finally:
        client.close()
        await aio.client.close()


@pytest.mark.anyio
async def test_hash_client_not_storing_during_its_retry_window_raises() -> None:
    client = HashClient([("127.0.0.1", closed_port())], retry_attempts=2, retry_timeout=60)
    backend = MemcacheBackend(client)
    session_id = new_session_id()
    with pytest.raises(BackendError, match="failed to set a session"):
        await backend.write(session_id, b"{}", 60)
    # Now HashClient skips the failing server and answers set with False, raising nothing.
    with pytest.raises(BackendError, match="NOT_STORED") as caught:
        await backend.write(session_id, b"{}", 60)
    assert caught.value.__cause__ is None
    # ... and reads (merge mode's gets too) as misses, which the middleware treats as no session.
    assert await backend.read(session_id) is None
    assert await backend.read_for_update(session_id) is None
    assert await backend.create(session_id, b"{}", 60) is False


@contextlib.asynccontextmanager
async def _holding_proxy(target: Address) -> AsyncIterator[tuple[Address, asyncio.Event]]:
    """A TCP relay to ``target`` that holds memcached's answers back while the event is clear."""
    flowing = asyncio.Event()
    flowing.set()
    tasks: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gated: bool) -> None:
        while data := await reader.read(65536):
            if gated:
                await flowing.wait()
            writer.write(data)
            await writer.drain()

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*target)
        writers.extend([client_writer, server_writer])
        for task in (
            asyncio.create_task(pump(client_reader, server_writer, gated=False)),
            asyncio.create_task(pump(server_reader, client_writer, gated=True)),
        ):
            tasks.add(task)

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[:2], flowing
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["timeout", "cancelled"])
async def test_aio_timeout_raises_and_never_leaves_a_stale_answer(
    how: str, memcached_addresses: list[Address]
) -> None:
    async with _holding_proxy(memcached_addresses[0]) as (proxy, flowing):
        client = aiomcache.Client(*proxy, pool_size=1)
        backend = AioMemcacheBackend(client, timeout=0.3 if how == "timeout" else None)
        try:
            kept, slow = new_session_id(), new_session_id()
            await backend.write(kept, b"kept", 60)
            flowing.clear()
            if how == "timeout":
                with pytest.raises(BackendError, match=r"within 0\.3 s"):
                    await backend.read(slow)
            else:
                with anyio.move_on_after(0.3) as scope:
                    await backend.read(slow)
                assert scope.cancelled_caught
            flowing.set()
            # With the stale "END" of the abandoned get still on the connection, this read
            # would come back empty.
            assert await backend.read(kept) == b"kept"
        finally:
            await client.close()


# -- detection, registry, missing libraries -----------------------------------------------------


class MyClient(Client):  # type: ignore[misc]  # pymemcache is untyped
    """A user's subclass, defined outside pymemcache."""


def test_accepts_and_auto_detection(memcached_addresses: list[Address]) -> None:
    address = memcached_addresses[0]
    sync_clients = [
        Client(address),
        PooledClient(address),
        HashClient(memcached_addresses),
        MyClient(address),
    ]
    aio_client = aiomcache.Client(*address)
    for client in sync_clients:
        assert MemcacheBackend.accepts(client)
        assert not AioMemcacheBackend.accepts(client)
        detected = backend_for_client(client)
        assert type(detected) is MemcacheBackend
        assert detected.client is client
    assert AioMemcacheBackend.accepts(aio_client)
    assert not MemcacheBackend.accepts(aio_client)
    assert type(backend_for_client(aio_client)) is AioMemcacheBackend
    for other in [object(), "127.0.0.1:11211", address, None]:
        assert not MemcacheBackend.accepts(other)
        assert not AioMemcacheBackend.accepts(other)

    assert BackendType.memcache.backend_class() is MemcacheBackend
    assert BackendType.aioMemcache.backend_class() is AioMemcacheBackend
    assert MemcacheBackend.extra == "memcache"
    assert AioMemcacheBackend.extra == "aiomemcache"
    assert type(create_backend(BackendType.memcache, sync_clients[0])) is MemcacheBackend
    assert type(create_backend("aioMemcache", aio_client)) is AioMemcacheBackend
    with pytest.raises(ConfigurationError, match="aiomcache, use AioMemcacheBackend"):
        create_backend(BackendType.memcache, aio_client)
    with pytest.raises(ConfigurationError, match="pymemcache use MemcacheBackend"):
        create_backend(BackendType.aioMemcache, sync_clients[0])
    with pytest.raises(ConfigurationError, match="timeout"):
        AioMemcacheBackend(aio_client, timeout=0)


def test_importing_and_detecting_does_not_import_the_clients() -> None:
    code = (
        "import sys\n"
        "from starlette_session.backends.memcache import AioMemcacheBackend, MemcacheBackend\n"
        "assert not MemcacheBackend.accepts(object())\n"
        "assert not AioMemcacheBackend.accepts('127.0.0.1')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('pymemcache', 'aiomcache'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def hide_modules(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    def hide(package: str) -> None:
        for name in [name for name in sys.modules if name.split(".")[0] == package] + [package]:
            monkeypatch.setitem(sys.modules, name, None)

    return hide


def test_missing_libraries_name_their_extra(hide_modules: Callable[[str], None]) -> None:
    hide_modules("pymemcache")
    hide_modules("aiomcache")
    with pytest.raises(MissingDependencyError, match=r"starlette-session\[memcache\]") as caught:
        MemcacheBackend(object())
    assert (caught.value.package, caught.value.extra) == ("pymemcache", "memcache")
    with pytest.raises(MissingDependencyError, match=r"starlette-session\[memcache\]"):
        MemcacheBackend.from_servers(["127.0.0.1:11211"])
    with pytest.raises(MissingDependencyError, match=r"starlette-session\[aiomemcache\]") as caught:
        AioMemcacheBackend(object())
    assert (caught.value.package, caught.value.extra) == ("aiomcache", "aiomemcache")


# -- the example apps, end to end ---------------------------------------------------------------


@pytest.mark.parametrize("module_name", ["examples.memcache_sync", "examples.memcache_async"])
def test_example_apps_count_and_log_out(
    module_name: str, memcached_addresses: list[Address], monkeypatch: pytest.MonkeyPatch
) -> None:
    servers = ",".join(f"{host}:{port}" for host, port in memcached_addresses)
    monkeypatch.setenv("MEMCACHED_SERVERS", servers)
    monkeypatch.delitem(sys.modules, module_name, raising=False)
    module = importlib.import_module(module_name)
    direct = [_client(address) for address in memcached_addresses]
    try:
        with TestClient(module.app) as http:
            assert http.get("/").json() == {"count": 1}
            assert http.get("/").json() == {"count": 2}
            session_id = JSON.loads(_cookie_payload(http.cookies["session"]))["_cssid"]
            key = DEFAULT_KEY_PREFIX + private_id(session_id)
            assert any(raw.get(key) == b'{"count": 2}' for raw in direct)
            assert http.get("/logout").json() == {"count": 0}
            assert all(raw.get(key) is None for raw in direct)
            assert http.get("/").json() == {"count": 1}
    finally:
        for raw in direct:
            raw.close()


def _cookie_payload(cookie: str) -> bytes:
    # Starlette's format: base64(JSON) "." timestamp "." signature.
    data = cookie.strip('"').split(".")[0]
    return base64.b64decode(data + "=" * (-len(data) % 4))


def test_only_unpooled_clients_are_serialised(memcached_addresses: list[tuple[str, int]]) -> None:
    plain = HashClient(memcached_addresses)
    pooled = HashClient(memcached_addresses, use_pooling=True)
    try:
        assert MemcacheBackend(plain)._lock is not None
        assert MemcacheBackend(pooled)._lock is None
        assert MemcacheBackend(PooledClient(memcached_addresses[0]))._lock is None
    finally:
        plain.close()
        pooled.close()
