"""Bad session cookies: every one gives a 200 with an empty session, on cookie and server-side storage.

A bad cookie never raises, never loads data, never reaches the store (a recording backend
proves it), and the next write starts a fresh session that owes nothing to it.
"""

from __future__ import annotations

import json
import time
from base64 import b64encode
from collections.abc import Callable
from typing import Any

import hypothesis.strategies as st
import itsdangerous
import pytest
from hypothesis import HealthCheck, given, settings
from starlette.applications import Starlette

from tests.helpers import (
    SECRET,
    RecordingBackend,
    cookie_pair,
    cookie_value,
    make_app,
    only_set_cookie,
    request,
    set_cookies,
    sign,
    sign_json,
    unsign_json,
)

pytestmark = pytest.mark.anyio

DAY = 24 * 60 * 60
Headers = list[tuple[str, str | bytes]]


def signed_at(timestamp: int, data: object) -> str:
    """A valid cookie for ``data`` whose signature carries ``timestamp``."""

    class Signer(itsdangerous.TimestampSigner):
        def get_timestamp(self) -> int:
            return timestamp

    return Signer(SECRET).sign(b64encode(json.dumps(data).encode())).decode()


def valid() -> str:
    return sign_json({"user": "alice"})


def altered_signature() -> str:
    value = valid()
    return value[:-1] + ("A" if value[-1] != "A" else "B")


def altered_payload() -> str:
    _, timestamp, signature = valid().split(".")
    return ".".join([b64encode(b'{"user": "admin"}').decode(), timestamp, signature])


def cookie(value: str | bytes) -> Headers:
    prefix = b"session=" if isinstance(value, bytes) else "session="
    return [("cookie", prefix + value)]  # type: ignore[operator]


#: Bad for both storages: (id, request headers).
BAD: list[tuple[str, Callable[[], Headers]]] = [
    ("missing-dot", lambda: cookie("abcdefghijklmnop")),
    ("only-dots", lambda: cookie("..")),
    ("empty-value", lambda: cookie("")),
    ("quoted", lambda: cookie('"abc.def.ghi"')),
    ("bad-signature", lambda: cookie(altered_signature())),
    ("altered-payload", lambda: cookie(altered_payload())),
    ("wrong-key", lambda: cookie(sign_json({"user": "alice"}, secret="another-secret-key"))),
    ("expired", lambda: cookie(signed_at(int(time.time()) - 15 * DAY, {"user": "alice"}))),
    ("from-the-future", lambda: cookie(signed_at(int(time.time()) + DAY, {"user": "alice"}))),
    ("bad-base64", lambda: cookie(sign(b"not base64!"))),
    ("bad-base64-padding", lambda: cookie(itsdangerous.TimestampSigner(SECRET).sign(b"abc").decode())),
    ("not-json", lambda: cookie(sign(b"{not json"))),
    ("json-list", lambda: cookie(sign_json([1, 2]))),
    ("json-string", lambda: cookie(sign_json("user"))),
    ("json-number", lambda: cookie(sign_json(42))),
    ("json-null", lambda: cookie(sign_json(None))),
    ("json-true", lambda: cookie(sign_json(True))),
    ("invalid-utf8-payload", lambda: cookie(sign(b'{"user": "\xff\xfe"}'))),
    ("invalid-utf8-header", lambda: cookie(b"\xff\xfe\xfd.\xc3\x28.\xa0\xa1")),
    ("non-ascii", lambda: cookie("héllo.wörld.ß".encode())),
    ("non-ascii-after-valid", lambda: cookie((valid() + "é").encode())),
    ("control-characters", lambda: cookie(b"\x00\x01\x02.\x7f.\x1b")),
    ("huge", lambda: cookie("A" * 100_000)),
    ("huge-signed-looking", lambda: cookie("A" * 100_000 + ".ZZZZZZ.abcdefghijklmnopqrstuvwxyz0")),
    ("many-cookies", lambda: [("cookie", "; ".join(f"c{i}=v{i}" for i in range(5_000)))]),
    ("duplicate-in-one-header", lambda: [("cookie", f"session={valid()}; session=garbage")]),
    ("duplicate-both-bad", lambda: [("cookie", f"session={altered_signature()}; session=x.y.z")]),
    ("duplicate-in-two-headers", lambda: [("cookie", f"session={valid()}"), ("cookie", "session=garbage")]),
    (
        "two-headers-both-bad",
        lambda: [("cookie", "session=a.b.c"), ("cookie", f"session={altered_payload()}")],
    ),
]

