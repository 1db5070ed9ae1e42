"""The demo: a shop with a login and a cart, its sessions kept server-side in files.

Run it with ``bash scripts/demo.sh`` and open http://127.0.0.1:8000/ in a browser. Each page
ends with a panel that shows what the request did to its session: the Set-Cookie headers the
middleware sent (or none), the cookie's size, the store commands it made and the store's record
afterwards. A form's POST answers with a redirect (POST, redirect, GET), so the page it leads
to shows the POST's panel above its own.

How the panel is made, in this file only: ``RecordingBackend`` wraps the real ``FileBackend``
and notes every call in a list scoped to the request (a ``ContextVar``); ``ReportMiddleware``,
a pure ASGI middleware outside ``SessionMiddleware``, reads the Set-Cookie headers of the
response as it starts (the session is saved by then), and writes the panel into the page in
place of ``REPORT_PLACEHOLDER``. The report of a redirect is kept in memory under a random token
carried by an ordinary cookie (``demo_report``, not the session's) for the page that follows.

Session ids are credentials: the panel shows their first 6 characters only, and the cookie
values likewise, since the signed cookie holds the id.

Logging in sets ``user_id`` (the name, case-folded), the middleware's ``user_key``, so each
session is indexed under its user, with its User-Agent and address (``track_client``). The page
"Where you're signed in" (``/sessions``) lists the user's sessions and signs out another one (by
its handle, ``backend.revoke_session``) or every other one (``logout_other_sessions()``). A
handle is not a credential, but the page shows only its first 6 characters too; the whole handle
is only in the value of the form that revokes it.

Environment:

* ``DEMO_DATA_DIR``: the demo's data folder (default ``.demo-data`` in the repository);
* ``SESSION_DIR``: where the session files live (default ``$DEMO_DATA_DIR/sessions``);
* ``SECRET_KEY``: the signing key; without it, one is made once with ``secrets`` and kept in
  ``$DEMO_DATA_DIR/secret-key`` (mode 0o600), so a restart keeps every session.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import secrets
import tempfile
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_session import (
    BackendError,
    ConfigurationError,
    SessionBackend,
    SessionMiddleware,
    get_session,
    regenerate_session,
)
from starlette_session.backends.file import FileBackend
from starlette_session.strategies import ServerSideStrategy
from starlette_session.users import SessionInfo, list_sessions, logout_other_sessions

T = TypeVar("T")

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / ".demo-data"
SECRET_FILE = "secret-key"
SESSION_COOKIE = "session"
#: The ordinary cookie that leads the page after a redirect to the redirect's report.
REPORT_COOKIE = "demo_report"
#: Where a page wants the panel; ``ReportMiddleware`` replaces it.
REPORT_PLACEHOLDER = "<!-- session report -->"
#: How many characters of an id (or of a cookie value) the panel shows.
SHOWN_CHARS = 6
#: Redirect reports kept for the page that follows; the oldest are dropped past this.
KEPT_REPORTS = 256


def shorten(text: str) -> str:
    """Return the first ``SHOWN_CHARS`` characters of an id or cookie value, then "…"."""
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


# -- the secret ----------------------------------------------------------------------------------


def load_secret(data_dir: Path) -> str:
    """Return the secret kept in ``data_dir``, making it first if there is none.

    A new secret is written to a temporary file (mode 0o600) that is then linked into place,
    so that two processes starting at once agree on one secret and none reads half of it.

    Raises:
        ConfigurationError: the secret file exists but is empty.
    """
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".secret-", dir=data_dir)  # mode 0o600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(secrets.token_urlsafe(32) + "\n")
            with contextlib.suppress(FileExistsError):  # another process made it first: use that
                os.link(temp, path)
        finally:
            os.unlink(temp)
    secret = path.read_text(encoding="ascii").strip()
    if not secret:
        raise ConfigurationError(f"{path} is empty; delete it and a new secret is made at start-up")
    return secret


# -- the recording backend -----------------------------------------------------------------------


@dataclass(frozen=True)
class StoreCall:
    """One store command made during a request. ``key`` is the record's full key: never show it."""

    backend: str
    method: str
    key: str | None
    arguments: str
    result: str

    def text(self) -> str:
        """The command as the panel shows it, with the id shortened."""
        shown = [shorten(self.key)] if self.key is not None else []
        if self.arguments:
            shown.append(self.arguments)
        return f"{self.backend}.{self.method}({', '.join(shown)}) → {self.result}"


