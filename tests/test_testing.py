"""``starlette_session.testing``: sessions put into, and read back from, test clients.

Every scenario runs with three clients: Starlette's ``TestClient`` used without ``with`` (a new
event loop per request), the same used as a context manager (one loop, its portal), and
``httpx.AsyncClient`` over ``httpx.ASGITransport``. The sync helpers run with the
``TestClient``, in a worker thread as in a sync test; the async ones with the ``AsyncClient``.
What the client holds is checked independently of the helpers: the cookie is verified with
itsdangerous and the secret, and the store is looked at under the hashed key.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import uuid
from base64 import b64decode
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import itsdangerous
import pytest
import redis
import redis.asyncio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from starlette_session import ConfigurationError, SessionMiddleware
from starlette_session.backends.base import SessionBackend
from starlette_session.backends.file import FileBackend
from starlette_session.backends.memory import MemoryBackend
from starlette_session.backends.redis import AsyncRedisBackend, RedisBackend
from starlette_session.testing import (
    find_session_middleware,
    read_session,
    read_session_id,
    read_session_sync,
    set_session,
    set_session_sync,
)
from tests.test_doc_snippets import ROOT, SNIPPETS, Snippet

SECRET = "testing-helpers-secret-0123456789"
ENCRYPTION_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"  # 32 bytes, urlsafe base64
CLIENT_KINDS = ["TestClient", "TestClient-with", "AsyncClient"]


async def read(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.session))


async def write(request: Request) -> JSONResponse:
    """Set each query parameter in the session."""
    request.session.update(request.query_params)
    return JSONResponse(dict(request.session))


async def clear(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({})


ROUTES = [Route("/read", read), Route("/write", write), Route("/clear", clear)]


def make_app(*middleware: Middleware, **options: Any) -> Starlette:
    """A Starlette app with ``ROUTES`` and the given middleware (default: one SessionMiddleware)."""
    stack = list(middleware) or [Middleware(SessionMiddleware, secret_key=SECRET, **options)]
    return Starlette(routes=ROUTES, middleware=stack)


class Driver:
    """One test client and the helpers for its kind, all awaitable from the test."""

    def __init__(self, client: httpx.AsyncClient | TestClient, app: ASGIApp) -> None:
        self.client = client
        self.app = app
        self.sync = isinstance(client, TestClient)

    @property
    def jar(self) -> CookieJar:
        return self.client.cookies.jar

    def cookies(self) -> dict[str, str]:
        return {cookie.name: cookie.value or "" for cookie in self.jar}

    async def set(self, data: dict[str, Any], **options: Any) -> str | None:
        if isinstance(self.client, TestClient):
            client = self.client
            return await anyio.to_thread.run_sync(lambda: set_session_sync(client, self.app, data, **options))
        return await set_session(self.client, self.app, data, **options)

    async def read(self, **options: Any) -> dict[str, Any] | None:
        if isinstance(self.client, TestClient):
            client = self.client
            return await anyio.to_thread.run_sync(lambda: read_session_sync(client, self.app, **options))
        return await read_session(self.client, self.app, **options)

    async def get(self, path: str) -> Any:
        """GET ``path`` and return the JSON body of its 200 response."""
        if isinstance(self.client, TestClient):
            client = self.client
            response: Any = await anyio.to_thread.run_sync(lambda: client.get(path))
        else:
            response = await self.client.get(path)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(params=CLIENT_KINDS)
def client_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


OpenClient = Callable[..., AbstractAsyncContextManager[Driver]]


@pytest.fixture
def open_client(client_kind: str) -> OpenClient:
    """``async with open_client(app) as driver``: a ``Driver`` of this test's client kind."""

    @asynccontextmanager
    async def opened(app: ASGIApp, base_url: str = "http://testserver") -> AsyncIterator[Driver]:
        if client_kind == "AsyncClient":
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
                yield Driver(client, app)
            return
        test_client = TestClient(app, base_url=base_url)
        if client_kind == "TestClient-with":
            await anyio.to_thread.run_sync(test_client.__enter__)
            try:
                yield Driver(test_client, app)
            finally:
                await anyio.to_thread.run_sync(lambda: test_client.__exit__(None, None, None))
        else:
            yield Driver(test_client, app)
            test_client.close()

    return opened


def unsign(value: str, max_age: int = 3600) -> dict[str, Any]:
    """Verify a Starlette-format cookie value with itsdangerous and return its JSON."""
    data = itsdangerous.TimestampSigner(SECRET).unsign(value, max_age=max_age)
    result: dict[str, Any] = json.loads(b64decode(data))
    return result


