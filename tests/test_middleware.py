"""SessionMiddleware behaviour: ids, change detection, helpers, regeneration, scopes, options, errors."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import itsdangerous
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from starlette_session import (
    BackendError,
    ConfigurationError,
    ISessionBackend,
    Session,
    SessionMiddleware,
    SessionNotAvailableError,
    StarletteSessionError,
    get_session,
    regenerate_session,
    session_exempt,
)
from starlette_session.backends import BackendType
from starlette_session.backends.memory import MemoryBackend
from tests.helpers import (
    CLEARED,
    SECRET,
    RecordingBackend,
    cookie_pair,
    cookie_value,
    demo_routes,
    make_app,
    only_set_cookie,
    read,
    request,
    set_cookies,
    sign_json,
    unsign_json,
    websocket_headers,
    websocket_json,
    websocket_messages,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

pytestmark = pytest.mark.anyio

BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def session_id_of(set_cookie: str) -> str:
    session_id = unsign_json(cookie_value(set_cookie))["_cssid"]
    assert isinstance(session_id, str)
    return session_id


@pytest.fixture(params=["cookie", "memory"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def app_for(kind: str, **options: Any) -> Starlette:
    if kind == "memory":
        options.setdefault("backend", RecordingBackend())
    return make_app(**options)


# -- server-side ids -----------------------------------------------------------------------


@pytest.mark.parametrize(("nbytes", "length"), [(32, 43), (16, 22), (48, 64)])
async def test_session_ids_are_base64url_of_the_configured_size(nbytes: int, length: int) -> None:
    backend = RecordingBackend()
    app = make_app(backend=backend, session_id_bytes=nbytes)
    ids = set()
    for _ in range(5):
        session_id = session_id_of(only_set_cookie(await request(app, "/write?a=1")))
        assert len(session_id) == length
        assert BASE64URL.fullmatch(session_id)
        assert session_id in backend.records
        ids.add(session_id)
    assert len(ids) == 5


async def test_default_session_id_is_32_bytes() -> None:
    set_cookie = only_set_cookie(await request(make_app(backend=MemoryBackend()), "/write?a=1"))
    assert len(session_id_of(set_cookie)) == 43


@pytest.mark.parametrize("nbytes", [0, 8, 15])
def test_session_ids_shorter_than_16_bytes_are_refused(nbytes: int) -> None:
    with pytest.raises(ConfigurationError, match="session_id_bytes"):
        SessionMiddleware(Starlette(), SECRET, backend=MemoryBackend(), session_id_bytes=nbytes)


async def test_unknown_id_gives_an_empty_session_and_is_never_adopted() -> None:
    backend = RecordingBackend()
    app = make_app(backend=backend)
    planted = "A" * 43
    cookie = f"session={sign_json({'_cssid': planted})}"

    response = await request(app, "/read", cookie=cookie)
    assert response.json() == {}
    assert backend.reads == [planted]

    written = await request(app, "/write?user=alice", cookie=cookie)
    new_id = session_id_of(only_set_cookie(written))
    assert new_id != planted
    assert planted not in backend.records
    assert [write[0] for write in backend.writes] == [new_id]


async def test_clearing_deletes_the_record_and_the_cookie() -> None:
    backend = RecordingBackend()
    app = make_app(backend=backend)
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    session_id = session_id_of(cookie)

    cleared = await request(app, "/clear", cookie=cookie)
    assert only_set_cookie(cleared) == f"session=null; path=/; {CLEARED}; httponly; samesite=lax"
    assert backend.records == {}
    assert backend.removes == [session_id]
    assert (await request(app, "/read", cookie=cookie)).json() == {}


async def test_reads_never_write() -> None:
    backend = RecordingBackend()
    app = make_app(backend=backend)
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    await request(app, "/cart-init", cookie=cookie)
    assert len(backend.writes) == 2

    for path in ("/read", "/noop", "/read", "/has-session"):
        response = await request(app, path, cookie=cookie)
        assert response.status_code == 200
        assert set_cookies(response) == []
    assert len(backend.writes) == 2
    assert backend.removes == []
    assert backend.touches == []


async def test_no_session_no_store_traffic() -> None:
    backend = RecordingBackend()
    app = make_app(backend=backend)
    for path in ("/read", "/noop", "/clear"):
        response = await request(app, path)
        assert set_cookies(response) == []
    assert (backend.reads, backend.writes, backend.removes) == ([], [], [])


async def test_nested_mutation_is_saved(backend_kind: str) -> None:
    app = app_for(backend_kind)
    cookie = cookie_pair(only_set_cookie(await request(app, "/cart-init")))
    for item in ("apple", "pear"):
        response = await request(app, f"/cart-add?item={item}", cookie=cookie)
        # A cookie session is a new cookie per change; a server-side one keeps its cookie.
        set_cookie = only_set_cookie(response)
        if backend_kind == "memory":
            assert cookie_pair(set_cookie) == cookie
        cookie = cookie_pair(set_cookie)
    assert (await request(app, "/read", cookie=cookie)).json() == {"cart": ["apple", "pear"]}


async def test_get_session_inside_endpoints(backend_kind: str) -> None:
    app = app_for(backend_kind)
    response = await request(app, "/helper")
    assert response.json() == {"helper": "yes"}
    cookie = cookie_pair(only_set_cookie(response))
    response = await request(app, "/helper-sync", cookie=cookie)
    assert response.json() == {"helper": "yes", "sync": "yes"}
    cookie = cookie_pair(only_set_cookie(response))
    assert (await request(app, "/read", cookie=cookie)).json() == {"helper": "yes", "sync": "yes"}


def current_user() -> str | None:
    """A helper function far from the request object."""
    user = get_session().get("user")
    return None if user is None else str(user)


async def test_get_session_in_a_helper_function() -> None:
    async def whoami(request: Request) -> Response:
        return PlainTextResponse(current_user() or "anonymous")

    app = make_app([*demo_routes(), Route("/whoami", whoami)])
    assert (await request(app, "/whoami")).text == "anonymous"
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    response = await request(app, "/whoami", cookie=cookie)
    assert response.text == "alice"
    assert response.headers["vary"] == "Cookie"


async def test_get_session_outside_a_request_raises_lookup_error() -> None:
    with pytest.raises(LookupError):
        get_session()
    with pytest.raises(LookupError):
        regenerate_session()
    await request(make_app(), "/helper")
    with pytest.raises(LookupError):
        get_session()


@pytest.mark.parametrize("function", [get_session, regenerate_session])
def test_outside_a_request_the_error_says_what_to_do(function: Any) -> None:
    with pytest.raises(SessionNotAvailableError) as caught:
        function()
    assert isinstance(caught.value, LookupError)
    assert isinstance(caught.value, StarletteSessionError)
    message = str(caught.value)
    assert message.startswith(f"{function.__name__}() found no session: no SessionMiddleware handled this")
    assert "add_middleware(SessionMiddleware" in message
    assert "exclude=" in message


async def test_get_session_on_an_excluded_path_raises_the_explaining_error() -> None:
    async def helper(request: Request) -> Response:
        try:
            get_session()
        except SessionNotAvailableError as exc:
            return PlainTextResponse(str(exc))
        return PlainTextResponse("found")

    app = make_app([Route("/public/helper", helper)], exclude=["/public"])
    response = await request(app, "/public/helper")
    assert "no SessionMiddleware handled this request" in response.text


def user_dependency() -> str | None:
    """A sync FastAPI dependency: runs in a worker thread, where get_session() must still work."""
    return current_user()


def fastapi_app() -> FastAPI:
    # Imported here: each Starlette version needs its own FastAPI, and a mismatch should fail
    # this test only. Dependencies are defaults, not Annotated, for the same reason (the
    # postponed annotations are resolved from this module's globals).
    from fastapi import Depends, FastAPI  # noqa: PLC0415

    app = FastAPI()
    app.add_middleware(SessionMiddleware, secret_key=SECRET, backend=MemoryBackend())

    @app.post("/login/{name}")
    async def login(name: str, session: Session = Depends(get_session)) -> dict[str, Any]:  # noqa: B008
        regenerate_session()
        session["user"] = name
        return dict(session)

    @app.post("/cart/{item}")
    async def add(item: str, session: Session = Depends(get_session)) -> dict[str, Any]:  # noqa: B008
        session.setdefault("cart", []).append(item)
        return dict(session)

    @app.get("/me")
    async def me(user: str | None = Depends(user_dependency)) -> dict[str, Any]:
        return {"user": user, "cart": get_session().get("cart", [])}

    return app


async def test_fastapi_dependencies() -> None:
    app = fastapi_app()
    response = await request(app, "/login/alice", method="POST")
    assert response.json() == {"user": "alice"}
    cookie = cookie_pair(only_set_cookie(response))
    for item in ("a", "b"):
        response = await request(app, f"/cart/{item}", method="POST", cookie=cookie)
        assert cookie_pair(only_set_cookie(response)) == cookie
    response = await request(app, "/me", cookie=cookie)
    assert response.json() == {"user": "alice", "cart": ["a", "b"]}
    assert set_cookies(response) == []
    assert (await request(app, "/me")).json() == {"user": None, "cart": []}


# -- regenerate_session --------------------------------------------------------------------


async def test_regenerate_keeps_data_moves_id_and_deletes_old_record() -> None:
    backend = RecordingBackend()
    app = make_app(backend=backend)
    old_cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    old_id = session_id_of(old_cookie)

    response = await request(app, "/regenerate", cookie=old_cookie)
    assert response.json() == {"user": "alice"}
    new_cookie = cookie_pair(only_set_cookie(response))
    new_id = session_id_of(new_cookie)
    assert new_id != old_id
    assert set(backend.records) == {new_id}
    assert old_id in backend.removes

    assert (await request(app, "/read", cookie=new_cookie)).json() == {"user": "alice"}
    # Replaying the old cookie gets nothing, and a write through it gets yet another id.
    assert (await request(app, "/read", cookie=old_cookie)).json() == {}
    replay = await request(app, "/write?evil=1", cookie=old_cookie)
    assert session_id_of(only_set_cookie(replay)) not in (old_id, new_id)
    assert (await request(app, "/read", cookie=new_cookie)).json() == {"user": "alice"}


async def test_regenerate_clear_empties_the_session() -> None:
    backend = RecordingBackend()
    app = make_app(backend=backend)
    old_cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    old_id = session_id_of(old_cookie)

    # clear=True then new data: a new id holding only the new data.
    response = await request(app, "/regenerate?clear=1&user=bob", cookie=old_cookie)
    assert response.json() == {"user": "bob"}
    new_id = session_id_of(only_set_cookie(response))
    assert new_id != old_id
    assert backend.records.keys() == {new_id}

    # clear=True and nothing else: the record goes and the cookie is cleared.
    response = await request(app, "/regenerate?clear=1", cookie=cookie_pair(only_set_cookie(response)))
    assert response.json() == {}
    assert only_set_cookie(response).startswith("session=null; ")
    assert backend.records == {}


async def test_regenerate_with_cookie_sessions_issues_a_new_cookie() -> None:
    app = make_app()
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    response = await request(app, "/regenerate", cookie=cookie)
    assert unsign_json(cookie_value(only_set_cookie(response))) == {"user": "alice"}
    response = await request(app, "/regenerate?clear=1", cookie=cookie)
    assert only_set_cookie(response).startswith("session=null; ")


# -- WebSocket, exclusions, scopes ---------------------------------------------------------


async def test_websocket_reads_the_session(backend_kind: str) -> None:
    app = app_for(backend_kind)
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    messages = await websocket_messages(app, "/ws", cookie=cookie)
    assert websocket_json(messages) == {"session": {"user": "alice"}, "helper": {"user": "alice"}}
    # Read only: no Set-Cookie on the accept.
    assert (b"set-cookie", cookie.encode()) not in websocket_headers(messages)
    assert not [name for name, _ in websocket_headers(messages) if name == b"set-cookie"]


async def test_websocket_without_cookie_has_an_empty_session() -> None:
    messages = await websocket_messages(make_app(), "/ws")
    assert websocket_json(messages) == {"session": {}, "helper": {}}


async def test_scopes_http_only_leaves_websockets_alone() -> None:
    app = make_app(scopes=("http",))
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    messages = await websocket_messages(app, "/ws", cookie=cookie)
    assert websocket_json(messages) == {"session": None}


@pytest.mark.parametrize("scopes", [(), ("lifespan",), ("http", "https")])
def test_invalid_scopes_are_refused(scopes: Any) -> None:
    with pytest.raises(ConfigurationError, match="scopes"):
        SessionMiddleware(Starlette(), SECRET, scopes=scopes)


async def test_exclude_skips_matching_paths(backend_kind: str) -> None:
    async def static(request: Request) -> Response:
        return JSONResponse({"has_session": "session" in request.scope})

    routes = [*demo_routes(), Route("/static/{name}", static), Route("/static", static)]
    app = app_for(backend_kind, routes=routes, exclude=[r"/static"])
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    for path in ("/static", "/static/app.js"):
        response = await request(app, path, cookie=cookie)
        assert response.json() == {"has_session": False}
        assert set_cookies(response) == []
        assert "vary" not in response.headers
    # Only paths that start with the pattern.
    assert (await request(app, "/has-session")).json() == {"has_session": True}


def test_invalid_exclude_pattern_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="exclude"):
        SessionMiddleware(Starlette(), SECRET, exclude=["("])


@session_exempt
async def health(request: Request) -> Response:
    return JSONResponse({"has_session": "session" in request.scope})


@session_exempt
async def ws_exempt(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"has_session": "session" in websocket.scope})
    await websocket.close()


async def test_session_exempt_endpoints_are_skipped() -> None:
    routes = [*demo_routes(), Route("/health", health), WebSocketRoute("/ws-exempt", ws_exempt)]
    app = make_app(routes)
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    response = await request(app, "/health", cookie=cookie)
    assert response.json() == {"has_session": False}
    assert set_cookies(response) == []
    assert websocket_json(await websocket_messages(app, "/ws-exempt", cookie=cookie)) == {
        "has_session": False
    }
    # Other routes keep their sessions.
    assert (await request(app, "/read", cookie=cookie)).json() == {"user": "alice"}


async def test_session_exempt_when_the_middleware_wraps_the_app() -> None:
    # ``app = SessionMiddleware(app, ...)``: the middleware runs before Starlette sets scope["app"].
    inner = Starlette(routes=[*demo_routes(), Route("/health", health)])
    app = SessionMiddleware(inner, SECRET)
    assert (await request(app, "/health")).json() == {"has_session": False}
    assert (await request(app, "/has-session")).json() == {"has_session": True}


# -- cookie options ------------------------------------------------------------------------


async def test_httponly_false_drops_the_flag(backend_kind: str) -> None:
    app = app_for(backend_kind, httponly=False)
    set_cookie = only_set_cookie(await request(app, "/write?a=1"))
    assert "httponly" not in set_cookie.lower()
    assert set_cookie.endswith("; path=/; Max-Age=1209600; samesite=lax")
    cleared = only_set_cookie(await request(app, "/clear", cookie=cookie_pair(set_cookie)))
    assert cleared == f"session=null; path=/; {CLEARED}; samesite=lax"


async def test_httponly_is_on_by_default(backend_kind: str) -> None:
    set_cookie = only_set_cookie(await request(app_for(backend_kind), "/write?a=1"))
    assert set_cookie.endswith("; path=/; Max-Age=1209600; httponly; samesite=lax")


async def test_rolling_renews_the_cookie_on_a_read_memory() -> None:
    backend = RecordingBackend()
    app = make_app(backend=backend, rolling=True, max_age=600)
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    session_id = session_id_of(cookie)

    response = await request(app, "/read", cookie=cookie)
    assert response.json() == {"user": "alice"}
    assert cookie_pair(only_set_cookie(response)) == cookie
    assert "Max-Age=600" in only_set_cookie(response)
    assert backend.touches == [(session_id, 600)]
    assert len(backend.writes) == 1

    # No session, nothing to renew.
    response = await request(app, "/read")
    assert set_cookies(response) == []


async def test_rolling_renews_the_cookie_on_a_read_cookie(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(rolling=True)
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    later = itsdangerous.TimestampSigner(SECRET).get_timestamp() + 3600
    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda self: later)

    response = await request(app, "/read", cookie=cookie)
    renewed = cookie_value(only_set_cookie(response))
    assert renewed != cookie.split("=", 1)[1]
    _, timestamp = itsdangerous.TimestampSigner(SECRET).unsign(renewed, return_timestamp=True)
    assert int(timestamp.timestamp()) == later
    assert unsign_json(renewed) == {"user": "alice"}


async def test_without_rolling_a_read_sends_no_cookie(backend_kind: str) -> None:
    app = app_for(backend_kind)
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    assert set_cookies(await request(app, "/read", cookie=cookie)) == []


# -- secret key rotation -------------------------------------------------------------------


async def test_secret_key_rotation(backend_kind: str) -> None:
    old, new = "old-secret-key-xxxxxxxx", "new-secret-key-yyyyyyyy"
    backend = RecordingBackend()  # shared by the three deployments below (memory only)

    def deploy(secret_key: str | list[str]) -> Starlette:
        if backend_kind == "memory":
            return make_app(secret_key=secret_key, backend=backend)
        return make_app(secret_key=secret_key)

    old_cookie = cookie_pair(only_set_cookie(await request(deploy(old), "/write?user=alice")))

    app = deploy([new, old])
    assert (await request(app, "/read", cookie=old_cookie)).json() == {"user": "alice"}

    response = await request(app, "/write?role=admin", cookie=old_cookie)
    value = cookie_value(only_set_cookie(response))
    assert unsign_json(value, secret=new)  # the first key signs
    with pytest.raises(itsdangerous.BadSignature):
        unsign_json(value, secret=old)
    expected = {"user": "alice", "role": "admin"}
    assert (await request(app, "/read", cookie=f"session={value}")).json() == expected

    # Once the old key is dropped, its cookies stop verifying; the new ones still do.
    assert (await request(deploy(new), "/read", cookie=old_cookie)).json() == {}
    assert (await request(deploy(new), "/read", cookie=f"session={value}")).json() == expected


async def test_custom_session_backend_that_is_empty_is_used() -> None:
    # MemoryBackend has __len__, so a new one is falsy: it must still be the store.
    backend = RecordingBackend()
    app = make_app(custom_session_backend=backend)
    response = await request(app, "/write?user=alice")
    session_id = session_id_of(only_set_cookie(response))
    assert backend.records.keys() == {session_id}


# -- configuration errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"same_site": "sideways"}, id="same_site"),
        pytest.param({"same_site": ""}, id="same_site-empty"),
        pytest.param({"session_cookie": "a;b"}, id="name-semicolon"),
        pytest.param({"session_cookie": "a b"}, id="name-space"),
        pytest.param({"session_cookie": "a=b"}, id="name-equals"),
        pytest.param({"cookie_name": "bad name"}, id="cookie_name-space"),
        pytest.param({"domain": "example.com; secure"}, id="domain-semicolon"),
        pytest.param({"domain": "exa mple.com"}, id="domain-space"),
        pytest.param({"path": "sub"}, id="path-no-slash"),
        pytest.param({"path": "/a;b"}, id="path-semicolon"),
        pytest.param({"path": "/a\r\nSet-Cookie: x=y"}, id="path-crlf"),
        pytest.param({"path": ""}, id="path-empty"),
        pytest.param({"max_age": "60"}, id="max_age-text"),
        pytest.param({"max_age": 1.5}, id="max_age-float"),
        pytest.param({"secret_key": ""}, id="secret-empty"),
        pytest.param({"secret_key": b""}, id="secret-empty-bytes"),
        pytest.param({"secret_key": []}, id="secret-empty-list"),
        pytest.param({"secret_key": ["ok-key", ""]}, id="secret-list-with-empty"),
        pytest.param({"backend_type": BackendType.redis, "backend_client": None}, id="redis-without-client"),
        pytest.param(
            {"backend_type": BackendType.memory, "custom_session_backend": MemoryBackend()},
            id="custom-and-type",
        ),
        pytest.param(
            {"backend_client": object(), "custom_session_backend": MemoryBackend()},
            id="custom-and-client",
        ),
        pytest.param(
            {"custom_session_backend": MemoryBackend(), "backend": MemoryBackend()},
            id="custom-and-backend-alias",
        ),
        pytest.param({"backend_client": object()}, id="unknown-client"),
        pytest.param({"custom_session_backend": object()}, id="custom-not-a-backend"),
        pytest.param({"fallback_ttl": 0}, id="fallback_ttl-zero"),
    ],
)
def test_configuration_errors(options: dict[str, Any]) -> None:
    options.setdefault("secret_key", SECRET)
    with pytest.raises(ConfigurationError):
        SessionMiddleware(Starlette(), **options)


# starlette-session 0.4.3: (app, secret_key, cookie_name, max_age, same_site, https_only, domain, ...);
# Starlette and this package: (app, secret_key, session_cookie, max_age, path, same_site, ...).


@pytest.mark.parametrize("same_site", ["strict", "none", "lax", "Strict"])
async def test_same_site_by_position_as_in_043_is_understood(same_site: str) -> None:
    middleware = SessionMiddleware(Starlette(routes=demo_routes()), SECRET, "sid", 3600, same_site)
    assert middleware.cookie.same_site == same_site
    assert middleware.cookie.path == "/"
    response = await request(middleware, "/write?user=alice")
    assert only_set_cookie(response).endswith(f"; path=/; Max-Age=3600; httponly; samesite={same_site}")


@pytest.mark.parametrize(
    ("args", "options"),
    [
        pytest.param(("strict", True), {}, id="https_only-by-position"),
        pytest.param(("strict",), {"https_only": True}, id="https_only-by-keyword"),
        pytest.param(("strict",), {"same_site": "none"}, id="same_site-twice"),
        pytest.param(("none", "lax", False, "example.com"), {}, id="domain-shifted"),
        pytest.param(("lax",), {"partitioned": True}, id="partitioned"),
    ],
)
def test_same_site_by_position_with_more_after_it_is_refused(
    args: tuple[Any, ...], options: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError, match=r"by keyword, same_site='(strict|none|lax)'") as caught:
        SessionMiddleware(Starlette(), SECRET, "session", 3600, *args, **options)
    assert "0.4.3" in str(caught.value)


def test_a_real_path_by_position_is_still_the_path() -> None:
    middleware = SessionMiddleware(Starlette(), SECRET, "session", 3600, "/strict", "strict")
    assert (middleware.cookie.path, middleware.cookie.same_site) == ("/strict", "strict")


@pytest.mark.parametrize("backend_type", [BackendType.redis, BackendType.aioRedis, "redis"])
def test_backend_type_that_needs_a_client_without_one(backend_type: BackendType | str) -> None:
    with pytest.raises(ConfigurationError, match="backend_client"):
        SessionMiddleware(Starlette(), SECRET, backend_type=backend_type, backend_client=None)


# -- store failures ------------------------------------------------------------------------


class FlakyBackend(ISessionBackend):
    """A 0.4.3-style backend whose store can be taken down."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.down = False
        self.sets = 0

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("connection refused")

    async def get(self, key: str) -> dict[str, Any] | None:
        self._check()
        return self.data.get(key)

    async def set(self, key: str, value: dict[str, Any], exp: int | None) -> str | None:
        self._check()
        self.sets += 1
        self.data[key] = value
        return None

    async def delete(self, key: str) -> Any:
        self._check()
        return self.data.pop(key, None)


