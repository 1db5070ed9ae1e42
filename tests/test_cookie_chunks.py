"""Cookie splitting: sessions over one cookie's 4096 bytes, stale chunks, the size ceiling.

Also holds ``Browser`` and ``Client``, a raw-ASGI client with a minimal cookie jar, which the
encryption and fuzz tests import.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

import pytest
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.types import Message, Receive, Scope, Send

from starlette_session import ConfigurationError, SessionMiddleware, SessionTooLargeError
from starlette_session.cookies import CHUNK_MARKER, MAX_COOKIE_SIZE, CookieJar, CookieSettings

SECRET = "test-secret-for-cookie-chunks"
CLEARED = "expires=Thu, 01 Jan 1970 00:00:00 GMT"

Action = Callable[[dict[str, Any]], None]


class Browser:
    """Keeps cookies the way a browser does, as far as these tests need: set, replace, expire."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def apply(self, set_cookies: list[str]) -> None:
        for header in set_cookies:
            pair, _, attributes = header.partition("; ")
            name, _, value = pair.partition("=")
            if CLEARED in attributes or "Max-Age=0;" in attributes:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())


class Client:
    """Drives a ``SessionMiddleware`` with raw ASGI calls: no server, no HTTP library.

    ``seen`` is the session the app saw in the last request; exceptions reach the caller.
    """

    def __init__(self, secret_key: Any = SECRET, **options: Any) -> None:
        self.middleware = SessionMiddleware(self._app, secret_key, **options)
        self.browser = Browser()
        self.seen: dict[str, Any] | None = None
        self.action: Action | None = None
        self.messages: list[Message] = []

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = scope["session"]
        self.seen = dict(session)
        if self.action is not None:
            self.action(session)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def request(
        self, action: Action | None = None, *, cookie: str | bytes | None = None, apply: bool = True
    ) -> list[str]:
        """Send one request (with the browser's cookies unless ``cookie`` is given); return the
        Set-Cookie values of the response and, if ``apply``, store them in the browser."""
        if cookie is None:
            cookie = self.browser.header()
        raw = cookie if isinstance(cookie, bytes) else cookie.encode("latin-1")
        headers = [(b"cookie", raw)] if raw else []
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/",
            "raw_path": b"/",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 1234),
            "server": ("127.0.0.1", 80),
        }
        self.action = action
        self.seen = None
        self.messages = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            self.messages.append(message)

        await self.middleware(scope, receive, send)
        assert self.messages[0]["status"] == 200
        set_cookies = [
            value.decode("latin-1") for key, value in self.messages[0]["headers"] if key == b"set-cookie"
        ]
        for line in set_cookies:
            assert len("Set-Cookie: " + line) <= MAX_COOKIE_SIZE, line[:80]
        if apply:
            self.browser.apply(set_cookies)
        return set_cookies


def setter(**values: Any) -> Action:
    def action(session: dict[str, Any]) -> None:
        session.update(values)

    return action


def names(set_cookies: list[str]) -> list[str]:
    return [line.partition("=")[0] for line in set_cookies]


def cleared(set_cookies: list[str]) -> set[str]:
    return {line.partition("=")[0] for line in set_cookies if CLEARED in line}


def chunk_count(browser: Browser) -> int:
    marker = browser.cookies["session"]
    return int(marker.removeprefix(CHUNK_MARKER)) if marker.startswith(CHUNK_MARKER) else 0


def blob(length: int, seed: int = 0) -> str:
    """Text that base64-encodes without repeats, so a misordered join cannot pass."""
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(length))


# -- CookieJar, directly -----------------------------------------------------------------------


def _settings_variants() -> list[CookieSettings]:
    return [
        CookieSettings("session"),
        CookieSettings("session", max_age=None),
        CookieSettings(
            "s",
            path="/some/longer/path",
            domain="example.com",
            secure=True,
            partitioned=True,
            same_site="none",
        ),
    ]


