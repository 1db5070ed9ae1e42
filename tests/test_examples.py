"""Every example in examples/ imports and works: counter, logout, and the demo's shop flow.

Each example is imported afresh with its environment variables pointing at the real test
servers (or at files under ``tmp_path``), its lifespan is run, and it is driven over ASGI with
httpx. A new module in examples/ without an entry in ``SCENARIOS`` fails the suite.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from starlette_session import SessionMiddleware
from starlette_session.strategies import ServerSideStrategy

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(path.stem for path in EXAMPLES_DIR.glob("*.py") if path.stem != "__init__")
SECRET = "examples-test-secret"
BASE_URL = "http://testserver"

Env = Callable[[pytest.FixtureRequest, Path], dict[str, str]]
Driver = Callable[[Starlette, "Store"], Awaitable[None]]


# -- environments ---------------------------------------------------------------------------


def _no_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    return {}


def _session_dir(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    return {"SESSION_DIR": str(tmp_path / "sessions")}


def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    return {"REDIS_URL": request.getfixturevalue("redis_url")}


def _memcached(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    addresses: list[tuple[str, int]] = request.getfixturevalue("memcached_addresses")
    return {"MEMCACHED_SERVERS": ",".join(f"{host}:{port}" for host, port in addresses)}


def _sqlite(scheme: str) -> Env:
    def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
        return {"DATABASE_URL": f"{scheme}:///{tmp_path / 'sessions.db'}"}

    return env


# -- the store behind an app ---------------------------------------------------------------


@dataclass
class Store:
    """The example's ``SessionMiddleware``, found once the app has built its middleware stack."""

    app: Starlette
    middleware: SessionMiddleware | None = field(default=None)

    def find(self) -> SessionMiddleware:
        if self.middleware is None:
            layer: Any = self.app.middleware_stack
            for _ in range(20):
                if layer is None or isinstance(layer, SessionMiddleware):
                    break
                layer = getattr(layer, "app", None)
            assert isinstance(layer, SessionMiddleware), "no SessionMiddleware in the app's stack"
            self.middleware = layer
        return self.middleware

    def session_id(self, client: httpx.AsyncClient) -> str | None:
        """The server-side id named by the client's session cookie (None for cookie sessions)."""
        strategy = self.find().strategy
        if not isinstance(strategy, ServerSideStrategy):
            return None
        cookies = {cookie.name: cookie.value or "" for cookie in client.cookies.jar}
        session_id = strategy.session_id_from(cookies)
        assert session_id is not None, f"no valid session cookie in {cookies}"
        return session_id

    async def stored(self, session_id: str) -> dict[str, Any] | None:
        backend = self.find().backend
        assert backend is not None
        return await backend.get(session_id)