# -- cookie sessions -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_signed_cookie_session_is_seen_by_the_app(open_client: OpenClient) -> None:
    app = make_app()
    async with open_client(app) as driver:
        assert await driver.set({"user_id": 42, "roles": ["admin"]}) is None
        assert unsign(driver.cookies()["session"]) == {"user_id": 42, "roles": ["admin"]}
        assert await driver.get("/read") == {"user_id": 42, "roles": ["admin"]}


@pytest.mark.anyio
async def test_read_session_sees_what_the_app_wrote_to_a_cookie(open_client: OpenClient) -> None:
    app = make_app()
    async with open_client(app) as driver:
        assert await driver.read() is None
        await driver.set({"user_id": 1})
        assert await driver.get("/write?theme=dark") == {"user_id": 1, "theme": "dark"}
        assert await driver.read() == {"user_id": 1, "theme": "dark"}
        await driver.get("/clear")
        assert await driver.read() is None


@pytest.mark.anyio
async def test_empty_data_logs_the_client_out(open_client: OpenClient) -> None:
    app = make_app()
    async with open_client(app) as driver:
        await driver.set({"user_id": 1})
        await driver.set({})
        assert "session" not in driver.cookies()
        assert await driver.get("/read") == {}
        assert await driver.read() is None


@pytest.mark.anyio
async def test_encrypted_cookie_session(open_client: OpenClient) -> None:
    app = make_app(encryption_key=ENCRYPTION_KEY)
    async with open_client(app) as driver:
        await driver.set({"card": "4111-1111"})
        value = driver.cookies()["session"]
        with pytest.raises(itsdangerous.BadSignature):
            unsign(value)  # not Starlette's signed format: an AES-GCM token
        assert "4111" not in value
        assert await driver.get("/read") == {"card": "4111-1111"}
        await driver.get("/write?more=yes")
        assert await driver.read() == {"card": "4111-1111", "more": "yes"}
        other_key = make_app(encryption_key=b"k" * 32)
        assert await read_session(driver.client, other_key) is None


@pytest.mark.anyio
async def test_split_10_kb_cookie_session(open_client: OpenClient) -> None:
    app = make_app(max_cookie_size=32_768)
    blob = "x" * 7_600  # about 10 KB once base64'd and signed
    async with open_client(app) as driver:
        await driver.set({"blob": blob})
        cookies = driver.cookies()
        assert cookies["session"] == "chunks.3"
        chunks = [cookies[f"session.{index}"] for index in (1, 2, 3)]
        assert len("".join(chunks)) > 10_000
        assert unsign("".join(chunks)) == {"blob": blob}
        assert await driver.get("/read") == {"blob": blob}
        await driver.get("/write?tail=1")
        assert await driver.read() == {"blob": blob, "tail": "1"}
        # A small session afterwards: the now stale chunk cookies leave the jar.
        await driver.set({"small": True})
        assert sorted(driver.cookies()) == ["session"]
        assert await driver.get("/read") == {"small": True}


# -- server-side sessions --------------------------------------------------------------------


@pytest.fixture
def redis_prefix() -> str:
    return f"testing-{uuid.uuid4().hex}:"


