"""The demo (examples/demo.py): the panel that shows what each request did to its session.

The demo app is driven in-process over ASGI with httpx, following redirects as a browser does,
with its data folder under ``tmp_path``. The panel of each page is parsed and checked against
what really happened: the response's Set-Cookie headers, the files in the session folder and
the session id in the cookie (read here with itsdangerous directly). No full session id, store
key or cookie value may appear in any page.
"""

from __future__ import annotations

import html
import importlib
import json
import re
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tests.helpers import unsign_json

BASE_URL = "http://testserver"
NO_COOKIE = "none: the session did not change"


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """examples/demo.py imported afresh, its import-time app built in a folder of its own."""
    monkeypatch.setenv("DEMO_DATA_DIR", str(tmp_path / "imported"))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("SESSION_DIR", raising=False)
    previous = sys.modules.pop("examples.demo", None)
    try:
        yield importlib.import_module("examples.demo")
    finally:
        if previous is None:
            sys.modules.pop("examples.demo", None)
        else:
            sys.modules["examples.demo"] = previous


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def app(demo: ModuleType, data_dir: Path) -> Starlette:
    built: Starlette = demo.create_app(data_dir)
    return built


@asynccontextmanager
async def browse(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, follow_redirects=True) as client:
        yield client


# -- reading the panel ------------------------------------------------------------------------


@dataclass
class Report:
    title: str
    set_cookie: list[str] | str  # the headers as shown, or the "none" sentence
    cookie_size: str
    session_id: str
    calls: list[str]
    record: Any  # the JSON record, or None for "none"


def _field(section: str, name: str) -> str:
    match = re.search(rf'<dd class="{name}">(.*?)</dd>', section, re.DOTALL)
    assert match is not None, (name, section)
    return match.group(1)


def report(page: str, element_id: str) -> Report | None:
    """The report ``element_id`` (``report-current`` or ``report-previous``) of a page, if any."""
    match = re.search(rf'<div class="report" id="{element_id}">(.*?)</dl></div>', page, re.DOTALL)
    if match is None:
        return None
    section = match.group(1)
    title = re.search(r"<h3>(.*?)</h3>", section)
    record = re.search(r'<pre class="record">(.*?)</pre>', section, re.DOTALL)
    assert title is not None
    assert record is not None
    set_cookie_html = _field(section, "set-cookie")
    codes = [html.unescape(code) for code in re.findall(r"<code>(.*?)</code>", set_cookie_html)]
    record_text = html.unescape(record.group(1))
    return Report(
        title=html.unescape(title.group(1)),
        set_cookie=codes or html.unescape(set_cookie_html),
        cookie_size=html.unescape(_field(section, "cookie-size")),
        session_id=html.unescape(_field(section, "session-id")),
        calls=[
            html.unescape(call) for call in re.findall(r"<code>(.*?)</code>", _field(section, "store-calls"))
        ],
        record=None if record_text == "none" else json.loads(record_text),
    )


def current(page: str) -> Report:
    found = report(page, "report-current")
    assert found is not None, page
    return found


def previous(page: str) -> Report:
    found = report(page, "report-previous")
    assert found is not None, page
    return found


# -- what really happened ----------------------------------------------------------------------


def short(text: str) -> str:
    return text[:6] + "…"


def cookie_value(client: httpx.AsyncClient) -> str:
    value = client.cookies.get("session")
    assert value is not None, client.cookies
    return value


def public_id(client: httpx.AsyncClient, secret: str) -> str:
    session_id: str = unsign_json(cookie_value(client), secret)["_cssid"]
    return session_id


def secret_of(data_dir: Path) -> str:
    return (data_dir / "secret-key").read_text().strip()


def keys(data_dir: Path) -> set[str]:
    """The store keys of the live session files (the file name after its prefix)."""
    return {path.name.removeprefix("session-") for path in (data_dir / "sessions").glob("session-*")}


