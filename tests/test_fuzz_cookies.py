"""Property tests: any cookie a client sends gives a valid session or an empty one, never an error,
and no altered, foreign, renamed or expired cookie is ever accepted.

Every case goes through the whole middleware with raw ASGI calls, for each cookie format:
signed (Starlette's), encrypted, both split over chunk cookies, and the server-side ``_cssid``.
"""

from __future__ import annotations

import json
import time
from base64 import b64encode
from typing import Any

import itsdangerous
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlette_session.backends.memory import MemoryBackend
from starlette_session.encryption import EncryptedCodec
from starlette_session.ids import new_session_id
from tests.test_cookie_chunks import Client

SECRET = "test-secret-for-cookie-chunks"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))

FORMATS = ["signed", "encrypted", "split-signed", "split-encrypted", "server-side"]
SPLITTING = {"split-signed", "split-encrypted"}

FUZZ = settings(max_examples=200, deadline=None)


def client_for(kind: str, **options: Any) -> Client:
    if kind in {"encrypted", "split-encrypted"}:
        options.setdefault("encryption_key", KEY)
    if kind in SPLITTING:
        options.setdefault("max_cookie_size", 60_000)
    if kind == "server-side":
        options.setdefault("backend", MemoryBackend())
    return Client(**options)


cookie_values = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.from_regex(r"[A-Za-z0-9_\-.=+/\"\\]{0,300}", fullmatch=True),
    st.integers(min_value=3000, max_value=20_000).map(lambda n: "A" * n),
    st.sampled_from(
        ["chunks.1", "chunks.2", "chunks.10", "chunks.0", "chunks.99999999", "null", '""', '"\\377"']
    ),
)
cookie_names = st.one_of(
    st.sampled_from(
        ["session", "session.1", "session.2", "session.3", "session.10", "session.01", "session.x"]
    ),
    st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True),
)
session_data = st.dictionaries(
    st.text(max_size=10),
    st.one_of(
        st.integers(), st.text(max_size=30), st.booleans(), st.none(), st.lists(st.integers(), max_size=3)
    ),
    min_size=1,
    max_size=5,
)


def as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def header(cookies: dict[str, str] | list[tuple[str, str | bytes]]) -> bytes:
    pairs = cookies.items() if isinstance(cookies, dict) else cookies
    return b"; ".join(as_bytes(name) + b"=" + as_bytes(value) for name, value in pairs)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", FORMATS)
@FUZZ
@given(pairs=st.lists(st.tuples(cookie_names, cookie_values), max_size=6), raw_header=st.binary(max_size=300))
async def test_arbitrary_cookies_give_an_empty_session(
    kind: str, pairs: list[tuple[str, str | bytes]], raw_header: bytes
) -> None:
    client = client_for(kind)
    for cookie in (header(pairs), raw_header, b"session=" + raw_header):
        await client.request(cookie=cookie, apply=False)
        assert client.seen == {}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", FORMATS)
@FUZZ
@given(data=session_data, size=st.integers(min_value=0, max_value=12_000), draw=st.data())
async def test_an_altered_byte_is_rejected_or_means_the_same(
    kind: str, data: dict[str, Any], size: int, draw: st.DataObject
) -> None:
    client = client_for(kind)
    if kind in SPLITTING:
        data = {**data, "padding": "x" * size}
    await client.request(lambda session: session.update(data))
    await client.request()
    assert client.seen == data
    cookies = dict(client.browser.cookies)
    name = draw.draw(st.sampled_from(sorted(cookies)))
    value = cookies[name].encode("latin-1")
    position = draw.draw(st.integers(min_value=0, max_value=len(value) - 1))
    replacement = draw.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != value[position]))
    altered = value[:position] + bytes([replacement]) + value[position + 1 :]
    pairs: list[tuple[str, str | bytes]] = [(n, altered if n == name else v) for n, v in cookies.items()]
    await client.request(cookie=header(pairs), apply=False)
    assert client.seen in ({}, data)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["signed", "split-signed", "server-side"])
