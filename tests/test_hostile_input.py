"""Security hardening: hostile cookies and records give an empty session (never a 500 or a CPU
stall), no session id reaches an error text, a cause or a log record, encrypted cookies honour
the current ``max_age``, and 0.4.3's pickled records are read only through the safe unpickler.
"""

from __future__ import annotations

import http.cookies
import json
import logging
import pickle
import traceback
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomcache
import httpx
import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymemcache.client.base import Client as MemcacheClient
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from starlette_session import BackendError, SessionBackend
from starlette_session.backends import BackendType, create_backend
from starlette_session.backends.base import DictBackendAdapter
from starlette_session.backends.file import FileBackend
from starlette_session.backends.memory import MemoryBackend
from starlette_session.backends.sqlalchemy import SQLAlchemyBackend
from starlette_session.encryption import EncryptedCodec
from starlette_session.serializers import JSON
from tests.backend_kit import (
    FACTORIES,
    SECRET,
    client_for,
    make_app,
    open_backend,
    session_cookie,
    session_id,
    set_session_cookie,
)
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.anyio

NESTED = b"[" * 100_000 + b"]" * 100_000


def sign_json(data: object) -> str:
    """Sign ``data`` the way the contract app's middleware does (its secret)."""
    return sign_json_bytes(json.dumps(data).encode())


@pytest.fixture(params=sorted(FACTORIES))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionBackend]:
    async with open_backend(request, tmp_path) as store:
        yield store


async def get_with_cookie_header(app: Any, header: str, path: str = "/read") -> httpx.Response:
    async with client_for(app) as client:
        return await client.get(path, headers={"cookie": header})


# -- cookies -------------------------------------------------------------------------------------