#: A valid signature over ``{"_cssid": <bad id>}``: an authentic cookie session, but no
#: server-side id; these must never reach the store.
BAD_IDS: list[tuple[str, Any]] = [
    ("path-traversal", "../../../../etc/passwd"),
    ("path-traversal-padded", "../../" + "a" * 30),
    ("slash", "abcdefghijklmnop/qrstuvwxyz"),
    ("backslash", "abcdefghijklmnop\\qrstuvwxyz"),
    ("dot-dot", ".." * 20),
    ("empty", ""),
    ("short", "abc"),
    ("huge", "a" * 10_000),
    ("nul", "abcdefghijklmnop\x00qrstuvwxyz"),
    ("newline", "abcdefghijklmnop\r\nqrstuvwxyz"),
    ("space", "abcdefghijklmnop qrstuvwxyz"),
    ("glob", "abcdefghijklmnop*"),
    ("non-ascii", "abcdefghijklmnopé"),
    ("number", 12345678901234567890),
    ("list", ["abcdefghijklmnopqrstuvwxyz"]),
    ("object", {"id": "abcdefghijklmnopqrstuvwxyz"}),
    ("null", None),
]


@pytest.fixture(params=["cookie", "memory"])
def storage(request: pytest.FixtureRequest) -> tuple[Starlette, RecordingBackend | None]:
    if request.param == "cookie":
        return make_app(), None
    backend = RecordingBackend()
    return make_app(backend=backend), backend


async def assert_fresh_start(app: Starlette, headers: Headers, backend: RecordingBackend | None) -> None:
    response = await request(app, "/read", headers=headers)
    assert response.status_code == 200
    assert response.json() == {}
    # A cookie session sends nothing back; a server-side one may clear a cookie it cannot use.
    assert all(value.startswith("session=null; ") for value in set_cookies(response))
    if backend is not None:
        assert backend.reads == []

    written = await request(app, "/write?fresh=1", headers=headers)
    assert written.status_code == 200
    assert written.json() == {"fresh": "1"}
    set_cookie = only_set_cookie(written)
    if backend is None:
        assert unsign_json(cookie_value(set_cookie)) == {"fresh": "1"}
    else:
        session_id = unsign_json(cookie_value(set_cookie))["_cssid"]
        assert backend.reads == []
        assert backend.records.keys() == {backend.key_for(session_id)}
    assert (await request(app, "/read", cookie=cookie_pair(set_cookie))).json() == {"fresh": "1"}


@pytest.mark.parametrize(("case", "headers"), BAD, ids=[case for case, _ in BAD])
async def test_bad_cookie_gives_an_empty_session(
    storage: tuple[Starlette, RecordingBackend | None], case: str, headers: Callable[[], Headers]
) -> None:
    app, backend = storage
    await assert_fresh_start(app, headers(), backend)


@pytest.mark.parametrize(("case", "session_id"), BAD_IDS, ids=[case for case, _ in BAD_IDS])
async def test_bad_session_id_never_reaches_the_store(case: str, session_id: Any) -> None:
    backend = RecordingBackend()
    app = make_app(backend=backend)
    await assert_fresh_start(app, cookie(sign_json({"_cssid": session_id})), backend)


async def test_cookie_without_session_id_field_is_empty_server_side() -> None:
    backend = RecordingBackend()
    app = make_app(backend=backend)
    await assert_fresh_start(app, cookie(sign_json({"user": "alice"})), backend)


@pytest.mark.parametrize("kind", ["cookie", "memory"])
async def test_expiry_when_time_moves_forward(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = RecordingBackend()
    app = make_app(max_age=60) if kind == "cookie" else make_app(max_age=60, backend=backend)
    now = int(time.time())
    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda self: now)
    session_cookie = cookie_pair(only_set_cookie(await request(app, "/write?user=alice")))

    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda self: now + 60)
    assert (await request(app, "/read", cookie=session_cookie)).json() == {"user": "alice"}

    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda self: now + 61)
    reads_before = len(backend.reads)
    response = await request(app, "/read", cookie=session_cookie)
    assert response.status_code == 200
    assert response.json() == {}
    assert len(backend.reads) == reads_before  # an expired signature is not looked up


# -- property: arbitrary Cookie header text ------------------------------------------------

cookie_headers = st.one_of(
    st.text(max_size=300).map(lambda text: text.encode("utf-8")),
    st.text(max_size=300).map(lambda text: ("session=" + text).encode("utf-8")),
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda raw: b"session=" + raw),
    st.lists(st.from_regex(r"[A-Za-z0-9._-]{0,60}", fullmatch=True), max_size=4).map(
        lambda parts: ("session=" + ".".join(parts)).encode("ascii")
    ),
)


@pytest.mark.parametrize("kind", ["cookie", "memory"])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=cookie_headers)
async def test_any_cookie_header_gives_an_empty_session(kind: str, header: bytes) -> None:
    backend = RecordingBackend()
    app = make_app() if kind == "cookie" else make_app(backend=backend)
    response = await request(app, "/read", headers=[("cookie", header)])
    assert response.status_code == 200
    assert response.json() == {}
    assert all(value.startswith("session=null; ") for value in set_cookies(response))
    assert backend.reads == []