@FUZZ
@given(data=session_data, secret=st.text(min_size=1, max_size=40), size=st.integers(0, 12_000))
async def test_a_cookie_signed_with_another_key_is_rejected(
    kind: str, data: dict[str, Any], secret: str, size: int
) -> None:
    if secret == SECRET:
        secret += "!"
    backend = MemoryBackend()  # shared, so only the signature can tell the two apart
    options: dict[str, Any] = {"backend": backend} if kind == "server-side" else {}
    if kind in SPLITTING:
        data = {**data, "padding": "x" * size}
    forger = client_for(kind, secret_key=secret, **options)
    victim = client_for(kind, **options)
    await forger.request(lambda session: session.update(data))
    await forger.request()
    assert forger.seen == data
    await victim.request(cookie=forger.browser.header(), apply=False)
    assert victim.seen == {}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["encrypted", "split-encrypted"])
@FUZZ
@given(data=session_data, key=st.binary(min_size=32, max_size=32), size=st.integers(0, 12_000))
async def test_a_cookie_encrypted_with_another_key_is_rejected(
    kind: str, data: dict[str, Any], key: bytes, size: int
) -> None:
    if key == KEY:
        key = OTHER_KEY
    if kind in SPLITTING:
        data = {**data, "padding": "x" * size}
    forger = client_for(kind, encryption_key=key)
    await forger.request(lambda session: session.update(data))
    victim = client_for(kind)
    await victim.request(cookie=forger.browser.header(), apply=False)
    assert victim.seen == {}


@pytest.mark.anyio
@FUZZ
@given(data=session_data, name=st.from_regex(r"[A-Za-z0-9_-]{1,30}", fullmatch=True))
async def test_an_encrypted_cookie_under_another_name_is_rejected(data: dict[str, Any], name: str) -> None:
    if name == "session":
        name = "session2"
    writer = client_for("encrypted")
    await writer.request(lambda session: session.update(data))
    token = writer.browser.cookies["session"]
    reader = client_for("encrypted", session_cookie=name)
    await reader.request(cookie=f"{name}={token}", apply=False)
    assert reader.seen == {}
    await writer.request(cookie=f"session={token}", apply=False)
    assert writer.seen == data


class _PastSigner(itsdangerous.TimestampSigner):
    age = 0

    def get_timestamp(self) -> int:
        return int(time.time()) - self.age


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["signed", "encrypted"])
@FUZZ
@given(data=session_data, max_age=st.integers(1, 10**8), extra=st.integers(1, 10**6))
async def test_an_expired_cookie_is_rejected(
    kind: str, data: dict[str, Any], max_age: int, extra: int
) -> None:
    payload = json.dumps(data).encode()
    age = max_age + extra + 1
    if kind == "signed":
        signer = _PastSigner(SECRET)
        signer.age = age
        value = signer.sign(b64encode(payload)).decode("ascii")
    else:
        codec = EncryptedCodec([KEY], max_age, "session", clock=lambda: time.time() - age)
        value = codec.encode(payload)
    client = client_for(kind, max_age=max_age)
    await client.request(cookie=f"session={value}", apply=False)
    assert client.seen == {}


@pytest.mark.anyio
@FUZZ
@given(data=session_data)
async def test_unsigned_values_are_never_accepted(data: dict[str, Any]) -> None:
    payload = json.dumps(data).encode()
    encoded = b64encode(payload).decode()
    for kind in ("signed", "encrypted"):
        client = client_for(kind)
        for value in (encoded, f"{encoded}.", f"{encoded}.AAAA.", payload.decode(), f'"{encoded}"'):
            await client.request(cookie=header([("session", value)]), apply=False)
            assert client.seen == {}


@pytest.mark.anyio
@FUZZ
@given(data=session_data, draw=st.data())
async def test_server_side_cookie_only_names_known_ids(data: dict[str, Any], draw: st.DataObject) -> None:
    backend = MemoryBackend()
    client = client_for("server-side", backend=backend)
    await client.request(lambda session: session.update(data))
    # A correctly signed cookie naming an id the store does not hold gives an empty session.
    guessed = draw.draw(st.one_of(st.just(new_session_id()), st.text(max_size=80)))
    forged = client.middleware.strategy.codec.encode(json.dumps({"_cssid": guessed}).encode())  # type: ignore[attr-defined]
    other = client_for("server-side", backend=backend)
    await other.request(cookie=f"session={forged}", apply=False)
    assert other.seen == {}
    await other.request(cookie=client.browser.header(), apply=False)
    assert other.seen == data
