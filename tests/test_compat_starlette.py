"""Side by side with ``starlette.middleware.sessions.SessionMiddleware``: the same bytes on the wire.

Both middlewares wrap the same routes with the same configuration; time is frozen so that the
itsdangerous timestamps (and so the signatures) match, and the responses are compared header
for header.

Starlette 1.x tracks access and changes (``Session.accessed``/``modified``): it sends
Set-Cookie only when the session changed and ``Vary: Cookie`` when it was read. Older
Starlette (< 1.0, no ``starlette.middleware.sessions.Session``) sends Set-Cookie on every
response with a non-empty session and never ``Vary: Cookie``. This package follows 1.x on
every Starlette, so with an older Starlette the expectations below branch on
``STARLETTE_TRACKS_CHANGES``: written and cleared cookies are still byte-identical, and only
the re-sent cookie and the Vary header differ, as documented.
"""

from __future__ import annotations

import inspect
import json
from base64 import b64encode
from typing import Any

import httpx
import itsdangerous
import pytest
import starlette.middleware.sessions as starlette_sessions
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from starlette_session import Session, SessionMiddleware
from starlette_session.backends.memory import MemoryBackend
from tests.helpers import (
    CLEARED,
    SECRET,
    cookie_pair,
    demo_routes,
    request,
    set_cookies,
    sign,
    sign_json,
)

pytestmark = pytest.mark.anyio

StarletteSessionMiddleware = starlette_sessions.SessionMiddleware

#: Starlette >= 1.0: Set-Cookie only on change, ``Vary: Cookie`` on access.
STARLETTE_TRACKS_CHANGES = hasattr(starlette_sessions, "Session")
#: Starlette < 1.0 writes ``if self.max_age``, so ``max_age=0`` gives no Max-Age at all (a
#: browser-session cookie); 1.x, and this package, send ``Max-Age=0``.
STARLETTE_SENDS_MAX_AGE_0 = "self.max_age is not None" in inspect.getsource(StarletteSessionMiddleware)
STARLETTE_HAS_PARTITIONED = "partitioned" in inspect.signature(StarletteSessionMiddleware.__init__).parameters

FROZEN = 1_750_000_000


@pytest.fixture(autouse=True)
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Freeze itsdangerous' clock (it signs and checks ages with ``get_timestamp``)."""
    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda self: FROZEN)


async def vary_read(request: Request) -> Response:
    response = JSONResponse(dict(request.session))
    response.headers["Vary"] = "Accept-Encoding"
    return response


async def pop_missing(request: Request) -> Response:
    return JSONResponse({"popped": request.session.pop("missing", None)})


async def update_empty(request: Request) -> Response:
    request.session.update({})
    return JSONResponse(dict(request.session))


def routes() -> list[BaseRoute]:
    return [
        *demo_routes(),
        Route("/vary-read", vary_read),
        Route("/pop-missing", pop_missing),
        Route("/update-empty", update_empty),
    ]


CONFIGURATIONS: list[dict[str, Any]] = [
    {},
    {"max_age": None},
    {"max_age": 0},
    {"max_age": 3600},
    {"path": "/sub"},
    {"same_site": "strict"},
    {"same_site": "none", "https_only": True},
    {"https_only": True},
    {"domain": "example.com"},
    {"session_cookie": "sid"},
    {"partitioned": True, "same_site": "none", "https_only": True},
    {
        "session_cookie": "app",
        "max_age": 60,
        "path": "/app",
        "same_site": "strict",
        "https_only": True,
        "domain": ".example.org",
    },
]


def config_id(config: dict[str, Any]) -> str:
    return ",".join(f"{key}={value}" for key, value in config.items()) or "default"


def pair(config: dict[str, Any]) -> tuple[Starlette, Starlette]:
    """Return (Starlette's middleware, ours) around the same routes and configuration."""
    their_config = dict(config)
    if not STARLETTE_HAS_PARTITIONED:
        # Older Starlette has no such parameter: compare with its cookie plus "; partitioned".
        their_config.pop("partitioned", None)
    # The secret by keyword: Starlette 0.40 builds middleware as ``cls(app=app, *args)``, so a
    # positional argument would collide with ``app``.
    theirs = Starlette(
        routes=routes(),
        middleware=[Middleware(StarletteSessionMiddleware, secret_key=SECRET, **their_config)],
    )
    ours = Starlette(routes=routes(), middleware=[Middleware(SessionMiddleware, secret_key=SECRET, **config)])
    return theirs, ours


def name_of(config: dict[str, Any]) -> str:
    return str(config.get("session_cookie", "session"))


async def both(
    apps: tuple[Starlette, Starlette], path: str, cookie: str | None = None
) -> tuple[httpx.Response, httpx.Response]:
    theirs, ours = apps
    return await request(theirs, path, cookie=cookie), await request(ours, path, cookie=cookie)