@pytest.fixture
def no_unquoting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``http.cookies`` unquoting fail: the middleware must never need it."""

    def refuse(value: str) -> str:
        raise AssertionError("http.cookies._unquote was called")

    monkeypatch.setattr(http.cookies, "_unquote", refuse)


@pytest.mark.usefixtures("no_unquoting")
async def test_a_quoted_cookie_full_of_backslashes_is_not_parsed() -> None:
    app = make_app(MemoryBackend())
    async with client_for(app) as client:
        await client.post("/write", json={"n": 1})
        ours = session_cookie(client)
    hostile = 'x="' + "\\" * 8_000 + '"'
    for header in (hostile, f"{hostile}; session={ours}", f"session={ours}; {hostile}"):
        response = await get_with_cookie_header(app, header)
        assert response.status_code == 200
    assert (await get_with_cookie_header(app, f"{hostile}; session={ours}")).json() == {"n": 1}


@pytest.mark.parametrize("value", ['"quoted"', "a\\b", '"' + "\\" * 100 + '"'])
async def test_a_session_cookie_with_quotes_or_backslashes_is_not_ours(value: str) -> None:
    response = await get_with_cookie_header(make_app(MemoryBackend()), f"session={value}")
    assert response.status_code == 200
    assert response.json() == {}


@pytest.mark.parametrize("encrypted", [False, True], ids=["signed", "encrypted"])
async def test_a_chunk_count_of_thousands_of_digits_is_an_empty_session(encrypted: bool) -> None:
    options: dict[str, Any] = {"encryption_key": bytes(range(32))} if encrypted else {}
    from tests.helpers import make_app as make_cookie_app  # noqa: PLC0415 - the demo routes

    app = make_cookie_app(**options)
    for count in ("9" * 5_000, "0" * 5_000, "1" + "0" * 4_400, "-1", "+1", "1_0", "\u0661"):
        async with client_for(app) as client:
            header = f"session=chunks.{count}; session.1=x".encode()
            response = await client.get("/read", headers=[(b"cookie", header)])
        assert response.status_code == 200
        assert response.json() == {}


# -- deeply nested JSON --------------------------------------------------------------------------------


async def test_a_deeply_nested_record_is_an_empty_session_on_every_backend(backend: SessionBackend) -> None:
    if isinstance(backend, DictBackendAdapter):
        return  # a 0.4.3 backend stores dicts, never JSON text
    app = make_app(backend)
    async with client_for(app) as client:
        await client.post("/write", json={"n": 1})
        sid = session_id(client)
        await backend.write(backend.key_for(sid), b'{"a": ' + NESTED + b"}", 60)
        for path in ("/read", "/clear", "/read"):
            response = await client.get(path)
            assert response.status_code == 200
            assert response.json() == {}
    assert await backend.get(sid) is None  # also outside a request: a ValueError, read as missing


async def test_a_validly_signed_deeply_nested_cookie_is_an_empty_session() -> None:
    from tests.helpers import make_app as make_cookie_app  # noqa: PLC0415

    app = make_cookie_app(secret_key=SECRET)
    signed = sign_json_bytes(b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")
    async with client_for(app) as client:
        response = await client.get("/read", headers={"cookie": f"session={signed}"})
    assert response.status_code == 200
    assert response.json() == {}


def sign_json_bytes(payload: bytes) -> str:
    import base64  # noqa: PLC0415

    import itsdangerous  # noqa: PLC0415

    return itsdangerous.TimestampSigner(SECRET).sign(base64.b64encode(payload)).decode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(depth=st.integers(min_value=0, max_value=30_000), kind=st.sampled_from(["[", '{"k":']))
def test_any_nesting_depth_is_a_dict_or_a_value_error(depth: int, kind: str) -> None:
    close = "]" if kind == "[" else "}"
    data = ('{"a": ' + kind * depth + "1" + close * depth + "}").encode()
    try:
        value = JSON.loads(data)
    except ValueError:
        return
    assert isinstance(value, dict)
    json.dumps(value)  # what loads accepted, dumps can write back


# -- no id in any error, cause or log --------------------------------------------------------------------


def _texts(error: BaseException) -> str:
    parts = ["".join(traceback.format_exception(error))]
    seen: BaseException | None = error
    while seen is not None:
        parts.append(repr(seen))
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return "\n".join(parts)


def _assert_no_id(sid: str, key: str, text: str) -> None:
    assert sid not in text
    assert key not in text


async def _failures(backend: SessionBackend, sid: str) -> list[BaseException]:
    key = backend.key_for(sid)
    errors: list[BaseException] = []
    for call in (
        lambda: backend.read(key),
        lambda: backend.create(key, b"{}", 60),
        lambda: backend.replace(key, b"{}", 60),
        lambda: backend.write(key, b"{}", 60),
        lambda: backend.remove(key),
        lambda: backend.touch(key, 60),
        lambda: backend.get(sid),
        lambda: backend.delete(sid),
    ):
        with pytest.raises(BackendError) as caught:
            await call()
        errors.append(caught.value)
    return errors


def _redis_down(proxy: FaultProxy) -> tuple[SessionBackend, Any]:
    client = redis.Redis(host="127.0.0.1", port=proxy.port, retry=Retry(NoBackoff(), 0))
    backend = create_backend(BackendType.redis, client)
    assert backend is not None
    return backend, client


@pytest.mark.parametrize(
    "store",
    [
        "redis",
        "redis-asyncio",
        "memcache",
        "aiomemcache",
        "postgresql",
        "postgresql-async",
        "file",
        "sqlite",
        "custom",
    ],
)
async def test_no_failure_path_names_the_session(
    store: str, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sid = "secret-" + uuid.uuid4().hex + "-id"
    closers: list[Any] = []
    if store.startswith("redis"):
        upstream = request.getfixturevalue("redis_url").removeprefix("redis://").split("/")[0].split(":")
        proxy = FaultProxy(upstream[0], int(upstream[1])).__enter__()
        closers.append(lambda: proxy.__exit__(None, None, None))
        proxy.set_mode("refuse")
        if store == "redis":
            backend, client = _redis_down(proxy)
            closers.append(client.close)
        else:
            aclient = redis.asyncio.Redis(host="127.0.0.1", port=proxy.port, retry=AsyncRetry(NoBackoff(), 0))
            backend = create_backend(BackendType.aioRedis, aclient)  # type: ignore[assignment]
            closers.append(aclient.aclose)
    elif store == "memcache":
        backend = create_backend(BackendType.memcache, MemcacheClient(("127.0.0.1", 9), connect_timeout=1))  # type: ignore[assignment]
    elif store == "aiomemcache":
        backend = create_backend(BackendType.aioMemcache, aiomcache.Client("127.0.0.1", 9))  # type: ignore[assignment]
    elif store.startswith("postgresql"):
        dsn: str = request.getfixturevalue("postgres_dsn")
        driver = "asyncpg" if store.endswith("async") else "psycopg"
        table = f"gone_{uuid.uuid4().hex[:8]}"
        backend = SQLAlchemyBackend.from_url(
            dsn.replace("postgresql://", f"postgresql+{driver}://"), table_name=table
        )
        await backend.create_table()
        await backend.set(sid, {"a": 1}, 60)
        from sqlalchemy import create_engine, text  # noqa: PLC0415

        engine = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {table}"))
        engine.dispose()
        backend.create_table_on_first_use = False
        closers.append(backend.aclose)
    elif store == "sqlite":
        backend = SQLAlchemyBackend.from_url(f"sqlite:///{tmp_path}/s.db", create_table=False)
        closers.append(backend.aclose)
    elif store == "file":
        directory = tmp_path / "sessions"
        backend = FileBackend(directory)
        # Every session path a directory: each operation fails with an OSError naming the path.
        for name in (backend.key_for(sid), sid):
            (directory / f"session-{name}").mkdir()
            (directory / f"session-{name}" / "x").write_bytes(b"")
    else:

        class Broken:
            async def get(self, key: str) -> Any:
                raise KeyError(f"no record for {key}")

            async def set(self, key: str, value: Any, exp: int | None) -> Any:
                raise RuntimeError(f"cannot store {key}")

            async def delete(self, key: str) -> Any:
                raise RuntimeError(f"cannot delete {key}")

        backend = DictBackendAdapter(Broken())  # type: ignore[arg-type]
        backend.hash_ids = True
    assert backend is not None
    try:
        with caplog.at_level(logging.DEBUG):
            errors = [] if store == "file" else await _failures(backend, sid)
            if store == "file":
                for call in (
                    lambda: backend.read(backend.key_for(sid)),
                    lambda: backend.write(backend.key_for(sid), b"{}", 60),
                    lambda: backend.remove(backend.key_for(sid)),
                    lambda: backend.touch(backend.key_for(sid), 60),
                ):
                    with pytest.raises(BackendError) as caught:
                        await call()
                    errors.append(caught.value)
            # And through the middleware: the 503 and its log record.
            app = make_app(backend, breaker_threshold=0)
            async with client_for(app) as client:
                set_session_cookie(client, sign_json({"_cssid": sid}))
                response = await client.get("/read")
            assert response.status_code == 503
        assert errors
        for error in errors:
            _assert_no_id(sid, backend.key_for(sid), _texts(error))
        logged = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
        _assert_no_id(sid, backend.key_for(sid), logged + response.text)
    finally:
        for close in reversed(closers):
            result = close()
            if hasattr(result, "__await__"):
                await result


# -- encrypted cookies and max_age -------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_an_encrypted_cookie_issued_under_a_longer_max_age_is_refused() -> None:
    clock = Clock()
    key = bytes(range(32))
    issued = EncryptedCodec([key], 30 * 24 * 3600, "session", clock=clock).encode(b'{"a": 1}')
    clock.now += 120
    lowered = EncryptedCodec([key], 60, "session", clock=clock)
    assert lowered.decode(issued) is None  # 30 days left, more than 60 s allows
    same = EncryptedCodec([key], 30 * 24 * 3600, "session", clock=clock)
    assert same.decode(issued) == b'{"a": 1}'
    fresh = lowered.encode(b'{"b": 2}')
    clock.now += 59
    assert lowered.decode(fresh) == b'{"b": 2}'


# -- 0.4.3's pickled records through the middleware --------------------------------------------


class Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        import os  # noqa: PLC0415

        return (os.system, ("touch /tmp/starlette-session-pwned-by-test",))


def routes() -> list[Route]:
    async def whoami(request: Request) -> Response:
        return JSONResponse(dict(request.session))

    return [Route("/whoami", whoami)]


@pytest.mark.parametrize("client_kind", ["redis", "aiomemcache", "memcache"])
async def test_legacy_043_reads_pickled_records_once_and_moves_them(
    client_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    sid = str(uuid.uuid4())  # 0.4.3's ids
    record = {"user": "ann", "cart": [1, 2]}
    raw_get: Any
    raw: Any = None
    if client_kind == "redis":
        client: Any = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        client.set(sid, pickle.dumps(record, pickle.HIGHEST_PROTOCOL), ex=600)
        backend = create_backend(BackendType.redis, client)
        raw_get = client.get
    else:
        host, port = request.getfixturevalue("memcached_addresses")[0]
        raw = MemcacheClient((host, port))
        raw.set(sid, pickle.dumps(record, pickle.HIGHEST_PROTOCOL), expire=600)
        raw_get = raw.get
        client = (
            aiomcache.Client(host, port) if client_kind == "aiomemcache" else MemcacheClient((host, port))
        )
        backend = create_backend(
            BackendType.aioMemcache if client_kind == "aiomemcache" else BackendType.memcache, client
        )
    assert backend is not None
    try:
        app = make_app(backend, legacy_043=True)
        cookie = sign_json({"_cssid": sid})
        async with client_for(app) as http_client:
            set_session_cookie(http_client, cookie)
            assert (await http_client.get("/read")).json() == record  # nobody is logged out
            assert raw_get(sid) is not None  # a read never writes
            await http_client.post("/write", json={"n": 1})
            assert session_id(http_client) == sid
            assert (await http_client.get("/read")).json() == {**record, "n": 1}
        assert raw_get(sid) is None  # moved: the pickle is gone
        assert await backend.get(sid) == {**record, "n": 1}
        # Without the option the old record is not read at all.
        assert (await get_with_cookie_header(make_app(backend), f"session={cookie}")).status_code == 200
    finally:
        if raw is not None:
            raw.close()
        result = client.close()
        if hasattr(result, "__await__"):
            await result


async def test_legacy_043_never_runs_a_pickled_global(redis_url: str) -> None:
    marker = Path("/tmp/starlette-session-pwned-by-test")
    marker.unlink(missing_ok=True)
    client = redis.Redis.from_url(redis_url)
    sid = str(uuid.uuid4())
    client.set(sid, pickle.dumps({"user": Exploit()}), ex=600)
    backend = create_backend(BackendType.redis, client)
    assert backend is not None
    try:
        app = make_app(backend, legacy_043=True)
        response = await get_with_cookie_header(app, f"session={sign_json({'_cssid': sid})}")
        assert response.status_code == 200
        assert response.json() == {}
        assert not marker.exists()
        assert client.get(sid) is not None  # refused, left for the operator to inspect
    finally:
        client.close()


def test_legacy_043_needs_a_store_that_0_4_3_wrote() -> None:
    from starlette_session import ConfigurationError  # noqa: PLC0415

    with pytest.raises(ConfigurationError, match="legacy_043"):
        make_app(MemoryBackend(), legacy_043=True).build_middleware_stack()


async def test_a_cookie_longer_than_any_we_issue_is_refused_before_it_is_verified(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from starlette_session import signing  # noqa: PLC0415
    from tests.helpers import make_app as make_cookie_app  # noqa: PLC0415

    app = make_cookie_app(secret_key=SECRET, max_cookie_size=4096)
    long_session = sign_json({"blob": "x" * 5_000})  # validly signed, longer than max_cookie_size
    store = MemoryBackend()
    public = "long-cookie-session-0001"
    await store.set(public, {"user": "ann"}, 60)
    long_id = sign_json({"_cssid": public, "pad": "y" * 2_000})  # names a live session, but 2 KB
    verified: list[str] = []
    original = signing.SignedCodec.decode

    def counting(self: Any, value: str) -> bytes | None:
        verified.append(value)
        return original(self, value)

    monkeypatch.setattr(signing.SignedCodec, "decode", counting)
    assert (await get_with_cookie_header(app, f"session={long_session}")).json() == {}
    assert (await get_with_cookie_header(make_app(store), f"session={long_id}")).json() == {}
    assert verified == []  # refused by length alone