_calls: ContextVar[list[StoreCall] | None] = ContextVar("demo_store_calls", default=None)


def _size(data: bytes | None) -> str:
    return "missing" if data is None else f"{len(data)} bytes"


def _stored(stored: bool) -> str:
    return "stored" if stored else "refused"


def _found(found: bool) -> str:
    return "renewed" if found else "missing"


class RecordingBackend(SessionBackend):
    """Delegates every call to ``inner`` and notes it in the current request's list of calls.

    Outside a request (no list in the context) the calls are made but not noted.
    """

    def __init__(self, inner: SessionBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.serializer = inner.serializer
        self.default_ttl = inner.default_ttl

    async def _noted(
        self,
        method: str,
        key: str | None,
        arguments: str,
        call: Awaitable[T],
        describe: Callable[[T], str],
    ) -> T:
        calls = _calls.get()
        try:
            result = await call
        except BaseException as exc:
            if calls is not None:
                calls.append(StoreCall(self.name, method, key, arguments, type(exc).__name__))
            raise
        if calls is not None:
            calls.append(StoreCall(self.name, method, key, arguments, describe(result)))
        return result

    async def read(self, session_id: str) -> bytes | None:
        return await self._noted("read", session_id, "", self.inner.read(session_id), _size)

    async def read_for_update(self, session_id: str) -> tuple[bytes, Any] | None:
        return await self._noted(
            "read_for_update",
            session_id,
            "",
            self.inner.read_for_update(session_id),
            lambda found: _size(None if found is None else found[0]),
        )

    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        arguments = f"{len(data)} bytes, ttl={ttl}"
        await self._noted(
            "write", session_id, arguments, self.inner.write(session_id, data, ttl), lambda _: "stored"
        )

    async def create(self, session_id: str, data: bytes, ttl: int) -> bool:
        arguments = f"{len(data)} bytes, ttl={ttl}"
        return await self._noted(
            "create", session_id, arguments, self.inner.create(session_id, data, ttl), _stored
        )

    async def replace(self, session_id: str, data: bytes, ttl: int) -> bool:
        arguments = f"{len(data)} bytes, ttl={ttl}"
        return await self._noted(
            "replace", session_id, arguments, self.inner.replace(session_id, data, ttl), _stored
        )

    async def compare_and_swap(self, session_id: str, version: Any, data: bytes, ttl: int) -> bool:
        arguments = f"{len(data)} bytes, ttl={ttl}"
        swap = self.inner.compare_and_swap(session_id, version, data, ttl)
        return await self._noted("compare_and_swap", session_id, arguments, swap, _stored)

    async def remove(self, session_id: str) -> None:
        await self._noted("remove", session_id, "", self.inner.remove(session_id), lambda _: "removed")

    async def touch(self, session_id: str, ttl: int) -> bool:
        return await self._noted("touch", session_id, f"ttl={ttl}", self.inner.touch(session_id, ttl), _found)

    async def delete_expired(self) -> int:
        return await self._noted("delete_expired", None, "", self.inner.delete_expired(), str)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def on_cancelled(self) -> None:
        await self.inner.on_cancelled()


# -- the report ----------------------------------------------------------------------------------


def _session_id_line(old: str | None, new: str | None, cleared: bool, calls: list[StoreCall]) -> str:
    """Say what happened to the session id (the cookie's, not the store's key), ids shortened."""
    removed = any(call.method == "remove" for call in calls)
    if cleared:
        what = "record removed, cookie cleared" if removed else "cookie cleared"
        return f"ended: {shorten(old) if old else 'the session'}: {what}"
    if old is not None and new is not None and new != old:
        why = "regenerate_session(): the old record was removed" if removed else "the old record was gone"
        return f"changed: {shorten(old)} → {shorten(new)} ({why})"
    if new is not None and old is None:
        return f"new: {shorten(new)}"
    if old is not None:
        return f"unchanged: {shorten(old)}"
    return "none: no session cookie came with this request"


def _masked_set_cookie(header: str) -> str:
    """The Set-Cookie value with the cookie's value shortened (it holds the signed session id)."""
    pair, _, attributes = header.partition(";")
    name, _, value = pair.partition("=")
    return f"{name}={shorten(value)}" + (f";{attributes}" if attributes else "")


def _cookie_size(set_cookies: list[str], request_cookies: dict[str, str]) -> str:
    if set_cookies:
        sizes = []
        for header in set_cookies:
            pair = header.split(";", 1)[0]
            name = pair.split("=", 1)[0]
            sizes.append(
                f"{name}: {len(pair.encode())} bytes sent back by the browser with each request "
                f"({len(header.encode())} bytes of Set-Cookie header)"
            )
        return "; ".join(sizes)
    value = request_cookies.get(SESSION_COOKIE)
    if value is None:
        return "no session cookie"
    return f"{SESSION_COOKIE}: {len(f'{SESSION_COOKIE}={value}'.encode())} bytes, as the browser sent it"


async def _record_text(backend: RecordingBackend, session_id: str | None) -> str:
    """The session's record as it is in the store now, as JSON (read without being noted)."""
    if session_id is None:
        return "none"
    token = _calls.set(None)
    try:
        record = await backend.get(session_id)
    except BackendError:
        return "(the store could not be read)"
    finally:
        _calls.reset(token)
    if record is None:
        return "none"
    return json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False)


