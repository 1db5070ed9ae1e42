"""Atheris (libFuzzer) target for the cookie codecs and the middleware's load path.

Not a pytest module (its name does not start with ``test_``). Run it in a venv of its own::

    python -m venv /tmp/fuzzvenv
    /tmp/fuzzvenv/bin/pip install atheris starlette itsdangerous cryptography
    /tmp/fuzzvenv/bin/python tests/fuzz/fuzz_cookies.py -max_total_time=300 -rss_limit_mb=2048

Each input is turned into one of these cases; any exception that escapes is a finding:

* raw bytes as a cookie value for ``SignedCodec.decode`` and ``EncryptedCodec.decode``: the
  result must be ``None`` (random bytes are never a valid signature or tag);
* a valid token of each codec with bytes of the input overwritten at positions the input
  picks: the result must be ``None`` or the original payload;
* raw bytes as the request's whole Cookie header, through ``SessionMiddleware`` with signed,
  encrypted, split and server-side (memory backend) sessions: the app must see an empty session.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import atheris
from starlette.types import Message, Receive, Scope, Send

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from starlette_session import SessionMiddleware
    from starlette_session.backends.memory import MemoryBackend
    from starlette_session.encryption import EncryptedCodec
    from starlette_session.signing import SignedCodec

KEY = bytes(range(32))
SECRET = b"fuzz-secret"
PAYLOAD = b'{"user": "alice", "cart": [1, 2, 3]}'

SIGNED = SignedCodec([SECRET], 3600)
ENCRYPTED = EncryptedCodec([KEY], 3600, "session")
CODECS: list[Any] = [SIGNED, ENCRYPTED]
TOKENS = [SIGNED.encode(PAYLOAD), ENCRYPTED.encode(PAYLOAD)]

seen: list[dict[str, Any]] = []


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    seen.append(dict(scope["session"]))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


MIDDLEWARES = [
    SessionMiddleware(app, SECRET, split_cookies=False),
    SessionMiddleware(app, SECRET, max_cookie_size=60_000),
    SessionMiddleware(app, SECRET, encryption_key=KEY, max_cookie_size=60_000),
    SessionMiddleware(app, SECRET, backend=MemoryBackend()),
]


async def _receive() -> Message:
    return {"type": "http.request", "body": b""}


async def _send(message: Message) -> None:
    return None


def run_middleware(middleware: SessionMiddleware, cookie_header: bytes) -> dict[str, Any]:
    """Run one request to completion without an event loop: nothing here really awaits."""
    seen.clear()
    scope: Scope = {"type": "http", "path": "/", "headers": [(b"cookie", cookie_header)]}
    coroutine = middleware(scope, _receive, _send)
    try:
        coroutine.send(None)
    except StopIteration:
        return seen[0]
    coroutine.close()
    raise AssertionError("the middleware awaited something real")


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    case = provider.ConsumeIntInRange(0, 2)
    if case == 0:
        value = provider.ConsumeBytes(provider.remaining_bytes()).decode("latin-1")
        for codec in CODECS:
            if codec.decode(value) is not None:
                raise AssertionError(f"{type(codec).__name__} accepted a forged value {value!r}")
    elif case == 1:
        index = provider.ConsumeIntInRange(0, len(TOKENS) - 1)
        token = bytearray(TOKENS[index].encode("ascii"))
        for _ in range(provider.ConsumeIntInRange(1, 4)):
            position = provider.ConsumeIntInRange(0, len(token) - 1)
            token[position] = provider.ConsumeIntInRange(0, 255)
        result = CODECS[index].decode(token.decode("latin-1"))
        if result not in (None, PAYLOAD):
            raise AssertionError(f"altered token {bytes(token)!r} decoded to {result!r}")
    else:
        middleware = MIDDLEWARES[provider.ConsumeIntInRange(0, len(MIDDLEWARES) - 1)]
        header = provider.ConsumeBytes(provider.remaining_bytes())
        session = run_middleware(middleware, header)
        if session:
            raise AssertionError(f"cookie header {header!r} gave the session {session!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