async def test_store_down_on_read_answers_503_and_keeps_the_data() -> None:
    backend = FlakyBackend()
    app = make_app(backend=backend, breaker_threshold=0)
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))
    saved = dict(backend.data)

    backend.down = True
    for path in ("/read", "/write?user=mallory", "/clear"):
        response = await request(app, path, cookie=cookie)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "set-cookie" not in response.headers
        assert "session store" in response.text
    backend.down = False

    assert backend.data == saved
    assert backend.sets == 1
    assert (await request(app, "/read", cookie=cookie)).json() == {"user": "alice"}


async def test_store_down_on_write_answers_503_instead_of_the_app() -> None:
    backend = FlakyBackend()
    app = make_app(backend=backend, breaker_threshold=0)
    cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))

    original_set = backend.set

    async def failing_set(key: str, value: dict[str, Any], exp: int | None) -> str | None:
        raise ConnectionError("connection reset")

    backend.set = failing_set  # type: ignore[method-assign]
    response = await request(app, "/write?user=bob", cookie=cookie)
    assert response.status_code == 503
    assert "set-cookie" not in response.headers
    assert "bob" not in response.text  # the app's own body was replaced
    backend.set = original_set  # type: ignore[method-assign]
    assert (await request(app, "/read", cookie=cookie)).json() == {"user": "alice"}


async def test_shipped_backend_errors_answer_503() -> None:
    class DownBackend(MemoryBackend):
        async def read(self, session_id: str) -> bytes | None:
            raise BackendError("store unreachable")

    app = make_app(backend=DownBackend())
    response = await request(app, "/read", cookie=f"session={sign_json({'_cssid': 'A' * 43})}")
    assert response.status_code == 503
    # No valid cookie: the store is not asked, so its outage does not matter.
    assert (await request(app, "/read")).json() == {}


async def test_a_plain_dict_put_in_the_scope_is_saved() -> None:
    async def replace(request: Request) -> Response:
        request.scope["session"] = {"user": "replaced"}
        return PlainTextResponse("ok")

    app = make_app([Route("/replace", replace), Route("/read", read)], backend=MemoryBackend())
    cookie = cookie_pair(only_set_cookie(await request(app, "/replace")))
    assert (await request(app, "/read", cookie=cookie)).json() == {"user": "replaced"}


async def test_session_is_a_session_object_in_the_scope() -> None:
    async def kind(request: Request) -> Response:
        return PlainTextResponse(type(request.scope["session"]).__name__)

    assert (await request(make_app([Route("/kind", kind)]), "/kind")).text == "Session"
