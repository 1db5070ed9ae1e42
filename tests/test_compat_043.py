"""starlette-session 0.4.3's API: constructor, import paths, custom backends and its cookies."""

from __future__ import annotations

import importlib
import json
import uuid
from base64 import b64decode
from typing import Any

import itsdangerous
import pytest
from starlette.applications import Starlette

import starlette_session
from starlette_session import SessionMiddleware, UnknownPredefinedBackend
from starlette_session.backends import BackendType, MemcacheJSONSerde
from starlette_session.exceptions import ConfigurationError
from starlette_session.interfaces import ISessionBackend
from tests.helpers import (
    SECRET,
    cookie_pair,
    cookie_value,
    demo_routes,
    make_app,
    only_set_cookie,
    request,
    set_cookies,
    sign_json,
    unsign_json,
)

pytestmark = pytest.mark.anyio


class MyCustomBackend(ISessionBackend):
    """A user's backend, as written for 0.4.3: dicts in, dicts out, ``None`` when missing."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.expiries: dict[str, int | None] = {}

    async def get(self, key: str) -> dict[str, Any] | None:
        return self.data.get(key)

    async def set(self, key: str, value: dict[str, Any], exp: int | None) -> str | None:
        self.data[key] = value
        self.expiries[key] = exp
        return key

    async def delete(self, key: str) -> Any:
        return self.data.pop(key, None) is not None


# -- imports -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("starlette_session", "SessionMiddleware"),
        ("starlette_session", "UnknownPredefinedBackend"),
        ("starlette_session.backends", "BackendType"),
        ("starlette_session.backends", "MemcacheJSONSerde"),
        ("starlette_session.interfaces", "ISessionBackend"),
    ],
)
def test_import_paths_of_043(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name)


def test_backend_type_members_of_043() -> None:
    for member in ("redis", "aioRedis", "cookie", "memcache", "aioMemcache"):
        assert BackendType[member].value == member


def test_unknown_predefined_backend_is_a_configuration_error() -> None:
    assert issubclass(UnknownPredefinedBackend, Exception)
    assert issubclass(UnknownPredefinedBackend, ConfigurationError)
    with pytest.raises(UnknownPredefinedBackend, match="nosuchstore"):
        SessionMiddleware(Starlette(), SECRET, cookie_name="c", backend_type="nosuchstore")


def test_memcache_json_serde_round_trip() -> None:
    serde = MemcacheJSONSerde()
    assert serde.serialize("k", "text") == ("text", 1)
    value, flags = serde.serialize("k", {"a": [1, 2]})
    assert flags == 2
    assert serde.deserialize("k", value, flags) == {"a": [1, 2]}
    assert serde.deserialize("k", "text", 1) == "text"
    with pytest.raises(ValueError, match="flags"):
        serde.deserialize("k", "x", 3)


# -- constructor ---------------------------------------------------------------------------


async def test_positional_and_keyword_arguments_of_043() -> None:
    inner = Starlette(routes=demo_routes())
    positional = SessionMiddleware(inner, SECRET, "cookie22", 3600)
    keywords = SessionMiddleware(
        inner,
        secret_key=SECRET,
        cookie_name="cookie22",
        max_age=3600,
        same_site="strict",
        https_only=True,
        domain="example.com",
        backend_type=None,
        backend_client=None,
        custom_session_backend=None,
    )
    response = await request(positional, "/write?a=1")
    assert only_set_cookie(response).startswith("cookie22=")
    assert "; Max-Age=3600; httponly; samesite=lax" in only_set_cookie(response)
    response = await request(keywords, "/write?a=1")
    set_cookie = only_set_cookie(response)
    assert set_cookie.startswith("cookie22=")
    assert set_cookie.endswith("; Max-Age=3600; httponly; samesite=strict; secure; domain=example.com")


def test_cookie_name_and_session_cookie_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="cookie_name"):
        SessionMiddleware(Starlette(), SECRET, session_cookie="a", cookie_name="b")
    with pytest.raises(ConfigurationError):
        SessionMiddleware(Starlette(), SECRET, "a", cookie_name="b")


def test_043_positional_same_site_is_understood_or_refused() -> None:
    # 0.4.3's fifth positional argument was same_site; here it is path (as in Starlette).
    # "strict" is no path, so alone it is read as same_site; with 0.4.3's https_only after it
    # (which would land in same_site), the call fails at start-up instead of sending a wrong cookie.
    middleware = SessionMiddleware(Starlette(), SECRET, "cookie22", 3600, "strict")
    assert (middleware.cookie.path, middleware.cookie.same_site) == ("/", "strict")
    with pytest.raises(ConfigurationError, match="same_site='strict'"):
        SessionMiddleware(Starlette(), SECRET, "cookie22", 3600, "strict", True)  # type: ignore[arg-type]


async def test_backend_type_cookie_keeps_the_data_in_the_cookie() -> None:
    app = make_app(cookie_name="cookie22", backend_type=BackendType.cookie)
    response = await request(app, "/write?user=alice")
    assert unsign_json(cookie_value(only_set_cookie(response))) == {"user": "alice"}


# -- custom_session_backend ----------------------------------------------------------------


async def test_custom_backend_end_to_end() -> None:
    backend = MyCustomBackend()
    app = make_app(cookie_name="cookie22", max_age=3600, custom_session_backend=backend)

    written = await request(app, "/write?user=alice")
    set_cookie = only_set_cookie(written)
    cookie = cookie_pair(set_cookie)
    # The cookie: TimestampSigner over base64 JSON {"_cssid": id}, exactly as 0.4.3 wrote it.
    content = unsign_json(cookie_value(set_cookie), max_age=3600)
    assert list(content) == ["_cssid"]
    session_id = content["_cssid"]
    assert backend.data == {session_id: {"user": "alice"}}
    # 0.4.3 passed max_age as the expiry.
    assert backend.expiries[session_id] == 3600

    assert (await request(app, "/read", cookie=cookie)).json() == {"user": "alice"}
    changed = await request(app, "/write?role=admin", cookie=cookie)
    assert cookie_pair(only_set_cookie(changed)) == cookie  # same id, same cookie
    assert backend.data == {session_id: {"user": "alice", "role": "admin"}}

    cleared = await request(app, "/clear", cookie=cookie)
    assert only_set_cookie(cleared).startswith("cookie22=null; ")
    assert backend.data == {}
    assert (await request(app, "/read", cookie=cookie)).json() == {}


async def test_custom_backend_via_backend_alias() -> None:
    backend = MyCustomBackend()
    app = make_app(backend=backend)
    response = await request(app, "/write?user=alice")
    session_id = unsign_json(cookie_value(only_set_cookie(response)))["_cssid"]
    assert backend.data == {session_id: {"user": "alice"}}


async def test_cookie_written_by_043_is_read() -> None:
    backend = MyCustomBackend()
    session_id = str(uuid.uuid4())  # 0.4.3's ids
    backend.data[session_id] = {"user": "alice", "cart": [1, 2]}
    # What 0.4.3 sent: TimestampSigner(str(secret)).sign(b64encode(json.dumps({"_cssid": id}))).
    cookie = f"cookie22={sign_json({'_cssid': session_id})}"
    app = make_app(cookie_name="cookie22", custom_session_backend=backend)

    response = await request(app, "/read", cookie=cookie)
    assert response.json() == {"user": "alice", "cart": [1, 2]}
    assert set_cookies(response) == []

    # A change stays under the same key, as with 0.4.3.
    await request(app, "/write?role=admin", cookie=cookie)
    assert backend.data == {session_id: {"user": "alice", "cart": [1, 2], "role": "admin"}}


async def test_cookie_of_server_side_session_decodes_with_itsdangerous() -> None:
    backend = MyCustomBackend()
    app = make_app(custom_session_backend=backend)
    response = await request(app, "/write?user=alice")
    signed = itsdangerous.TimestampSigner(SECRET).unsign(cookie_value(only_set_cookie(response)))
    assert json.loads(b64decode(signed)) == {"_cssid": next(iter(backend.data))}


def test_custom_backend_with_backend_type_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        SessionMiddleware(
            Starlette(), SECRET, backend_type=BackendType.memory, custom_session_backend=MyCustomBackend()
        )


def test_package_exports() -> None:
    assert (
        starlette_session.UnknownPredefinedBackend
        is importlib.import_module("starlette_session.exceptions").UnknownPredefinedBackend
    )
