"""The shortcuts taken for speed keep the behaviour they shortcut."""

from __future__ import annotations

import contextlib
import json
import threading
from base64 import b64encode

import itsdangerous
import pytest
from itsdangerous.encoding import base64_decode

from starlette_session._bridge import run_sync
from starlette_session.serializers import JSON, MAX_DEPTH
from starlette_session.session import Session
from starlette_session.signing import SignedCodec

KEYS = [b"new key", b"old key"]


def test_signed_codec_matches_itsdangerous_byte_for_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda self: 1_700_000_000)
    payload = b'{"user": 1}'
    ours = SignedCodec(KEYS, max_age=60).encode(payload)
    theirs = itsdangerous.TimestampSigner(b"new key").sign(b64encode(payload)).decode()
    assert ours == theirs
    old = itsdangerous.TimestampSigner(b"old key").sign(b64encode(payload)).decode()
    assert SignedCodec(KEYS, max_age=60).decode(old) == payload


def test_cached_value_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1_700_000_000
    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda self: now)
    codec = SignedCodec(KEYS, max_age=60)
    value = codec.encode(b"{}")
    assert codec.decode(value) == b"{}"
    assert codec.decode(value) == b"{}"  # from the cache
    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda self: now + 61)
    assert codec.decode(value) is None
    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda self: now - 1)
    assert codec.decode(value) is None  # signed in the future


def test_rejected_values_are_not_cached() -> None:
    codec = SignedCodec(KEYS, max_age=None)
    value = codec.encode(b"{}")
    forged = value[:-1] + ("A" if value[-1] != "A" else "B")
    for _ in range(2):
        assert codec.decode(forged) is None
    assert forged not in codec._cache


def test_cache_is_bounded() -> None:
    codec = SignedCodec(KEYS, max_age=None, cache_size=8)
    for number in range(50):
        assert codec.decode(codec.encode(b'{"n": %d}' % number)) is not None
        assert len(codec._cache) <= 8


def test_scalar_reads_do_not_expose_but_containers_do() -> None:
    session = Session({"n": 1, "cart": ["a"], "profile": {"name": "x"}})
    session.loaded = b'{"n": 1, "cart": ["a"], "profile": {"name": "x"}}'
    assert session["n"] == 1
    assert "cart" in session
    assert session.accessed
    assert not session.exposed
    assert session.dump_if_changed() is None
    session.get("profile")["name"] = "y"
    assert getattr(session, "exposed")  # noqa: B009 - mypy narrowed the attribute above
    assert session.dump_if_changed() == b'{"n": 1, "cart": ["a"], "profile": {"name": "y"}}'


@pytest.mark.parametrize("method", ["values", "items", "copy"])
def test_bulk_reads_expose(method: str) -> None:
    session = Session({"cart": []})
    getattr(session, method)()
    assert session.exposed


@pytest.mark.anyio
async def test_blocking_calls_run_off_the_event_loop_thread() -> None:
    loop_thread = threading.get_ident()
    worker = await run_sync(threading.get_ident)
    assert worker != loop_thread
    assert await run_sync(divmod, 7, 2) == (3, 1)
    assert await run_sync(int, "ff", base=16) == 255


def test_only_the_canonical_signature_spelling_is_accepted() -> None:
    codec = SignedCodec(KEYS, max_age=None)
    value = codec.encode(b"{}")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # The last base64 character of a 20-byte HMAC carries 2 unused low bits: flipping one
    # decodes to the same bytes, so a lenient decoder would accept this other spelling.
    twin = value[:-1] + alphabet[alphabet.index(value[-1]) ^ 1]
    assert base64_decode(twin.rsplit(".", 1)[1]) == base64_decode(value.rsplit(".", 1)[1])
    assert codec.decode(twin) is None
    assert codec.decode(value) == b"{}"


JSON_INPUTS = [
    b'{"user": 1, "roles": ["a", "b"], "name": "\\u00e9"}',
    '{"caf\u00e9": "\u2603"}'.encode(),
    b' {"a": 1}\n',  # whitespace around: json.loads accepts it
    b'\xef\xbb\xbf{"a": 1}',  # a UTF-8 BOM: json.loads(bytes) accepts it
    '{"a": 1}'.encode("utf-16"),  # json.loads(bytes) detects UTF-16
    b'{"a": NaN}',
    b'{"a": 1}x',
    b'{"a": 1} {"b": 2}',
    b"[1, 2]",
    b'"text"',
    b"",
    b"\xff\xfe\xfd",
    b"nul",
    b'{"a": "\xff"}',
]


@pytest.mark.parametrize("data", JSON_INPUTS)
def test_json_loads_accepts_and_refuses_what_json_loads_does(data: bytes) -> None:
    expected: object = ValueError
    try:
        parsed = json.loads(data)
    except ValueError:
        pass
    else:
        expected = parsed if isinstance(parsed, dict) else ValueError
    got: object = ValueError
    with contextlib.suppress(ValueError):
        got = JSON.loads(data)
    # NaN != NaN: compare the text of the results.
    assert repr(got) == repr(expected)


@pytest.mark.parametrize("data", [b"[" * 100_000, b'{"a": ' * 100_000])
def test_json_loads_refuses_deep_nesting_with_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        JSON.loads(data)


def _nested(depth: int) -> bytes:
    """A session dict whose value nests ``depth - 1`` lists inside it (``depth`` containers)."""
    return ('{"a": ' + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "}").encode()


def test_nesting_up_to_the_limit_is_read_and_written_back() -> None:
    value = JSON.loads(_nested(MAX_DEPTH))
    assert JSON.loads(JSON.dumps(value)) == value


def test_nesting_past_the_limit_is_refused_whatever_the_stack() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        JSON.loads(_nested(MAX_DEPTH + 1))
    # Inside a string, brackets are not nesting: a value full of them is a session like any other.
    assert JSON.loads(json.dumps({"a": "[" * 5000}).encode()) == {"a": "[" * 5000}


def test_many_shallow_containers_are_not_nesting() -> None:
    data = {"items": [{"id": n, "tags": ["a", "b"]} for n in range(2000)]}
    assert JSON.loads(json.dumps(data).encode()) == data