def record_size(data_dir: Path, key: str) -> int:
    """The size of the record in a session file (after its one-line header)."""
    return len((data_dir / "sessions" / f"session-{key}").read_bytes().split(b"\n", 1)[1])


def assert_nothing_full(pages: list[str], *credentials: str) -> None:
    for credential in credentials:
        assert len(credential) > 6
        for page in pages:
            assert credential not in page, f"{short(credential)} appears in full in a page"


# -- the tests ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_read_sends_no_cookie_and_makes_one_read(app: Starlette, data_dir: Path) -> None:
    async with browse(app) as client:
        await client.post("/cart", data={"item": "apple"})
        (key,) = keys(data_dir)
        session_id = public_id(client, secret_of(data_dir))
        size = record_size(data_dir, key)

        response = await client.get("/cart")
        assert response.status_code == 200
        assert "set-cookie" not in response.headers
        page = response.text
        shown = current(page)
        assert shown.title == "This request: GET /cart → 200 OK"
        assert shown.set_cookie == NO_COOKIE
        assert shown.calls == [f"file.read({short(key)}) → {size} bytes"]
        assert shown.session_id == f"unchanged: {short(session_id)}"
        assert shown.record == {"cart": ["apple"]}
        sent = len(f"session={cookie_value(client)}")
        assert shown.cookie_size == f"session: {sent} bytes, as the browser sent it"
        # The report of the redirect that led to the previous page was shown once only.
        assert report(page, "report-previous") is None
        assert keys(data_dir) == {key}
        assert_nothing_full([page], key, session_id, cookie_value(client))


@pytest.mark.anyio
async def test_a_write_shows_the_set_cookie_and_the_store_commands(app: Starlette, data_dir: Path) -> None:
    async with browse(app) as client:
        first = await client.post("/cart", data={"item": "apple"})
        assert [r.status_code for r in first.history] == [303]
        sent = first.history[0].headers.get_list("set-cookie")
        session_cookies = [header for header in sent if header.startswith("session=")]
        assert len(session_cookies) == 1
        (key,) = keys(data_dir)
        value = cookie_value(client)

        shown = previous(first.text)
        assert shown.title == "Before it: POST /cart → 303 See Other"
        attributes = session_cookies[0].split(";", 1)[1]
        assert shown.set_cookie == [f"session={short(value)};{attributes}"]
        assert shown.cookie_size == (
            f"session: {len('session=' + value)} bytes sent back by the browser with each request "
            f"({len(session_cookies[0])} bytes of Set-Cookie header)"
        )
        size = record_size(data_dir, key)
        assert shown.calls == [f"file.create({short(key)}, {size} bytes, ttl=1209600) → stored"]
        assert shown.session_id == f"new: {short(public_id(client, secret_of(data_dir)))}"
        assert shown.record == {"cart": ["apple"]}
        # The page the redirect led to only read the session.
        assert current(first.text).set_cookie == NO_COOKIE

        second = await client.post("/cart", data={"item": "<pear>"})
        shown = previous(second.text)
        assert [call.split("(")[0] for call in shown.calls] == ["file.read", "file.replace"]
        assert shown.calls[1].endswith("→ stored")
        assert isinstance(shown.set_cookie, list)
        assert len(shown.set_cookie) == 1
        assert shown.record == {"cart": ["apple", "<pear>"]}
        assert "&lt;pear&gt;" in second.text
        assert keys(data_dir) == {key}
        assert_nothing_full([first.text, second.text], key, value, public_id(client, secret_of(data_dir)))