@pytest.mark.parametrize("settings", _settings_variants())
def test_split_lines_stay_within_4096_bytes_around_every_boundary(settings: CookieSettings) -> None:
    jar = CookieJar(settings, max_size=10**6)
    single = MAX_COOKIE_SIZE - settings.header_size(0)
    capacities = [MAX_COOKIE_SIZE - settings.header_size(0, f"{settings.name}.{i}") for i in range(1, 7)]
    boundaries = [single] + [sum(capacities[:n]) for n in range(1, 5)]
    for boundary in boundaries:
        for length in range(boundary - 2, boundary + 3):
            value = blob(length, seed=length)
            headers = jar.set_headers(value)
            for line in headers:
                assert len("Set-Cookie: " + line) <= MAX_COOKIE_SIZE
            browser = Browser()
            browser.apply(headers)
            assert jar.read(browser.cookies) == value
            if length <= single:
                assert names(headers) == [settings.name]  # exactly one Starlette-style cookie
                continue
            expected_chunks = next(n for n in range(1, 7) if sum(capacities[:n]) >= length)
            assert names(headers) == [settings.name] + [
                f"{settings.name}.{i}" for i in range(1, 1 + expected_chunks)
            ]
            assert headers[0].startswith(f"{settings.name}={CHUNK_MARKER}{expected_chunks};")
            # Every chunk but the last is packed to the limit.
            for line in headers[1:-1]:
                assert len("Set-Cookie: " + line) == MAX_COOKIE_SIZE


def test_jar_refuses_invalid_max_size() -> None:
    for bad in (0, -1, True, "8192", 1.5):
        with pytest.raises(ConfigurationError, match="max_cookie_size"):
            CookieJar(CookieSettings("session"), max_size=bad)  # type: ignore[arg-type]


def test_attributes_that_leave_no_room_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="too long"):
        CookieJar(CookieSettings("session", path="/" + "p" * 4070))
    with pytest.raises(ConfigurationError, match="too long"):
        CookieJar(CookieSettings("session", path="/" + "p" * 4070), split=False)


def test_marker_with_bad_count_reads_as_absent() -> None:
    jar = CookieJar(CookieSettings("session"))
    parts = {"session.1": "a", "session.2": "b"}
    assert jar.read({"session": "chunks.2", **parts}) == "ab"
    for marker in (
        "chunks.",
        "chunks.0",
        "chunks.02",
        "chunks.-1",
        "chunks.x",
        "chunks.3",
        "chunks.²",
        "chunks.1e3",
    ):
        assert jar.read({"session": marker, **parts}) is None, marker
    assert jar.read({"session": "chunks.999999999999999999999", **parts}) is None
    assert jar.read({"session": "chunks.2", "session.1": "a", "session.2": ""}) is None
    assert CookieJar(CookieSettings("session"), split=False).read({"session": "chunks.2", **parts}) is None