def expected_cookie(their_value: str, config: dict[str, Any]) -> str:
    """Return Starlette's Set-Cookie value as this package writes it on every Starlette version.

    Identity on current Starlette; on older ones, adds what it lacked: ``Max-Age=0`` for
    ``max_age=0`` and the ``partitioned`` attribute.
    """
    cleared = CLEARED in their_value
    if config.get("max_age") == 0 and not STARLETTE_SENDS_MAX_AGE_0 and not cleared:
        path = f"; path={config.get('path', '/')}; "
        their_value = their_value.replace(path, f"{path}Max-Age=0; ", 1)
    if config.get("partitioned") and not STARLETTE_HAS_PARTITIONED:
        their_value += "; partitioned"
    return their_value


def expected_cookies(theirs: httpx.Response, config: dict[str, Any]) -> list[str]:
    return [expected_cookie(value, config) for value in set_cookies(theirs)]


def assert_same(theirs: httpx.Response, ours: httpx.Response, config: dict[str, Any]) -> None:
    assert ours.status_code == theirs.status_code == 200
    assert ours.content == theirs.content
    expected = [
        (name, expected_cookie(value.decode("latin-1"), config).encode("latin-1"))
        if name == b"set-cookie"
        else (name, value)
        for name, value in theirs.headers.raw
    ]
    assert ours.headers.raw == expected


@pytest.mark.parametrize("config", CONFIGURATIONS, ids=config_id)
async def test_written_cookie_is_byte_identical(config: dict[str, Any]) -> None:
    apps = pair(config)
    theirs, ours = await both(apps, "/write?user=alice&role=admin")
    [set_cookie] = expected_cookies(theirs, config)
    assert set_cookies(ours) == [set_cookie]
    if STARLETTE_TRACKS_CHANGES:
        assert_same(theirs, ours, config)
    # The payload part, checked on its own too: Starlette's JSON, base64, then the signature.
    value = cookie_pair(set_cookie).split("=", 1)[1]
    payload, _, _ = value.partition(".")
    assert payload == b64encode(json.dumps({"user": "alice", "role": "admin"}).encode()).decode()


@pytest.mark.parametrize("config", CONFIGURATIONS, ids=config_id)
async def test_cleared_cookie_is_byte_identical(config: dict[str, Any]) -> None:
    apps = pair(config)
    cookie = f"{name_of(config)}={sign_json({'user': 'alice'})}"
    theirs, ours = await both(apps, "/clear", cookie)
    [cleared] = expected_cookies(theirs, config)
    assert set_cookies(ours) == [cleared]
    assert cleared.startswith(f"{name_of(config)}=null; path={config.get('path', '/')}; {CLEARED}; ")
    if STARLETTE_TRACKS_CHANGES:
        assert_same(theirs, ours, config)


@pytest.mark.parametrize("config", CONFIGURATIONS, ids=config_id)
@pytest.mark.parametrize("path", ["/read", "/noop", "/vary-read", "/pop-missing"])
async def test_no_set_cookie_when_unchanged(config: dict[str, Any], path: str) -> None:
    apps = pair(config)
    cookie = f"{name_of(config)}={sign_json({'user': 'alice'})}"
    theirs, ours = await both(apps, path, cookie)
    assert set_cookies(ours) == []
    assert ours.content == theirs.content
    if STARLETTE_TRACKS_CHANGES:
        assert_same(theirs, ours, config)
    else:
        # Starlette < 1.0 re-sends the cookie of every non-empty session, and never sends Vary.
        assert len(set_cookies(theirs)) == 1


@pytest.mark.parametrize("config", CONFIGURATIONS[:3], ids=config_id)
@pytest.mark.parametrize("path", ["/read", "/noop", "/clear", "/update-empty", "/pop-missing"])
async def test_nothing_sent_for_an_empty_session_without_cookie(config: dict[str, Any], path: str) -> None:
    theirs, ours = await both(pair(config), path)
    assert set_cookies(ours) == set_cookies(theirs) == []
    if STARLETTE_TRACKS_CHANGES:
        assert_same(theirs, ours, config)


@pytest.mark.parametrize(
    ("path", "vary"),
    [
        ("/read", ["Cookie"]),
        ("/write?a=1", ["Cookie"]),
        ("/clear", ["Cookie"]),
        # Starlette 1.x's ``request.session`` marks the access; a pop of a missing key does not.
        ("/pop-missing", ["Cookie"] if STARLETTE_TRACKS_CHANGES else []),
        ("/vary-read", ["Accept-Encoding, Cookie"]),
        ("/noop", []),
    ],
)
async def test_vary_cookie_when_read_or_written(path: str, vary: list[str]) -> None:
    theirs, ours = await both(pair({}), path, f"session={sign_json({'user': 'alice'})}")
    assert ours.headers.get_list("vary") == vary
    if STARLETTE_TRACKS_CHANGES:
        assert theirs.headers.get_list("vary") == vary