@pytest.fixture
def raw_redis(redis_url: str, redis_prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    keys = list(client.scan_iter(match=redis_prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["memory", "file", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionBackend]:
    if request.param == "memory":
        yield MemoryBackend()
    elif request.param == "file":
        yield FileBackend(tmp_path / "sessions")
    else:
        # The sync client runs in worker threads: usable from the TestClient's loops and the test's.
        raw = request.getfixturevalue("raw_redis")
        client = redis.Redis(connection_pool=raw.connection_pool)
        yield RedisBackend(client, key_prefix=request.getfixturevalue("redis_prefix"))


async def stored_keys(backend: SessionBackend, request: pytest.FixtureRequest) -> set[str]:
    """The record keys the store holds, as the store itself lists them."""
    if isinstance(backend, MemoryBackend):
        return set(backend._data)
    if isinstance(backend, FileBackend):
        names = [path.name for path in backend.directory.iterdir()]
        return {
            name.removeprefix(backend.file_prefix) for name in names if name.startswith(backend.file_prefix)
        }
    raw: redis.Redis = request.getfixturevalue("raw_redis")
    prefix: str = request.getfixturevalue("redis_prefix")
    return {key.decode().removeprefix(prefix) for key in raw.scan_iter(match=prefix + "*")}


@pytest.mark.anyio
async def test_server_side_session_is_stored_under_the_hashed_key(
    open_client: OpenClient, backend: SessionBackend, request: pytest.FixtureRequest
) -> None:
    app = make_app(backend=backend, max_age=600)
    async with open_client(app) as driver:
        public_id = await driver.set({"user_id": 7})
        assert public_id is not None
        assert unsign(driver.cookies()["session"]) == {"_cssid": public_id}
        key = backend.key_for(public_id)
        assert key != public_id
        assert await stored_keys(backend, request) == {key}
        assert json.loads(await backend.read(key) or b"null") == {"user_id": 7}
        assert await backend.read(public_id) is None
        assert await driver.get("/read") == {"user_id": 7}


@pytest.mark.anyio
async def test_server_side_record_has_the_middleware_ttl(raw_redis: redis.Redis, redis_prefix: str) -> None:
    backend = RedisBackend(redis.Redis(connection_pool=raw_redis.connection_pool), key_prefix=redis_prefix)
    app = make_app(backend=backend, max_age=600)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        public_id = await set_session(client, app, {"user_id": 7})
    assert public_id is not None
    assert 590 <= raw_redis.ttl(redis_prefix + backend.key_for(public_id)) <= 600


@pytest.mark.anyio
async def test_read_session_sees_what_the_app_wrote_server_side(
    open_client: OpenClient, backend: SessionBackend, request: pytest.FixtureRequest
) -> None:
    app = make_app(backend=backend)
    async with open_client(app) as driver:
        assert await driver.read() is None
        assert await driver.get("/write?cart=3") == {"cart": "3"}
        assert await driver.read() == {"cart": "3"}
        public_id = read_session_id(driver.client, app)
        assert public_id is not None
        assert await stored_keys(backend, request) == {backend.key_for(public_id)}
        # The id is changed only by the app's own store.
        await backend.set(public_id, {"cart": "4"})
        assert await driver.read() == {"cart": "4"}
        await backend.delete(public_id)
        assert await driver.read() is None


@pytest.mark.anyio
async def test_server_side_log_out_and_set_again(open_client: OpenClient, backend: SessionBackend) -> None:
    app = make_app(backend=backend)
    async with open_client(app) as driver:
        first = await driver.set({"user_id": 1})
        second = await driver.set({"user_id": 2})
        assert first != second
        assert read_session_id(driver.client, app) == second
        assert await driver.get("/read") == {"user_id": 2}
        assert await driver.set({}) is None
        assert read_session_id(driver.client, app) is None
        assert await driver.get("/read") == {}


# -- finding the middleware ------------------------------------------------------------------


@pytest.mark.anyio
async def test_several_middleware_are_chosen_by_cookie_name(open_client: OpenClient) -> None:
    store = MemoryBackend()
    app = make_app(
        Middleware(SessionMiddleware, secret_key=SECRET, session_cookie="prefs"),
        Middleware(SessionMiddleware, secret_key=SECRET, session_cookie="auth", backend=store),
    )
    async with open_client(app) as driver:
        with pytest.raises(ConfigurationError, match="pass cookie_name"):
            await driver.set({"x": 1})
        with pytest.raises(ConfigurationError, match="'other'"):
            await driver.set({"x": 1}, cookie_name="other")
        public_id = await driver.set({"user_id": 5}, cookie_name="auth")
        assert public_id is not None
        assert await store.get(public_id) == {"user_id": 5}
        assert await driver.set({"lang": "fr"}, cookie_name="prefs") is None
        assert unsign(driver.cookies()["prefs"]) == {"lang": "fr"}
        # The innermost middleware's session is the one request.session shows.
        assert await driver.get("/read") == {"user_id": 5}
        assert await driver.read(cookie_name="prefs") == {"lang": "fr"}
        assert await driver.read(cookie_name="auth") == {"user_id": 5}


def test_the_middleware_stack_is_built_once_and_kept() -> None:
    def built(app: Starlette) -> bool:
        return app.middleware_stack is not None

    app = make_app()
    assert not built(app)
    middleware = find_session_middleware(app)
    assert built(app)
    assert find_session_middleware(app) is middleware
    with pytest.raises(RuntimeError):
        app.add_middleware(SessionMiddleware, secret_key=SECRET)  # as after a first request


@pytest.mark.anyio
async def test_a_bare_middleware_and_wrapped_apps_are_found(open_client: OpenClient) -> None:
    inner = Starlette(routes=ROUTES)
    app = SessionMiddleware(inner, secret_key=SECRET, session_cookie="bare")
    assert find_session_middleware(app) is app
    async with open_client(app) as driver:
        await driver.set({"n": 1})
        assert await driver.get("/read") == {"n": 1}


def test_no_middleware_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match=r"no starlette_session\.SessionMiddleware"):
        find_session_middleware(Starlette(routes=ROUTES))
    mounted = Starlette(routes=[Mount("/sub", make_app())])
    with pytest.raises(ConfigurationError, match=r"no starlette_session\.SessionMiddleware"):
        find_session_middleware(mounted)


def test_cookie_sessions_have_no_id() -> None:
    app = make_app()
    with pytest.raises(ConfigurationError, match="no session id"):
        read_session_id(TestClient(app), app)


# -- the cookie's attributes -----------------------------------------------------------------


@pytest.mark.anyio
async def test_cookie_domain_and_path_as_configured(open_client: OpenClient) -> None:
    inner = Starlette(routes=ROUTES)
    app = Starlette(
        routes=[Mount("/app", inner)],
        middleware=[Middleware(SessionMiddleware, secret_key=SECRET, domain="example.com", path="/app")],
    )
    async with open_client(app, base_url="http://www.example.com") as driver:
        await driver.set({"user_id": 3})
        [cookie] = list(driver.jar)
        assert (cookie.name, cookie.domain, cookie.path) == ("session", ".example.com", "/app")
        assert await driver.get("/app/read") == {"user_id": 3}
        await driver.get("/app/write?more=1")
        assert await driver.read() == {"user_id": 3, "more": "1"}
        [cookie] = list(driver.jar)  # the app's Set-Cookie replaced the helper's cookie
        assert cookie.domain == ".example.com"


@pytest.mark.anyio
async def test_a_cookie_the_client_would_not_send_is_an_error(open_client: OpenClient) -> None:
    async with open_client(make_app(domain="example.com")) as driver:
        with pytest.raises(ConfigurationError, match="would not send"):
            await driver.set({"user_id": 3})
    async with open_client(make_app(https_only=True)) as driver:
        with pytest.raises(ConfigurationError, match="would not send"):
            await driver.set({"user_id": 3})
    app = make_app(https_only=True)
    async with open_client(app, base_url="https://testserver") as driver:
        await driver.set({"user_id": 3})
        assert await driver.get("/read") == {"user_id": 3}


@pytest.mark.anyio
async def test_a_client_without_base_url_is_an_error() -> None:
    app = make_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        with pytest.raises(ConfigurationError, match="base_url"):
            await set_session(client, app, {"user_id": 1})


@pytest.mark.anyio
async def test_tampered_or_foreign_cookies_read_as_none(open_client: OpenClient) -> None:
    app = make_app()
    async with open_client(app) as driver:
        await driver.set({"user_id": 1})
        [cookie] = list(driver.jar)
        cookie.value = (cookie.value or "").replace("eyJ", "eyK", 1)
        assert await driver.read() is None
        assert await driver.get("/read") == {}
        other_secret = Starlette(middleware=[Middleware(SessionMiddleware, secret_key="other")])
        await driver.set({"user_id": 1})
        assert await read_session(driver.client, other_secret) is None


# -- the documentation page's own tests --------------------------------------------------------

PAGE_SNIPPETS = [snippet for snippet in SNIPPETS if snippet.path.name == "testing.md"]


def test_the_page_has_examples() -> None:
    assert len(PAGE_SNIPPETS) >= 2


@pytest.mark.parametrize("snippet", PAGE_SNIPPETS, ids=lambda snippet: snippet.name)
def test_the_pages_test_modules_pass_under_pytest(snippet: Snippet, tmp_path: Path) -> None:
    """Each block is a test module: run it with pytest, as a reader would (fixtures and all)."""
    module = tmp_path / "test_page_block.py"
    module.write_text(snippet.code)
    expected = len(ast_test_functions(snippet.code))
    assert expected >= 2, "a block of docs/testing.md defines too few test functions"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(module),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{expected} passed" in result.stdout, result.stdout


def ast_test_functions(code: str) -> list[str]:
    tree = ast.parse(code)
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    ]


def test_an_open_test_client_shares_its_event_loop_with_an_asyncio_store(
    redis_url: str, redis_prefix: str, raw_redis: redis.Redis
) -> None:
    """``with TestClient(app)``: the store calls run in the client's loop, where the app's run."""
    client = redis.asyncio.Redis.from_url(redis_url)
    backend = AsyncRedisBackend(client, key_prefix=redis_prefix)
    app = make_app(backend=backend)
    with TestClient(app) as test_client:
        for user_id in (1, 2, 3):
            public_id = set_session_sync(test_client, app, {"user_id": user_id})
            assert test_client.get("/write?seen=yes").json() == {"user_id": user_id, "seen": "yes"}
            assert read_session_sync(test_client, app) == {"user_id": user_id, "seen": "yes"}
            assert public_id is not None
            assert raw_redis.exists(redis_prefix + backend.key_for(public_id))
        assert test_client.portal is not None
        test_client.portal.call(client.aclose)