@pytest.mark.anyio
async def test_login_shows_the_new_id_shortened_and_never_in_full(app: Starlette, data_dir: Path) -> None:
    async with browse(app) as client:
        pages = [(await client.post("/cart", data={"item": "apple"})).text]
        (old_key,) = keys(data_dir)
        old_id = public_id(client, secret_of(data_dir))
        old_value = cookie_value(client)

        response = await client.post("/login", data={"user": "alice"})
        pages.append(response.text)
        new_id = public_id(client, secret_of(data_dir))
        assert new_id != old_id
        (new_key,) = keys(data_dir)  # the old record is gone
        assert new_key != old_key

        shown = previous(response.text)
        assert shown.title == "Before it: POST /login → 303 See Other"
        assert shown.session_id == (
            f"changed: {short(old_id)} → {short(new_id)} (regenerate_session(): the old record was removed)"
        )
        assert [call.split(" →")[0].split(",")[0] for call in shown.calls] == [
            f"file.read({short(old_key)})",
            f"file.remove({short(old_key)})",
            f"file.create({short(new_key)}",
        ]
        assert shown.record == {"cart": ["apple"], "user": "alice"}
        assert "Hello, alice." in response.text
        # The home page it led to counted the view: a write under the new id.
        assert current(response.text).session_id == f"unchanged: {short(new_id)}"
        assert current(response.text).record == {"cart": ["apple"], "user": "alice", "views": 1}

        pages.append((await client.get("/cart")).text)
        assert_nothing_full(pages, old_id, new_id, old_key, new_key, old_value, cookie_value(client))
        assert short(old_id) in response.text
        assert short(new_id) in response.text


@pytest.mark.anyio
async def test_logout_shows_the_cleared_cookie_and_the_removal(app: Starlette, data_dir: Path) -> None:
    async with browse(app) as client:
        await client.post("/login", data={"user": "alice"})
        (key,) = keys(data_dir)
        session_id = public_id(client, secret_of(data_dir))
        size = record_size(data_dir, key)

        response = await client.post("/logout")
        shown = previous(response.text)
        assert shown.title == "Before it: POST /logout → 303 See Other"
        assert len(shown.set_cookie) == 1
        assert shown.set_cookie[0].startswith("session=null; path=/; expires=Thu, 01 Jan 1970")
        assert shown.session_id == f"ended: {short(session_id)}: record removed, cookie cleared"
        assert shown.calls == [
            f"file.read({short(key)}) → {size} bytes",
            f"file.remove({short(key)}) → removed",
        ]
        assert shown.record is None
        # The home page after it starts a new session, under a new key.
        after = current(response.text)
        assert after.session_id.startswith("new: ")
        assert key not in keys(data_dir)
        assert after.record == {"cart": [], "views": 1}
        assert_nothing_full([response.text], key, session_id)


@pytest.mark.anyio
async def test_a_restart_keeps_the_secret_and_the_sessions(demo: ModuleType, data_dir: Path) -> None:
    first: Starlette = demo.create_app(data_dir)
    secret_file = data_dir / "secret-key"
    secret = secret_file.read_text()
    assert len(secret.strip()) >= 43  # secrets.token_urlsafe(32)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    async with browse(first) as client:
        await client.post("/cart", data={"item": "apple"})
        cookie = cookie_value(client)

    restarted: Starlette = demo.create_app(data_dir)
    assert secret_file.read_text() == secret
    async with browse(restarted) as client:
        client.cookies.set("session", cookie)
        page = (await client.get("/cart")).text
        assert "<li>apple</li>" in page
        assert current(page).record == {"cart": ["apple"]}

    # Another data folder has a secret of its own, which does not open this session.
    elsewhere: Starlette = demo.create_app(data_dir.parent / "elsewhere", session_dir=data_dir / "sessions")
    assert (data_dir.parent / "elsewhere" / "secret-key").read_text() != secret
    async with browse(elsewhere) as client:
        client.cookies.set("session", cookie)
        page = (await client.get("/cart")).text
        assert "<li>(empty)</li>" in page
        assert current(page).calls == []


@pytest.mark.anyio
async def test_secret_key_from_the_environment_wins(
    demo: ModuleType, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    app: Starlette = demo.create_app(data_dir)
    assert not (data_dir / "secret-key").exists()
    async with browse(app) as client:
        await client.post("/cart", data={"item": "apple"})
        assert unsign_json(cookie_value(client), "from-the-environment")["_cssid"]