# -- through the middleware ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_small_session_is_exactly_starlettes_single_cookie() -> None:
    client = Client()
    set_cookies = await client.request(setter(user="alice"))
    assert names(set_cookies) == ["session"]
    assert re.fullmatch(
        r"session=[A-Za-z0-9+/=]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"
        r"; path=/; Max-Age=1209600; httponly; samesite=lax",
        set_cookies[0],
    )

    # Starlette's own middleware reads it.
    seen: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(dict(scope["session"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    starlette = StarletteSessionMiddleware(app, SECRET)
    scope: Scope = {"type": "http", "path": "/", "headers": [(b"cookie", client.browser.header().encode())]}

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        return None

    await starlette(scope, receive, send)
    assert seen == [{"user": "alice"}]


@pytest.mark.anyio
async def test_sizes_across_the_split_threshold_round_trip() -> None:
    client = Client()
    kinds = set()
    # JSON of ~2900-3100 bytes becomes a signed value on both sides of one cookie's limit.
    for length in range(2950, 3060, 3):
        client.browser = Browser()
        data = blob(length, seed=length)
        await client.request(setter(data=data))
        kinds.add(chunk_count(client.browser))
        await client.request()
        assert client.seen == {"data": data}
    assert kinds == {0, 2}  # both single and split cookies were exercised


@pytest.mark.anyio
async def test_ten_and_more_chunks_join_in_numeric_order() -> None:
    client = Client(max_cookie_size=100_000)
    data = blob(40_000)
    set_cookies = await client.request(setter(data=data))
    count = chunk_count(client.browser)
    assert count >= 12
    assert names(set_cookies) == ["session"] + [f"session.{i}" for i in range(1, count + 1)]
    await client.request()
    assert client.seen == {"data": data}
    # Whatever order the browser sends them in (10 sorts before 2 as text).
    pairs = list(client.browser.cookies.items())
    for order in (sorted(pairs), sorted(pairs, reverse=True), random.Random(1).sample(pairs, len(pairs))):
        await client.request(cookie="; ".join(f"{n}={v}" for n, v in order))
        assert client.seen == {"data": data}


@pytest.mark.anyio
async def test_shrinking_expires_the_stale_chunks() -> None:
    client = Client(max_cookie_size=60_000)
    await client.request(setter(data=blob(14_000)))
    assert chunk_count(client.browser) == 5
    set_cookies = await client.request(setter(data=blob(5000)))
    assert chunk_count(client.browser) == 2
    assert cleared(set_cookies) == {"session.3", "session.4", "session.5"}
    assert sorted(client.browser.cookies) == ["session", "session.1", "session.2"]
    await client.request()
    assert client.seen == {"data": blob(5000)}

    # Down to one cookie: every chunk goes.
    set_cookies = await client.request(setter(data="small"))
    assert cleared(set_cookies) == {"session.1", "session.2"}
    assert list(client.browser.cookies) == ["session"]
    await client.request()
    assert client.seen == {"data": "small"}


@pytest.mark.anyio
async def test_growing_from_one_cookie_to_chunks_and_more_chunks() -> None:
    client = Client(max_cookie_size=60_000)
    await client.request(setter(data="small"))
    assert list(client.browser.cookies) == ["session"]
    for size, chunks in ((5000, 2), (14_000, 5)):
        set_cookies = await client.request(setter(data=blob(size)))
        assert cleared(set_cookies) == set()
        assert chunk_count(client.browser) == chunks
        await client.request()
        assert client.seen == {"data": blob(size)}


@pytest.mark.anyio
async def test_clearing_expires_the_cookie_and_every_chunk() -> None:
    client = Client(max_cookie_size=60_000)
    await client.request(setter(data=blob(9000)))
    assert chunk_count(client.browser) == 3
    set_cookies = await client.request(lambda session: session.clear())
    assert cleared(set_cookies) == {"session", "session.1", "session.2", "session.3"}
    assert client.browser.cookies == {}


@pytest.mark.anyio
async def test_stale_chunks_beyond_the_marker_are_expired_on_the_next_save() -> None:
    client = Client(max_cookie_size=60_000)
    await client.request(setter(data=blob(5000)))
    client.browser.cookies["session.7"] = "leftover"
    await client.request()
    assert client.seen == {"data": blob(5000)}  # extra chunks do not spoil a valid session
    set_cookies = await client.request(setter(more=1))
    assert "session.7" in cleared(set_cookies)


@pytest.mark.anyio
async def test_unrelated_cookies_sharing_the_prefix_are_left_alone() -> None:
    unrelated = {
        "session.foo": "1",
        "session.01": "2",
        "session.0": "3",
        "session.1x": "4",
        "sessionx.1": "5",
        "session..1": "6",
        "other": "7",
    }
    client = Client(max_cookie_size=60_000)
    client.browser.cookies.update(unrelated)
    await client.request(setter(data=blob(9000)))
    await client.request()
    assert client.seen == {"data": blob(9000)}
    for action in (setter(data="small"), lambda session: session.clear()):
        set_cookies = await client.request(action)
        assert not set(names(set_cookies)) & set(unrelated)
    assert client.browser.cookies == unrelated


@pytest.mark.anyio
async def test_missing_or_tampered_chunk_gives_an_empty_session() -> None:
    client = Client(max_cookie_size=60_000)
    await client.request(setter(data=blob(9000)))
    good = dict(client.browser.cookies)

    def variants() -> list[dict[str, str]]:
        missing = {k: v for k, v in good.items() if k != "session.2"}
        swapped = {**good, "session.1": good["session.2"], "session.2": good["session.1"]}
        flipped = {**good, "session.3": good["session.3"][:10] + "A" + good["session.3"][11:]}
        if flipped == good:
            flipped["session.3"] = good["session.3"][:10] + "B" + good["session.3"][11:]
        truncated = {**good, "session.3": good["session.3"][:-5]}
        fewer = {**good, "session": "chunks.2"}
        return [missing, swapped, flipped, truncated, fewer, {"session.1": good["session.1"]}]

    for cookies in variants():
        await client.request(cookie="; ".join(f"{n}={v}" for n, v in cookies.items()), apply=False)
        assert client.seen == {}


@pytest.mark.anyio
async def test_rolling_resends_every_chunk() -> None:
    client = Client(max_cookie_size=60_000, rolling=True)
    await client.request(setter(data=blob(9000)))
    set_cookies = await client.request()
    assert names(set_cookies) == ["session", "session.1", "session.2", "session.3"]


@pytest.mark.anyio
async def test_over_the_ceiling_raises_and_sends_no_cookie() -> None:
    client = Client(max_cookie_size=10_000)
    with pytest.raises(SessionTooLargeError) as caught:
        await client.request(setter(data=blob(9000)))
    assert caught.value.limit == 10_000
    assert caught.value.size > 10_000
    assert "max_cookie_size" in str(caught.value)
    assert client.messages == []  # the response never started: no cookie silently dropped


@pytest.mark.anyio
async def test_default_ceiling_is_8192_bytes_of_cookie_header() -> None:
    client = Client()
    await client.request(setter(data=blob(5000)))
    assert len(client.browser.header()) <= 8192
    with pytest.raises(SessionTooLargeError) as caught:
        await client.request(setter(data=blob(6500)))
    assert caught.value.limit == 8192


@pytest.mark.anyio
async def test_ceiling_applies_to_a_single_cookie_too() -> None:
    client = Client(max_cookie_size=1000)
    await client.request(setter(data=blob(500)))
    with pytest.raises(SessionTooLargeError):
        await client.request(setter(data=blob(900)))


@pytest.mark.anyio
async def test_splitting_off_raises_past_one_cookie() -> None:
    client = Client(split_cookies=False)
    await client.request(setter(data=blob(2900)))
    assert list(client.browser.cookies) == ["session"]
    with pytest.raises(SessionTooLargeError) as caught:
        await client.request(setter(data=blob(3100)))
    assert caught.value.limit == MAX_COOKIE_SIZE
    assert caught.value.size > MAX_COOKIE_SIZE
    assert "split_cookies" in str(caught.value)
    assert client.messages == []


@pytest.mark.anyio
async def test_the_app_sees_the_error_from_its_send() -> None:
    caught: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["session"]["data"] = blob(20_000)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        except SessionTooLargeError as exc:
            caught.append(exc)
            raise

    middleware = SessionMiddleware(app, SECRET)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        raise AssertionError("nothing may be sent")

    with pytest.raises(SessionTooLargeError):
        await middleware({"type": "http", "path": "/", "headers": []}, receive, send)
    assert len(caught) == 1


@pytest.mark.anyio
async def test_encrypted_sessions_split_too() -> None:
    client = Client(encryption_key=bytes(range(32)), max_cookie_size=60_000)
    data = blob(20_000)
    await client.request(setter(data=data))
    assert chunk_count(client.browser) >= 6
    await client.request()
    assert client.seen == {"data": data}
