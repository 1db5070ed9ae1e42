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

from starlette_session.ids import private_id
from starlette_session.users import INDEX_PREFIX, index_key
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
async def browse(
    app: Starlette, user_agent: str = "python-httpx", ip: str = "127.0.0.1"
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE_URL, follow_redirects=True, headers={"User-Agent": user_agent}
    ) as client:
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
    """The store keys of the live session files (the file name after its prefix), not the users' indexes."""
    names = (path.name.removeprefix("session-") for path in (data_dir / "sessions").glob("session-*"))
    return {name for name in names if not name.startswith(INDEX_PREFIX)}


def index_keys(data_dir: Path) -> set[str]:
    """The store keys of the users' session indexes (``user_key``)."""
    return {
        path.name.removeprefix("session-")
        for path in (data_dir / "sessions").glob(f"session-{INDEX_PREFIX}*")
    }


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
        index = index_key("alice")
        assert [call.split(" →")[0].split(",")[0] for call in shown.calls] == [
            f"file.read({short(old_key)})",
            f"file.remove({short(old_key)})",
            f"file.create({short(new_key)}",
            # user_key: the session is listed in its user's index.
            f"file.read_for_update({short(index)})",
            f"file.create({short(index)}",
        ]
        assert index_keys(data_dir) == {index}
        assert shown.record == {"cart": ["apple"], "user": "alice", "user_id": "alice"}
        assert "Hello, alice." in response.text
        # The home page it led to counted the view: a write under the new id.
        assert current(response.text).session_id == f"unchanged: {short(new_id)}"
        assert current(response.text).record == {
            "cart": ["apple"],
            "user": "alice",
            "user_id": "alice",
            "views": 1,
        }

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
        index = index_key("alice")
        index_size = record_size(data_dir, index)

        response = await client.post("/logout")
        shown = previous(response.text)
        assert shown.title == "Before it: POST /logout → 303 See Other"
        assert len(shown.set_cookie) == 1
        assert shown.set_cookie[0].startswith("session=null; path=/; expires=Thu, 01 Jan 1970")
        assert shown.session_id == f"ended: {short(session_id)}: record removed, cookie cleared"
        assert shown.calls == [
            f"file.read({short(key)}) → {size} bytes",
            f"file.remove({short(key)}) → removed",
            # Taken out of its user's index, which is left with no session.
            f"file.read_for_update({short(index)}) → {index_size} bytes",
            f"file.compare_and_swap({short(index)}, 2 bytes, ttl=1) → stored",
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


# -- where you're signed in ----------------------------------------------------------------------


@dataclass
class Row:
    """One session in the "Where you're signed in" table."""

    current: bool
    #: Device, address, signed in, last seen, session (shortened handle), action.
    cells: list[str]
    #: The handle the row's "Sign out" form posts, if it has one.
    handle: str | None


def rows(page: str) -> list[Row]:
    table = re.search(r'<table id="devices".*?<tbody>(.*?)</tbody>', page, re.DOTALL)
    assert table is not None, page
    found = []
    for row_class, body in re.findall(r'<tr class="(device(?: current)?)">(.*?)</tr>', table.group(1)):
        handle = re.search(r'<input type="hidden" name="handle" value="([^"]*)">', body)
        cells = [html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in re.findall(r"<td>(.*?)</td>", body)]
        found.append(Row(row_class == "device current", cells, None if handle is None else handle.group(1)))
    return found


def handle_of(client: httpx.AsyncClient, data_dir: Path) -> str:
    return private_id(public_id(client, secret_of(data_dir)))


async def logged_in(client: httpx.AsyncClient, name: str) -> str:
    """Log ``client`` in as ``name``; return the home page it lands on."""
    page = (await client.post("/login", data={"user": name})).text
    assert f"Hello, {html.escape(name)}." in page
    return page


async def is_anonymous(client: httpx.AsyncClient) -> bool:
    page = (await client.get("/")).text
    return "You are not logged in." in page


def assert_handles_only_in_forms(page: str, *handles: str) -> None:
    """No full handle in the page but as the value of a form's hidden field."""
    outside_forms = re.sub(r'<input type="hidden" name="handle" value="[^"]*">', "", page)
    assert_nothing_full([outside_forms], *handles)


@pytest.mark.anyio
async def test_where_signed_in_lists_the_users_sessions(app: Starlette, data_dir: Path) -> None:
    async with (
        browse(app, "Phone/1.0 (test)", "10.0.0.1") as phone,
        browse(app, "Laptop/2.0 (test)", "10.0.0.2") as laptop,
        browse(app, "Other/3.0 (test)", "10.0.0.3") as bob,
    ):
        await logged_in(phone, "Alice")
        await logged_in(bob, "bob")
        await logged_in(laptop, "alice")  # the same user: user_id is the name, case-folded

        response = await laptop.get("/sessions")
        assert response.status_code == 200
        page = response.text
        assert "<h2>Where you're signed in</h2>" in page
        shown = rows(page)
        phone_handle, laptop_handle = handle_of(phone, data_dir), handle_of(laptop, data_dir)
        # Most recently seen first: this device, then the phone; bob's session is not listed.
        assert [row.current for row in shown] == [True, False]
        assert shown[0].cells[:2] == ["Laptop/2.0 (test)", "10.0.0.2"]
        assert shown[0].cells[4:] == [short(laptop_handle), "this device"]
        assert shown[0].handle is None  # no button to sign this device out: that is "Log out"
        assert shown[1].cells[:2] == ["Phone/1.0 (test)", "10.0.0.1"]
        assert shown[1].cells[4:] == [short(phone_handle), "Sign out"]
        assert shown[1].handle == phone_handle
        for row in shown:
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", row.cells[2]), row
            assert row.cells[2] <= row.cells[3], row  # signed in, then last seen
        assert 'id="sign-out-others"' in page

        # No full id, cookie value or handle in the page (the handles only as the forms' values).
        credentials = [public_id(client, secret_of(data_dir)) for client in (phone, laptop, bob)]
        credentials += [cookie_value(client) for client in (phone, laptop, bob)]
        assert_nothing_full([page], *credentials)
        assert_handles_only_in_forms(page, phone_handle, laptop_handle, handle_of(bob, data_dir))

        # Alone, the user sees one session and no button to sign others out.
        alone = (await bob.get("/sessions")).text
        assert [(row.current, row.cells[0]) for row in rows(alone)] == [(True, "Other/3.0 (test)")]
        assert 'id="sign-out-others"' not in alone


@pytest.mark.anyio
async def test_signing_out_another_device_logs_it_out(app: Starlette, data_dir: Path) -> None:
    async with browse(app, "Phone/1.0") as phone, browse(app, "Laptop/2.0") as laptop:
        await logged_in(phone, "alice")
        await logged_in(laptop, "alice")
        phone_handle = handle_of(phone, data_dir)
        phone_key = phone_handle  # the handle is the record's key
        assert phone_key in keys(data_dir)
        (target,) = [row.handle for row in rows((await laptop.get("/sessions")).text) if not row.current]
        assert target == phone_handle

        response = await laptop.post("/sessions/revoke", data={"handle": target})
        assert [r.status_code for r in response.history] == [303]
        assert str(response.url).endswith("/sessions?signed_out=1")
        assert "Signed out of 1 other session(s)." in response.text
        assert [row.current for row in rows(response.text)] == [True]
        # The revocation went through the store, as the panel shows.
        assert f"file.remove({short(phone_key)}) → removed" in previous(response.text).calls
        assert phone_key not in keys(data_dir)

        # The phone's next request is anonymous; the laptop is still logged in.
        assert await is_anonymous(phone)
        assert "not logged in" in (await phone.get("/sessions")).text
        assert not await is_anonymous(laptop)
        assert_handles_only_in_forms(response.text, phone_handle, handle_of(laptop, data_dir))


@pytest.mark.anyio
async def test_sign_out_all_other_devices(app: Starlette, data_dir: Path) -> None:
    async with (
        browse(app, "Phone/1.0") as phone,
        browse(app, "Tablet/1.0") as tablet,
        browse(app, "Laptop/2.0") as laptop,
        browse(app, "Other/3.0") as bob,
    ):
        for client in (phone, tablet, laptop):
            await logged_in(client, "alice")
        await logged_in(bob, "bob")
        assert len(rows((await laptop.get("/sessions")).text)) == 3

        response = await laptop.post("/sessions/others")
        assert [r.status_code for r in response.history] == [303]
        assert "Signed out of 2 other session(s)." in response.text
        assert [(row.current, row.cells[0]) for row in rows(response.text)] == [(True, "Laptop/2.0")]
        assert 'id="sign-out-others"' not in response.text
        assert await is_anonymous(phone)
        assert await is_anonymous(tablet)
        assert not await is_anonymous(laptop)
        assert not await is_anonymous(bob)  # another user's sessions are left alone


@pytest.mark.anyio
async def test_only_another_session_of_ones_own_can_be_signed_out(app: Starlette, data_dir: Path) -> None:
    async with browse(app) as alice, browse(app) as bob, browse(app) as anonymous:
        await logged_in(alice, "alice")
        await logged_in(bob, "bob")
        await anonymous.get("/")
        refused = [
            (alice, handle_of(bob, data_dir)),  # another user's session
            (alice, handle_of(alice, data_dir)),  # this very session: that is "Log out"
            (alice, public_id(bob, secret_of(data_dir))),  # an id is not a handle
            (alice, "garbage"),
            (anonymous, handle_of(bob, data_dir)),  # not logged in
        ]
        for client, handle in refused:
            response = await client.post("/sessions/revoke", data={"handle": handle})
            assert response.status_code == 404
            assert "No such session on another of your devices." in response.text
        assert not await is_anonymous(alice)
        assert not await is_anonymous(bob)
        # Nobody else to sign out, and nothing done for an anonymous visitor either.
        assert "Signed out of 0 other session(s)." in (await alice.post("/sessions/others")).text
        assert 'id="not-signed-in"' in (await anonymous.post("/sessions/others")).text
        assert not await is_anonymous(bob)
