"""Every Python code block in README.md and docs/**/*.md runs, as written.

The blocks are read from the Markdown at collection time (new pages are picked up without a
change here). Each block runs on its own, in a fresh namespace, inside the event loop (top-level
``await`` is allowed), with the working directory in ``tmp_path``. Conventions the docs follow:

* Server addresses are written as the placeholders in ``PLACEHOLDERS`` (``redis://127.0.0.1:6379/0``,
  ``"127.0.0.1", 11211``...); each is replaced with the address of the matching test server,
  started on demand (tests/servers.py). An address that is not a known placeholder fails the test,
  so a snippet never tries to reach a machine that is not there.
* ``os.environ["SESSION_SECRET"]`` and ``os.environ["SESSION_ENCRYPTION_KEY"]`` are set.
* A block defining ``app`` is driven over ASGI: lifespan start-up, each GET route without path
  parameters requested twice (the client keeps the cookies), then lifespan shutdown. No response
  may be a server error. Other methods are left alone: they usually need a form or a body.
* A block preceded by ``<!-- continued -->`` runs after the block before it on the same page, in
  the same namespace (a page that builds one example step by step).
* A block that is deliberately not runnable on its own is preceded by ``<!-- fragment -->``; it
  must still compile. Keep them rare.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
import types
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Scope

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?:python|py)[ \t]*\n(?P<code>.*?)^(?P=indent)```", re.S | re.M)
FRAGMENT = "<!-- fragment -->"
CONTINUED = "<!-- continued -->"
#: Text that names a machine; after the placeholders are replaced, none may be left.
UNREPLACED = re.compile(r"10\.0\.0\.\d|db\.internal|:6379\b|\b11211\b|\b7000\b|/var/lib/")
ENVIRONMENT = {
    "SESSION_SECRET": "doc-snippets-secret-0123456789abcdef",
    "SESSION_ENCRYPTION_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY",  # 32 bytes, urlsafe base64
}


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int
    code: str
    fragment: bool
    #: The block this one continues (``<!-- continued -->``), run first in the same namespace.
    previous: Snippet | None

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def snippets() -> list[Snippet]:
    found = []
    for path in markdown_files():
        text = path.read_text()
        previous: Snippet | None = None
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip().splitlines()
            marker = before[-1].strip() if before else ""
            line = text.count("\n", 0, match.start()) + 1
            if marker == CONTINUED and previous is None:
                raise ValueError(f"{path}:{line}: <!-- continued --> on the page's first Python block")
            previous = Snippet(
                path=path,
                line=line,
                code=textwrap.dedent(match["code"]),
                fragment=marker == FRAGMENT,
                previous=previous if marker == CONTINUED else None,
            )
            found.append(previous)
    return found


SNIPPETS = snippets()


# -- placeholders --------------------------------------------------------------------------------

Replacement = Callable[[pytest.FixtureRequest, Path], str]


def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(request.getfixturevalue("redis_url"))


def _memcached(index: int) -> Replacement:
    def replacement(request: pytest.FixtureRequest, tmp_path: Path) -> str:
        host, port = request.getfixturevalue("memcached_addresses")[index]
        return f'"{host}", {port}'

    return replacement


def _memcached_list(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    addresses = request.getfixturevalue("memcached_addresses")
    return ", ".join(f'"{host}:{port}"' for host, port in addresses)


def _cluster(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    nodes = request.getfixturevalue("redis_cluster_nodes")
    return ", ".join(f'ClusterNode("{host}", {port})' for host, port in nodes)


def _postgres(driver: str) -> Replacement:
    def replacement(request: pytest.FixtureRequest, tmp_path: Path) -> str:
        dsn = str(request.getfixturevalue("postgres_dsn"))
        return dsn.replace("postgresql://", f"postgresql+{driver}://", 1)

    return replacement


def _directory(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "sessions")


PLACEHOLDERS: dict[str, Replacement] = {
    "redis://127.0.0.1:6379/0": _redis,
    '"127.0.0.1", 11211': _memcached(0),
    '"10.0.0.1:11211", "10.0.0.2:11211"': _memcached_list,
    'ClusterNode("10.0.0.1", 7000), ClusterNode("10.0.0.2", 7000)': _cluster,
    "postgresql+asyncpg://app@db.internal/app": _postgres("asyncpg"),
    "postgresql+psycopg://app@db.internal/app": _postgres("psycopg"),
    "/var/lib/myapp/sessions": _directory,
}


def with_servers(code: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    for placeholder, replacement in PLACEHOLDERS.items():
        if placeholder in code:
            code = code.replace(placeholder, replacement(request, tmp_path))
    left = UNREPLACED.search(code)
    assert left is None, f"an address that is no known placeholder: {left and left.group()!r}"
    return code


# -- running ---------------------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run the app's ASGI lifespan: start-up before the block, shutdown after it."""
    to_app, from_test = anyio.create_memory_object_stream[Message](2)
    to_test, from_app = anyio.create_memory_object_stream[Message](2)

    async def receive() -> Message:
        return await from_test.receive()

    async def send(message: Message) -> None:
        await to_test.send(message)

    async def run() -> None:
        scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        await app(scope, receive, send)

    async with anyio.create_task_group() as tasks, to_app, from_app, to_test, from_test:
        tasks.start_soon(run)
        await to_app.send({"type": "lifespan.startup"})
        started = await from_app.receive()
        assert started["type"] == "lifespan.startup.complete", started
        yield
        await to_app.send({"type": "lifespan.shutdown"})
        stopped = await from_app.receive()
        assert stopped["type"] == "lifespan.shutdown.complete", stopped