@asynccontextmanager
async def client_for(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client:
        yield client


def cleared(response: httpx.Response) -> bool:
    return any(
        value.startswith("session=null;") and "1970" in value
        for value in response.headers.get_list("set-cookie")
    )


# -- scenarios ---------------------------------------------------------------------------------


async def counter(app: Starlette, store: Store, *, index: str = "/", logout: str = "/logout") -> None:
    """``index`` counts visits per session; ``logout`` clears the session (and its record)."""
    async with client_for(app) as client:
        for expected in (1, 2, 3):
            response = await client.get(index)
            assert response.status_code == 200, response.text
            assert response.json()["count"] == expected
        session_id = store.session_id(client)
        if session_id is not None:
            assert (await store.stored(session_id) or {}).get("count") == 3

        async with client_for(app) as other:
            assert (await other.get(index)).json()["count"] == 1  # a new visitor: a new session

        response = await client.get(logout)
        assert response.status_code == 200
        assert response.json()["count"] == 0
        assert cleared(response), response.headers
        if session_id is not None:
            assert await store.stored(session_id) is None
        assert (await client.get(index)).json()["count"] == 1


async def plain_counter(app: Starlette, store: Store) -> None:
    await counter(app, store)


async def fastapi_flow(app: Starlette, store: Store) -> None:
    await counter(app, store)
    async with client_for(app) as client:
        assert (await client.get("/")).json() == {"count": 1, "user": None}
        before = store.session_id(client)
        response = await client.post("/login/bob")
        assert response.status_code == 200
        assert response.json() == {"user": "bob"}
        after = store.session_id(client)
        assert before is not None
        assert after not in (None, before), "login must move the session to a new id"
        assert await store.stored(before) is None
        assert (await client.get("/")).json() == {"count": 2, "user": "bob"}
        assert (await client.get("/logout")).json() == {"count": 0}
        assert (await client.get("/")).json() == {"count": 1, "user": None}


def _views(page: str) -> int:
    match = re.search(r"viewed this page <b>(\d+)</b>", page)
    assert match is not None, page
    return int(match.group(1))


def _cart(page: str) -> list[str]:
    section = page.split("<h2>Cart</h2>", 1)[1].split("</ul>", 1)[0]
    return re.findall(r"<li>(.*?)</li>", section)


async def demo_flow(app: Starlette, store: Store) -> None:
    async with client_for(app) as client:
        page = (await client.get("/")).text
        assert "You are not logged in." in page
        assert _views(page) == 1
        assert _cart(page) == ["(empty)"]
        anonymous = store.session_id(client)
        assert anonymous is not None

        response = await client.post("/login", data={"user": "Alice <admin>"})
        assert response.status_code == 303
        assert response.headers["location"] == "/"
        user_id = store.session_id(client)
        assert user_id not in (None, anonymous), "login must move the session to a new id"
        assert await store.stored(anonymous) is None
        assert user_id is not None

        for item in ("apple", "<b>pear</b>"):
            response = await client.post("/cart", data={"item": item})
            assert response.status_code == 303
        page = (await client.get("/")).text
        assert "Hello, Alice &lt;admin&gt;." in page
        assert _views(page) == 2  # the data survived the new id
        assert _cart(page) == ["apple", "&lt;b&gt;pear&lt;/b&gt;"]
        stored = await store.stored(user_id)
        assert stored is not None
        assert stored["cart"] == ["apple", "<b>pear</b>"]
        assert stored["user"] == "Alice <admin>"

        response = await client.post("/logout")
        assert response.status_code == 303
        assert cleared(response), response.headers
        assert await store.stored(user_id) is None
        page = (await client.get("/")).text
        assert "You are not logged in." in page
        assert _views(page) == 1
        assert _cart(page) == ["(empty)"]


async def file_flow(app: Starlette, store: Store) -> None:
    await counter(app, store)
    directory = Path(str(store.find().backend.directory))  # type: ignore[union-attr]
    # One file per live session: the second visitor's and the one made after logout.
    assert len(list(directory.glob("session-*"))) == 2


@dataclass(frozen=True)
class Scenario:
    env: Env
    driver: Driver


SCENARIOS: dict[str, Scenario] = {
    "custom_backend": Scenario(_no_env, plain_counter),
    "otel_tracing": Scenario(_no_env, plain_counter),
    "prometheus_metrics": Scenario(_no_env, plain_counter),
    "demo": Scenario(_session_dir, demo_flow),
    "fastapi_app": Scenario(_no_env, fastapi_flow),
    "file_backend": Scenario(_session_dir, file_flow),
    "memcache_async": Scenario(_memcached, plain_counter),
    "memcache_sync": Scenario(_memcached, plain_counter),
    "redis_async": Scenario(_redis, plain_counter),
    "redis_sync": Scenario(_redis, plain_counter),
    "sqlalchemy_async": Scenario(_sqlite("sqlite+aiosqlite"), plain_counter),
    "sqlalchemy_sync": Scenario(_sqlite("sqlite"), plain_counter),
    "starlette_dropin": Scenario(_no_env, plain_counter),
}


def _import_fresh(name: str) -> ModuleType:
    sys.modules.pop(f"examples.{name}", None)
    return importlib.import_module(f"examples.{name}")


async def _close_unowned_clients(store: Store) -> None:
    # redis_sync builds its client inside the middleware list and has no lifespan to close it.
    backend = store.find().backend if store.middleware is not None else None
    client = getattr(backend, "client", None)
    if client is not None and type(client).__module__.startswith("redis.client"):
        client.close()


def test_every_example_has_a_scenario() -> None:
    assert EXAMPLES, f"no examples found in {EXAMPLES_DIR}"
    missing = sorted(set(EXAMPLES) - set(SCENARIOS))
    assert not missing, f"examples without a scenario in tests/test_examples.py: {missing}"
    assert not set(SCENARIOS) - set(EXAMPLES), "scenarios for examples that no longer exist"


@pytest.mark.anyio
@pytest.mark.parametrize("name", EXAMPLES)
async def test_example(
    name: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if name not in SCENARIOS:
        pytest.fail(f"examples/{name}.py has no scenario in tests/test_examples.py")
    scenario = SCENARIOS[name]
    monkeypatch.setenv("SECRET_KEY", SECRET)
    for key, value in scenario.env(request, tmp_path).items():
        monkeypatch.setenv(key, value)
    previous = sys.modules.get(f"examples.{name}")
    module = _import_fresh(name)
    try:
        app = module.app
        assert isinstance(app, Starlette)
        store = Store(app)
        try:
            async with app.router.lifespan_context(app):
                await scenario.driver(app, store)
        finally:
            await _close_unowned_clients(store)
    finally:
        # Other test modules may hold the module imported with the default environment.
        if previous is None:
            sys.modules.pop(f"examples.{name}", None)
        else:
            sys.modules[f"examples.{name}"] = previous