@dataclass
class Sighting:
    """What one request did, seen from outside ``SessionMiddleware``; holds full ids: never show it."""

    title: str
    calls: list[StoreCall]
    set_cookies: list[str]
    request_cookies: dict[str, str]
    #: The session id in the request's cookie and in the response's Set-Cookie, if valid.
    old_id: str | None
    new_id: str | None
    #: The response expired the session cookie.
    cleared: bool


async def render_report(backend: RecordingBackend, seen: Sighting, element_id: str) -> str:
    """Return the HTML of one request's report; no full session id or cookie value is in it."""
    if seen.set_cookies:
        items = "".join(
            f"<li><code>{html.escape(_masked_set_cookie(h))}</code></li>" for h in seen.set_cookies
        )
        set_cookie = f"<ul>{items}</ul>"
    else:
        set_cookie = "none: the session did not change"
    id_line = _session_id_line(seen.old_id, seen.new_id, seen.cleared, seen.calls)
    commands = "".join(f"<li><code>{html.escape(call.text())}</code></li>" for call in seen.calls)
    record = await _record_text(backend, None if seen.cleared else seen.new_id or seen.old_id)
    size = _cookie_size(seen.set_cookies, seen.request_cookies)
    return (
        f'<div class="report" id="{element_id}"><h3>{html.escape(seen.title)}</h3><dl>'
        f'<dt>Set-Cookie</dt><dd class="set-cookie">{set_cookie}</dd>'
        f'<dt>Cookie size</dt><dd class="cookie-size">{html.escape(size)}</dd>'
        f'<dt>Session id</dt><dd class="session-id">{html.escape(id_line)}</dd>'
        f'<dt>Store commands (by record key)</dt><dd class="store-calls">'
        f"{f'<ol>{commands}</ol>' if seen.calls else 'none'}</dd>"
        f'<dt>Store record after the request</dt><dd><pre class="record">{html.escape(record)}</pre></dd>'
        "</dl></div>"
    )