async def test_cookies_cross_between_the_two_middlewares() -> None:
    theirs, ours = pair({})

    # Starlette writes, we read and change, Starlette reads our cookie.
    written = await request(theirs, "/write?user=alice")
    read = await request(ours, "/read", cookie=cookie_pair(set_cookies(written)[0]))
    assert read.json() == {"user": "alice"}
    changed = await request(ours, "/write?cart=1", cookie=cookie_pair(set_cookies(written)[0]))
    back = await request(theirs, "/read", cookie=cookie_pair(set_cookies(changed)[0]))
    assert back.json() == {"user": "alice", "cart": "1"}

    # We clear a cookie Starlette wrote; Starlette clears one we wrote.
    cleared = await request(ours, "/clear", cookie=cookie_pair(set_cookies(written)[0]))
    assert set_cookies(cleared)[0].startswith("session=null; ")
    cleared_by_them = await request(theirs, "/clear", cookie=cookie_pair(set_cookies(changed)[0]))
    assert set_cookies(cleared_by_them) == set_cookies(cleared)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(sign(b"not base64!"), id="bad-base64"),
        pytest.param(sign(b"\xff\xfe not utf-8"), id="invalid-utf8-json"),
        pytest.param(sign_json([1, 2]), id="json-list"),
        pytest.param(sign_json("text"), id="json-string"),
        pytest.param(sign_json(7), id="json-number"),
        pytest.param(sign_json(None), id="json-null"),
    ],
)
async def test_bad_cookies_that_break_starlette_give_an_empty_session(value: str) -> None:
    theirs, ours = pair({})
    cookie = f"session={value}"
    their_response = await request(theirs, "/read", cookie=cookie, raise_app_exceptions=False)
    # Starlette itself fails on these (a 500); if a later Starlette copes, it must not load data.
    assert their_response.status_code == 500 or their_response.json() == {}
    response = await request(ours, "/read", cookie=cookie)
    assert response.status_code == 200
    assert response.json() == {}
    assert set_cookies(response) == []
    # The next write starts a fresh, valid session.
    written = await request(ours, "/write?user=bob", cookie=cookie)
    assert set_cookies(written) == set_cookies(await request(theirs, "/write?user=bob"))


async def test_same_secret_as_starlette_secret_object() -> None:
    theirs = Starlette(
        routes=routes(), middleware=[Middleware(StarletteSessionMiddleware, secret_key=Secret(SECRET))]
    )
    ours = Starlette(routes=routes(), middleware=[Middleware(SessionMiddleware, secret_key=Secret(SECRET))])
    their_response, our_response = await both((theirs, ours), "/write?user=alice")
    assert set_cookies(our_response) == set_cookies(their_response)


async def test_negative_max_age_expires_at_once_as_in_starlette() -> None:
    theirs, ours = pair({"max_age": -1})
    their_written, our_written = await both((theirs, ours), "/write?user=alice")
    [set_cookie] = set_cookies(our_written)
    assert set_cookies(their_written) == [set_cookie]
    assert "; Max-Age=-1; " in set_cookie
    # Sent back anyway, the value counts as expired in both middlewares: an empty session.
    their_read, our_read = await both((theirs, ours), "/read", cookie_pair(set_cookie))
    assert our_read.json() == their_read.json() == {}
    # A value signed this very second is expired too: its age (0) is over -1.
    value = sign_json({"user": "alice"})
    assert itsdangerous.TimestampSigner(SECRET).unsign(value)  # only its age makes it invalid
    assert (await request(ours, "/read", cookie=f"session={value}")).json() == {}


async def test_negative_max_age_server_side() -> None:
    backend = MemoryBackend()
    app = Starlette(
        routes=routes(),
        middleware=[Middleware(SessionMiddleware, secret_key=SECRET, max_age=-1, backend=backend)],
    )
    written = await request(app, "/write?user=alice")
    [set_cookie] = set_cookies(written)
    assert "; Max-Age=-1; " in set_cookie
    read = await request(app, "/read", cookie=cookie_pair(set_cookie))
    assert read.json() == {}


async def test_negative_max_age_encrypted() -> None:
    app = Starlette(
        routes=routes(),
        middleware=[Middleware(SessionMiddleware, secret_key=SECRET, max_age=-1, encryption_key=b"k" * 32)],
    )
    [set_cookie] = set_cookies(await request(app, "/write?user=alice"))
    assert "; Max-Age=-1; " in set_cookie
    assert (await request(app, "/read", cookie=cookie_pair(set_cookie))).json() == {}


SESSION_CLASSES: list[type[dict[str, Any]]] = [Session]
if STARLETTE_TRACKS_CHANGES:
    SESSION_CLASSES.append(starlette_sessions.Session)


@pytest.mark.parametrize("session_class", SESSION_CLASSES, ids=lambda cls: cls.__module__)
def test_pop_flags_like_starlette(session_class: type[dict[str, Any]]) -> None:
    missing = session_class({"a": "1"})
    assert missing.pop("missing", None) is None
    assert not missing.modified  # type: ignore[attr-defined]
    assert not missing.accessed  # type: ignore[attr-defined]
    present = session_class({"a": "1"})
    assert present.pop("a") == "1"
    assert present.modified  # type: ignore[attr-defined]
    if session_class is Session:  # as Starlette 1.10 does (its 1.7 sets only ``modified`` on a pop)
        assert present.accessed  # type: ignore[attr-defined]