async def drive(app: Any) -> None:
    routes = [
        route
        for route in getattr(app, "routes", [])
        if isinstance(route, Route) and "{" not in route.path and "GET" in (route.methods or ())
    ]
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for route in routes:
                for _ in range(2):
                    response = await client.get(route.path)
                    assert response.status_code < 500, (route.path, response.text)


async def close_resources(namespace: dict[str, Any]) -> None:
    """Close the clients, engines and backends a block made, so no socket is left open."""
    for value in list(namespace.values()):
        if isinstance(value, type | types.ModuleType | types.FunctionType) or value is None:
            continue
        for method in ("aclose", "dispose", "close"):
            close = getattr(value, method, None)
            if callable(close):
                result = close()
                if inspect.isawaitable(result):
                    await result
                break


def test_snippets_are_found() -> None:
    readme = [snippet for snippet in SNIPPETS if snippet.path.name == "README.md"]
    assert len(readme) >= 3, "README.md shows no Python blocks: the fence pattern is out of date"
    fragments = [snippet.name for snippet in SNIPPETS if snippet.fragment]
    assert len(fragments) <= len(SNIPPETS) // 10, f"too many fragments: {fragments}"


@pytest.mark.anyio
@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda snippet: snippet.name)
async def test_snippet_runs(
    snippet: Snippet, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    if snippet.fragment:
        compile(snippet.code, snippet.name, "exec", flags=flags, dont_inherit=True)
        return
    monkeypatch.chdir(tmp_path)
    for key, value in ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    chain = [snippet]
    while chain[0].previous is not None:
        chain.insert(0, chain[0].previous)
    # A real module, so that libraries resolving names through sys.modules (SQLAlchemy's
    # annotations) find the block's globals.
    module = types.ModuleType("doc_snippet")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace: dict[str, Any] = module.__dict__
    try:
        for block in chain:
            text = with_servers(block.code, request, tmp_path)
            # dont_inherit: this file's ``from __future__ import annotations`` must not apply.
            code = compile(text, block.name, "exec", flags=flags, dont_inherit=True)
            result = eval(code, namespace)
            if inspect.isawaitable(result):
                await result
        app = namespace.get("app")
        if app is not None:
            await drive(app)
    finally:
        await close_resources(namespace)