class KeptReports:
    """Redirect reports waiting for the page that follows, by random token; the oldest go first."""

    def __init__(self, size: int = KEPT_REPORTS) -> None:
        self.size = size
        self.reports: OrderedDict[str, str] = OrderedDict()

    def keep(self, report: str) -> str:
        token = secrets.token_urlsafe(16)
        self.reports[token] = report
        while len(self.reports) > self.size:
            self.reports.popitem(last=False)
        return token

    def pop(self, token: str | None) -> str | None:
        return None if token is None else self.reports.pop(token, None)


class ReportMiddleware:
    """Pure ASGI, outside ``SessionMiddleware``: each request's store calls and Set-Cookie headers.

    An HTML page gets the report of its own request in place of ``REPORT_PLACEHOLDER``, below
    the report of the redirect that led to it, if any; a redirect's report is kept for that page.
    """

    def __init__(self, app: ASGIApp, backend: RecordingBackend, reports: KeptReports) -> None:
        strategy = getattr(app, "strategy", None)
        if not isinstance(strategy, ServerSideStrategy):
            raise ConfigurationError("ReportMiddleware must wrap a server-side SessionMiddleware directly")
        self.app = app
        self.strategy = strategy  # only to read the session id in a cookie, for the panel
        self.backend = backend
        self.reports = reports

    def _sighting(
        self, title: str, calls: list[StoreCall], set_cookies: list[str], cookies: dict[str, str]
    ) -> Sighting:
        name = self.strategy.cookie.name
        sent = [h.split(";", 1)[0].partition("=")[2] for h in set_cookies if h.startswith(f"{name}=")]
        new_id = self.strategy.session_id_from({name: sent[-1]}) if sent else None
        return Sighting(
            title=title,
            calls=calls,
            set_cookies=set_cookies,
            request_cookies=cookies,
            old_id=self.strategy.session_id_from(cookies),
            new_id=new_id,
            cleared=bool(sent) and new_id is None,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        calls: list[StoreCall] = []
        token = _calls.set(calls)
        cookies = Request(scope).cookies
        page_start: Message | None = None
        panel = b""
        body: list[bytes] = []

        async def send_wrapper(message: Message) -> None:
            nonlocal page_start, panel
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                status = HTTPStatus(message["status"])
                title = f"{scope['method']} {scope['path']} → {status.value} {status.phrase}"
                set_cookies = headers.getlist("set-cookie")  # all from SessionMiddleware here
                if headers.get("content-type", "").startswith("text/html"):
                    previous = self.reports.pop(cookies.get(REPORT_COOKIE)) or ""
                    seen = self._sighting(f"This request: {title}", calls, set_cookies, cookies)
                    this = await render_report(self.backend, seen, "report-current")
                    panel = _panel(previous + this).encode()
                    page_start = message
                    return
                if 300 <= status < 400:
                    seen = self._sighting(f"Before it: {title}", calls, set_cookies, cookies)
                    report = await render_report(self.backend, seen, "report-previous")
                    kept = self.reports.keep(report)
                    headers.append("Set-Cookie", f"{REPORT_COOKIE}={kept}; Path=/; HttpOnly; SameSite=Lax")
            elif message["type"] == "http.response.body" and page_start is not None:
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                page = b"".join(body).replace(REPORT_PLACEHOLDER.encode(), panel, 1)
                MutableHeaders(scope=page_start)["content-length"] = str(len(page))
                await send(page_start)
                message = {"type": "http.response.body", "body": page}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            _calls.reset(token)


def _panel(reports: str) -> str:
    return (
        '<section id="session-report" style="border-top: 1px solid #999; margin-top: 2em">'
        "<h2>What the session did</h2>"
        f"{reports}</section>"
    )


# -- the shop ------------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>starlette_session demo</title>
<link rel="icon" href="data:,"></head>
<body style="font-family: sans-serif; max-width: 48em; margin: 2em auto">
<h1>starlette_session demo</h1>
<nav><a href="/">Home</a> · <a href="/cart">Cart</a> ·
<a id="where" href="/sessions">Where you're signed in</a></nav>
{content}
<p><small>Session stored server-side in <code>{directory}</code>;
the cookie holds only its signed id.</small></p>
{report}
</body></html>
"""

HOME = """<p>{greeting} You have viewed this page <b>{views}</b> time(s).</p>
<form method="post" action="{action}">{login}</form>
<h2>Cart</h2>
<ul>{cart}</ul>
<form method="post" action="/cart"><input name="item" placeholder="an item" required>
<button>Add to cart</button></form>
"""

CART = """<p>Reading the cart changes nothing: reload this page and no cookie is sent.</p>
<h2>Cart</h2>
<ul>{cart}</ul>
<form method="post" action="/cart"><input id="item" name="item" placeholder="an item" required>
<button id="add">Add to cart</button></form>
"""

SESSIONS = """<h2>Where you're signed in</h2>
{notice}<p>Every session signed in as <b>{user}</b>, most recently seen first.</p>
<table id="devices" cellpadding="4">
<thead><tr><th>Device</th><th>Address</th><th>Signed in</th><th>Last seen</th><th>Session</th>
<th></th></tr></thead>
<tbody>{rows}</tbody></table>
{others}
"""

SIGNED_OUT = """<h2>Where you're signed in</h2>
<p id="not-signed-in">You are not logged in: <a href="/">log in</a> to see where you are signed in.</p>
"""


def cart_items() -> list[str]:
    """Return the cart of the current session (``get_session`` works anywhere in a request)."""
    cart: list[str] = get_session().setdefault("cart", [])
    return cart


def _cart_html(items: list[str]) -> str:
    return "".join(f"<li>{html.escape(item)}</li>" for item in items) or "<li>(empty)</li>"


def _page(request: Request, content: str) -> HTMLResponse:
    directory = html.escape(str(request.app.state.session_dir))
    return HTMLResponse(PAGE.format(content=content, directory=directory, report=REPORT_PLACEHOLDER))


async def home(request: Request) -> Response:
    session = request.session
    session["views"] = session.get("views", 0) + 1  # a write on every view
    user = session.get("user")
    if user:
        greeting = f"Hello, {html.escape(user)}."
        action, login = "/logout", '<button id="logout">Log out</button>'
    else:
        greeting = "You are not logged in."
        action, login = (
            "/login",
            '<input id="user" name="user" placeholder="your name" required> '
            '<button id="login">Log in</button>',
        )
    content = HOME.format(
        greeting=greeting, views=session["views"], action=action, login=login, cart=_cart_html(cart_items())
    )
    return _page(request, content)


async def cart(request: Request) -> Response:
    # .get, not cart_items(): setdefault would add an empty cart, a change to save.
    return _page(request, CART.format(cart=_cart_html(request.session.get("cart", []))))


async def login(request: Request) -> Response:
    form = await request.form()
    name = str(form.get("user", ""))[:64]
    regenerate_session()  # a new session id at login, against session fixation
    request.session["user"] = name
    # The middleware's user_key: "Alice" and "alice" are one user, with one list of sessions.
    request.session["user_id"] = name.strip().casefold()
    return RedirectResponse("/", status_code=303)


async def logout(request: Request) -> Response:
    request.session.clear()  # deletes the server-side record and the cookie
    return RedirectResponse("/", status_code=303)


async def add_to_cart(request: Request) -> Response:
    form = await request.form()
    # A change inside a nested value is saved without marking the session modified.
    cart_items().append(str(form.get("item", ""))[:64])
    return RedirectResponse("/cart", status_code=303)


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _device_row(info: SessionInfo) -> str:
    if info.current:
        action = '<b class="this-device">this device</b>'
    else:
        # The whole handle only here, as the value the form posts back.
        action = (
            '<form method="post" action="/sessions/revoke">'
            f'<input type="hidden" name="handle" value="{html.escape(info.handle)}">'
            '<button class="sign-out">Sign out</button></form>'
        )
    cells = [
        html.escape(info.user_agent or "unknown device"),
        html.escape(info.ip or "unknown"),
        _when(info.created_at),
        _when(info.last_seen_at),
        f"<code>{html.escape(shorten(info.handle))}</code>",
        action,
    ]
    row_class = "device current" if info.current else "device"
    return f'<tr class="{row_class}">' + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


async def where_signed_in(request: Request) -> Response:
    user = request.session.get("user")
    if not user or "user_id" not in request.session:  # logged out, or logged in by an older demo
        return _page(request, SIGNED_OUT)
    infos = await list_sessions()
    notice = ""
    signed_out = request.query_params.get("signed_out", "")
    if signed_out.isdigit():
        notice = f'<p id="notice">Signed out of {int(signed_out)} other session(s).</p>'
    others = ""
    if any(not info.current for info in infos):
        others = (
            '<form method="post" action="/sessions/others">'
            '<button id="sign-out-others">Sign out all other devices</button></form>'
        )
    rows = "".join(_device_row(info) for info in infos)
    content = SESSIONS.format(notice=notice, user=html.escape(user), rows=rows, others=others)
    return _page(request, content)


async def sign_out_device(request: Request) -> Response:
    form = await request.form()
    handle = str(form.get("handle", ""))
    # Only another session of this user: a handle is no credential, but it is not a licence either.
    others = {info.handle for info in await list_sessions() if not info.current}
    if handle not in others:
        content = '<p id="no-such-session">No such session on another of your devices.</p>'
        response = _page(request, content)
        response.status_code = 404
        return response
    backend: SessionBackend = request.app.state.backend
    revoked = await backend.revoke_session(handle)
    return RedirectResponse(f"/sessions?signed_out={int(revoked)}", status_code=303)


async def sign_out_others(request: Request) -> Response:
    revoked = await logout_other_sessions()
    return RedirectResponse(f"/sessions?signed_out={revoked}", status_code=303)


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


def create_app(
    data_dir: Path | None = None, *, secret_key: str | None = None, session_dir: Path | None = None
) -> Starlette:
    """Build the demo app; what is not given comes from the environment (see the module's doc).

    Args:
        data_dir: the demo's data folder (``DEMO_DATA_DIR``, else ``.demo-data``).
        secret_key: the signing key (``SECRET_KEY``, else the one kept in ``data_dir``).
        session_dir: where the session files live (``SESSION_DIR``, else ``data_dir/sessions``).

    Returns:
        The app; its ``state.backend`` is the recording backend, ``state.session_dir`` the folder.
    """
    data_dir = data_dir or Path(os.environ.get("DEMO_DATA_DIR") or DEFAULT_DATA_DIR)
    secret_key = secret_key or os.environ.get("SECRET_KEY") or load_secret(data_dir)
    session_dir = session_dir or Path(os.environ.get("SESSION_DIR") or data_dir / "sessions")
    backend = RecordingBackend(FileBackend(session_dir))
    app = Starlette(
        routes=[
            Route("/", home),
            Route("/cart", cart),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/cart", add_to_cart, methods=["POST"]),
            Route("/sessions", where_signed_in),
            Route("/sessions/revoke", sign_out_device, methods=["POST"]),
            Route("/sessions/others", sign_out_others, methods=["POST"]),
            Route("/health", health),
        ],
        middleware=[
            Middleware(ReportMiddleware, backend=backend, reports=KeptReports()),
            Middleware(
                SessionMiddleware,
                secret_key=secret_key,
                session_cookie=SESSION_COOKIE,
                backend=backend,
                user_key="user_id",
                track_client=True,
            ),
        ],
    )
    app.state.backend = backend
    app.state.session_dir = session_dir
    return app


app = create_app()
